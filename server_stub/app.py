"""The FastAPI routes of the Tinker wire under /api/v1: the JSON wire of SDK 0.24 and the 0.38 wire,
which sends forward_backward as protobuf and asks for protobuf results (see training_pass.py and
result_formats.py).

Routes only parse and validate, hand heavy work to the scheduler, and answer: long operations
answer `UntypedAPIFuture` at once and their result comes from `retrieve_future` (long-polled);
cheap metadata is answered directly from the engine. Bodies are read and parsed by hand (not
FastAPI's body injection) so a schema error can still name its field in an `ErrorBody` with status
400 and so a refused training call, whatever its body, still releases its seq id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from cookbook.client import types
from server_stub import request_limits, result_formats, sequence_key, training_pass, validation
from server_stub.auth import ApiKeyMiddleware, tenants_by_key
from server_stub.build import build_scheduler
from server_stub.config import ServerConfig
from server_stub.download_links import DownloadSigner
from server_stub.engine import ConflictError, Engine, ModelLimits, NotFoundError, SampleJob, UserError
from server_stub.errors import install_error_handlers
from server_stub.exports import check_export
from server_stub.futures_store import Failed, FuturesStore, Succeeded, UnknownRequestError
from server_stub.idle_unload import IdleUnloader
from server_stub.model_from_checkpoint import create_from_checkpoint, model_id_for
from server_stub.openai_api import routes as openai_routes
from server_stub.openai_api.wire import ChatCompletionRequest
from server_stub.openapi_bodies import document_bodies, request_body
from server_stub.owners import (
    OWNERS_FILE,
    Kind,
    OwnedCheckpointsEngine,
    OwnerRegistry,
    current_owner,
    unknown_checkpoint,
    unknown_run,
)
from server_stub.request_body import ReceivedBody, UnsupportedMediaError, receive
from server_stub.sample_batches import BatchCollector
from server_stub.scheduler import Task
from server_stub.sessions import SessionCounter, SessionRegistry
from server_stub.storage_usage import StorageQuota
from server_stub.training_pass import TrainingPass

M = TypeVar("M", bound=types.WireModel)
JSON = result_formats.JSON
logger = logging.getLogger("server_stub.app")
STORAGE_SWEEP_SECONDS = 60.0  # expired checkpoints are already invisible; this only frees their disk


def wire(model: types.WireModel) -> Response:
    """A wire type as the JSON body the SDK expects (nulls left out, like the official server)."""
    return Response(content=model.model_dump_json(exclude_none=True), media_type=JSON)


def create_app(engine: Engine, config: ServerConfig | None = None) -> FastAPI:
    """The server application around `engine`; its compute thread runs while the app is live."""
    config = config or ServerConfig()
    store = FuturesStore(
        grace_seconds=config.result_grace_seconds,
        ttl_seconds=config.result_ttl_seconds,
        max_entries=config.max_stored_results,
        max_bytes=config.max_stored_bytes,
    )
    scheduler = build_scheduler(engine, config)
    sessions = SessionRegistry()
    issued_model_ids: set[str] = set()
    reward_heads: set[str] = set()  # models created with a reward head (known before their creation ran)

    def engine_knows_run(run_id: str) -> bool:
        try:
            engine.training_run(run_id)
        except NotFoundError:
            return False
        return True

    config.storage_dir.mkdir(parents=True, exist_ok=True)
    owners = OwnerRegistry(config.storage_dir / OWNERS_FILE, engine_knows_run)
    quota = StorageQuota(config.storage_dir, config.max_storage_bytes_per_owner, owners)
    session_models = SessionCounter("max_models_per_session", config.max_models_per_session)
    session_samplers = SessionCounter("max_samplers_per_session", config.max_samplers_per_session)

    def ignore_outcome(_: Any, exc: BaseException | None) -> None:
        if exc is not None:
            logger.warning("housekeeping: %s: %s", type(exc).__name__, exc)

    def unload_idle_model(model_id: str) -> None:
        with contextlib.suppress(UserError):  # already being unloaded
            scheduler.close_model(
                model_id, Task(lambda: engine.unload_model(model_id), ignore_outcome, "unload_idle_model")
            )

    def release_idle_sampler(sampler_id: str) -> None:
        scheduler.submit(Task(lambda: engine.release_sampler(sampler_id), ignore_outcome, "release_sampler"))

    idle = IdleUnloader(
        sessions,
        session_models,
        session_samplers,
        unload_idle_model,
        release_idle_sampler,
        config.idle_unload_seconds,
    )

    async def housekeeping() -> None:
        """Unload what gone sessions left and free the disk of expired checkpoints, now and then."""
        period = min(STORAGE_SWEEP_SECONDS, config.idle_unload_seconds / 4)
        last_storage_sweep = float("-inf")
        while True:
            await asyncio.sleep(period)
            idle.sweep()
            if time.monotonic() - last_storage_sweep >= STORAGE_SWEEP_SECONDS:
                last_storage_sweep = time.monotonic()
                scheduler.submit(Task(engine.sweep_storage, ignore_outcome, "sweep_storage"))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.attach(asyncio.get_running_loop())
        scheduler.start()
        keeper = asyncio.create_task(housekeeping())
        try:
            yield
        finally:
            keeper.cancel()
            scheduler.stop(timeout=10)
            close = getattr(
                engine, "close", None
            )  # a distributed engine stops its ranks, after the compute thread
            if close is not None:
                close()

    app = FastAPI(title="server_stub", summary="Local training server (Tinker wire)", lifespan=lifespan)
    app.state.engine, app.state.scheduler, app.state.store, app.state.sessions, app.state.owners = (
        engine,
        scheduler,
        store,
        sessions,
        owners,
    )
    install_error_handlers(app)
    api = APIRouter(prefix="/api/v1")
    downloads_prefix = f"{api.prefix}/checkpoint_downloads/"
    tenants = tenants_by_key(config.api_key, config.keys_file)
    app.add_middleware(ApiKeyMiddleware, tenants=tenants, signed_prefix=downloads_prefix)
    signer = DownloadSigner()
    ordered_routes: list[str] = []
    app.state.ordered_routes = ordered_routes

    def ordered_post(
        path: str, body_doc: dict[str, Any]
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A route whose calls carry a seq_id and run in their model's seq order."""
        ordered_routes.append(api.prefix + path)
        return api.post(path, openapi_extra=body_doc)

    # -- helpers -----------------------------------------------------------------------------

    async def read(request: Request) -> ReceivedBody:
        headers = request.headers
        return await receive(
            request.stream(),
            headers.get("content-type"),
            headers.get("content-encoding"),
            config.max_request_bytes,
        )

    def json_body(model: type[M]) -> Callable[[ReceivedBody], M]:
        def decode(received: ReceivedBody) -> M:
            raw = received.accepted()
            if received.protobuf:
                raise UnsupportedMediaError(
                    "this route reads JSON; only forward_backward also reads protobuf", field="Content-Type"
                )
            return validation.parse_wire(raw, model)

        return decode

    async def body(request: Request, model: type[M]) -> M:
        return json_body(model)(await read(request))

    def open_future(model_id: str | None = None) -> str:
        request_id = store.open(model_id)
        owners.record(Kind.FUTURE, request_id, current_owner.get())
        return request_id

    def base_model_of(model_id: str) -> str:
        owners.check(Kind.RUN, model_id)
        try:
            return engine.base_model_of(model_id)
        except NotFoundError:
            base = scheduler.lane_base_model(model_id)  # still being created
            if base is None:
                raise NotFoundError(f"unknown model {model_id!r}", field="model_id") from None
            return base

    def new_model_id() -> str:
        while True:
            model_id = f"run-{uuid.uuid4().hex}"
            if model_id not in issued_model_ids and not engine_knows_run(model_id):
                issued_model_ids.add(model_id)
                return model_id

    def digest_of(received: ReceivedBody) -> bytes:
        return hashlib.blake2b(received.content + received.tail, digest_size=16).digest()

    def decode_ordered(received: ReceivedBody, decode: Callable[[ReceivedBody], M]) -> M:
        """A training call's body decoded; one that is refused still releases the seq id it carried."""
        try:
            return decode(received)
        except Exception as err:
            key = sequence_key.of_refused(received)
            if key is not None and key[1] >= 1:
                try:
                    base_model_of(key[0])
                    scheduler.reject_ordered(key[0], key[1], digest_of(received), err)
                except NotFoundError:
                    pass
            raise

    def enqueue_ordered(
        received: ReceivedBody,
        req: M,
        check: Callable[[M, ModelLimits], None],
        run: Callable[[M], types.WireModel],
        label: str,
    ) -> Response:
        """Validate a decoded training call and queue it in its model's seq order (see scheduler)."""
        digest = digest_of(received)
        model_id: str = validation.require_model_id(getattr(req, "model_id", None))
        base = base_model_of(model_id)
        idle.touch(model_id)
        seq_id = validation.require_seq_id(getattr(req, "seq_id", None))
        existing = scheduler.find_ordered(model_id, seq_id, digest)
        if existing is not None:
            return wire(types.UntypedAPIFuture(request_id=existing, model_id=model_id))
        request_id: str | None = None
        try:  # whatever fails from here on, the seq id is given back so later calls never wait for it
            check(req, engine.model_limits(base))
            request_id = open_future(model_id)
            scheduler.submit_ordered(
                model_id,
                seq_id,
                digest,
                request_id,
                Task(lambda: run(req), store.finisher(request_id), label),
            )
        except Exception as err:
            if request_id is not None:
                store.discard(request_id)
            scheduler.reject_ordered(model_id, seq_id, digest, err)  # a no-op once the seq id is queued
            raise
        return wire(types.UntypedAPIFuture(request_id=request_id, model_id=model_id))

    async def shared_sampler(key: tuple[Any, ...], base_model: str | None, model_path: str | None) -> str:
        """A sampler for a base model or sampler checkpoint, created once per key on the compute thread."""
        if model_path is not None:
            owners.check_readable(model_path, "tinker_path")
        pending = sessions.recall(key)
        if pending is None:
            validation.check_sampler_source(base_model, model_path)
            if model_path is not None:
                engine.weights_info(model_path)  # 404 for an unknown checkpoint
            elif base_model is not None:
                engine.model_limits(base_model)  # 404 for an unknown base model
            pending = asyncio.wrap_future(
                scheduler.call(lambda: engine.create_sampler(base_model, model_path), "create_sampler")
            )
            sessions.remember(key, pending)
        try:
            created: types.GetSamplerResponse = await asyncio.shield(pending)
        except BaseException:
            sessions.forget(key)  # let a retry try again
            raise
        return created.sampler_id

    async def implicit_sampler(base_model: str | None, model_path: str | None) -> str:
        """The one shared sampler of a base model or checkpoint for requests that name no session."""
        return await shared_sampler(("implicit", base_model, model_path), base_model, model_path)

    # -- service, sessions, health -----------------------------------------------------------

    @api.get("/healthz")
    async def healthz() -> Response:
        problem = getattr(engine, "health_problem", lambda: None)()  # a distributed engine whose rank died
        if problem is not None:
            return JSONResponse({"status": "error", "detail": problem}, status_code=503)
        return wire(types.HealthResponse())

    @api.post("/client/config", openapi_extra=request_body(types.ClientConfigRequest))
    async def client_config() -> Response:
        return wire(types.ClientConfigResponse(proto_compress_fwdbwd=config.compress_forward_backward))

    @api.post("/client/dynamic_config", openapi_extra=request_body(ignored=True))
    async def dynamic_config() -> Response:
        return wire(types.DynamicConfigResponse())

    @api.post("/telemetry", openapi_extra=request_body(ignored=True))
    async def telemetry() -> Response:
        return Response(content=b'{"status":"accepted"}', media_type=JSON)

    @api.post("/create_session", openapi_extra=request_body(types.CreateSessionRequest))
    async def create_session(request: Request) -> Response:
        req = await body(request, types.CreateSessionRequest)
        request_limits.check_metadata(config, "tags", req.tags)
        request_limits.check_metadata(config, "user_metadata", req.user_metadata)
        session = sessions.create(req.sdk_version, req.tags, req.user_metadata)
        owners.record(Kind.SESSION, session.session_id, current_owner.get())
        return wire(types.CreateSessionResponse(session_id=session.session_id))

    @api.post("/session_heartbeat", openapi_extra=request_body(types.SessionHeartbeatRequest))
    async def session_heartbeat(request: Request) -> Response:
        session_id = (await body(request, types.SessionHeartbeatRequest)).session_id
        sessions.heartbeat(owners.check(Kind.SESSION, session_id))
        return wire(types.SessionHeartbeatResponse())

    @api.post("/sessions/{session_id}/finish", openapi_extra=request_body(types.FinishSessionRequest))
    async def finish_session(session_id: str, request: Request) -> Response:
        req = await body(request, types.FinishSessionRequest)
        owners.check(Kind.SESSION, session_id)
        reason, detail = sessions.finish(session_id, req.reason.type, req.detail)
        return wire(
            types.FinishSessionResponse(
                session_id=session_id, reason=types.SessionFinishReason(type=reason), detail=detail
            )
        )

    @api.get("/compute_time")
    async def compute_time() -> Response:
        """The compute and sampling threads' busy seconds per kind of work (our extension, for profiling)."""
        return wire(types.ComputeTimeResponse(seconds=scheduler.compute_time.snapshot()))

    @api.get("/get_server_capabilities")
    async def get_server_capabilities() -> Response:
        return wire(
            types.GetServerCapabilitiesResponse(
                supported_models=engine.supported_models(),
                wire_formats=result_formats.WIRE_FORMATS,
                extensions=[
                    *openai_routes.PATHS,
                    types.EXTENSION_CHECKPOINT_ARCHIVE,
                    types.EXTENSION_COMPUTE_TIME,
                    types.EXTENSION_SAMPLE_BATCH,
                    # a multi-rank engine says it has no reward heads
                    *([types.EXTENSION_REWARD_HEAD] if getattr(engine, "supports_reward_head", True) else []),
                ],
            )
        )

    @api.post("/get_tokenizer", openapi_extra=request_body(types.TokenizerRequest))
    async def get_tokenizer(request: Request) -> Response:
        req = await body(request, types.TokenizerRequest)
        return wire(await run_in_threadpool(engine.tokenizer, req.model_name))

    # -- training models ---------------------------------------------------------------------

    def check_session_open(session_id: str | None) -> None:
        """A finished session of the caller's creates nothing; another's counts as unknown."""
        if session_id is not None and not owners.foreign(Kind.SESSION, session_id):
            sessions.check_open(session_id)

    @api.post("/create_model", openapi_extra=request_body(types.CreateModelRequest))
    async def create_model(request: Request) -> Response:
        req = await body(request, types.CreateModelRequest)
        owner = current_owner.get()
        key = ("create_model", owner, req.session_id, req.model_seq_id)
        previous = sessions.recall(key)
        if previous is not None:
            return wire(previous)
        check_session_open(req.session_id)
        request_limits.check_metadata(config, "user_metadata", req.user_metadata)
        engine.model_limits(req.base_model)
        validation.check_create_model(req)
        session_models.check((owner, req.session_id))
        model_id = new_model_id()
        owners.record(Kind.RUN, model_id, owner)
        session_models.add((owner, req.session_id), model_id)
        idle.touch(model_id)
        if req.reward_head:
            reward_heads.add(model_id)
        request_id = open_future(model_id)
        create = Task(
            lambda: engine.create_model(
                model_id,
                req.base_model,
                req.lora_config,
                req.user_metadata,
                reward_head=bool(req.reward_head),
            ),
            store.finisher(request_id),
            "create_model",
        )
        scheduler.open_model(model_id, req.base_model, create)
        answer = types.UntypedAPIFuture(request_id=request_id, model_id=model_id)
        sessions.remember(key, answer)
        return wire(answer)

    @api.post("/get_info", openapi_extra=request_body(types.GetInfoRequest))
    async def get_info(request: Request) -> Response:
        model_id = (await body(request, types.GetInfoRequest)).model_id
        return wire(engine.get_info(owners.check(Kind.RUN, model_id)))

    async def ordered_json(
        request: Request,
        model: type[M],
        check: Callable[[M, ModelLimits], None],
        run: Callable[[M], types.WireModel],
        label: str,
    ) -> Response:
        received = await read(request)
        req = decode_ordered(received, json_body(model))
        return enqueue_ordered(received, req, check, run, label)

    def check_training_pass(req: TrainingPass, limits: ModelLimits) -> None:
        req.check(limits, config, has_reward_head=req.model_id in reward_heads)

    async def training_call(request: Request, forward_only_route: bool) -> Response:
        received = await read(request)
        req = decode_ordered(received, lambda body: training_pass.decode(body, forward_only_route))

        return enqueue_ordered(
            received,
            req,
            check_training_pass,
            lambda r: engine.forward_backward(r.model_id, r.fwd, backward=r.backward),
            "forward_backward" if req.backward else "forward",
        )

    @ordered_post("/forward", request_body(types.ForwardRequest, protobuf=True))
    async def forward(request: Request) -> Response:
        return await training_call(request, forward_only_route=True)

    @ordered_post("/forward_backward", request_body(types.ForwardBackwardRequest, protobuf=True))
    async def forward_backward(request: Request) -> Response:
        return await training_call(request, forward_only_route=False)

    @ordered_post("/optim_step", request_body(types.OptimStepRequest))
    async def optim_step(request: Request) -> Response:
        return await ordered_json(
            request,
            types.OptimStepRequest,
            validation.check_optim_step,
            lambda r: engine.optim_step(r.model_id, r.adam_params),
            "optim_step",
        )

    def check_save(req: types.SaveWeightsRequest, limits: ModelLimits) -> None:
        validation.check_save_weights(req, limits)
        quota.check(current_owner.get())

    @ordered_post("/save_weights", request_body(types.SaveWeightsRequest))
    async def save_weights(request: Request) -> Response:
        return await ordered_json(
            request,
            types.SaveWeightsRequest,
            check_save,
            lambda r: engine.save_state(r.model_id, r.path or "", r.overwrite, r.ttl_seconds),
            "save_weights",
        )

    def check_save_for_sampler(req: types.SaveWeightsForSamplerRequest, limits: ModelLimits) -> None:
        validation.check_save_weights_for_sampler(req, limits)
        if req.path is not None:
            quota.check(current_owner.get())

    @ordered_post("/save_weights_for_sampler", request_body(types.SaveWeightsForSamplerRequest))
    async def save_weights_for_sampler(request: Request) -> Response:
        owner = current_owner.get()

        def save(r: types.SaveWeightsForSamplerRequest) -> types.SaveWeightsForSamplerResponseInternal:
            saved = engine.save_sampler_weights(r.model_id, r.path, r.ttl_seconds)
            sampler_id = saved.sampling_session_id
            if (
                sampler_id is not None
            ):  # an unnamed snapshot is a sampler of this owner, in the model's session
                owners.record(Kind.SAMPLER, sampler_id, owner)
                idle.touch(sampler_id)
                session = session_models.session_of(r.model_id) or (owner, None)
                for oldest in session_samplers.add(session, sampler_id):  # an RL loop makes one per step
                    release_idle_sampler(oldest)
            return saved

        return await ordered_json(
            request,
            types.SaveWeightsForSamplerRequest,
            check_save_for_sampler,
            save,
            "save_weights_for_sampler",
        )

    def check_load(req: types.LoadWeightsRequest, limits: ModelLimits) -> None:
        validation.check_load_weights(req, limits)
        owners.check_readable(req.path, "tinker_path")
        engine.weights_info(req.path)  # 404 for an unknown checkpoint

    def load_as_new_model(req: types.LoadWeightsRequest) -> Response:
        """SDK 0.38 creates a training client from a checkpoint with one load_weights and no model id."""
        validation.parse_tinker_path(req.path, "path")
        owner = current_owner.get()
        key = ("create_model", owner, req.session_id, req.model_seq_id)
        previous = sessions.recall(key)
        if previous is not None:
            return wire(previous)
        owners.check_readable(req.path, "tinker_path")
        info = engine.weights_info(req.path)  # 404 for an unknown checkpoint
        session_id, model_seq_id = validation.check_load_as_new_model(req, info.base_model)
        owners.check(Kind.SESSION, session_id)  # the model id derives from it: only its owner may use it
        check_session_open(session_id)
        request_limits.check_metadata(config, "user_metadata", req.user_metadata)
        engine.model_limits(info.base_model)  # 404 for a base model this server does not serve
        model_id = validation.check_safe_name(model_id_for(session_id, model_seq_id), "session_id")
        if scheduler.lane_base_model(model_id) is not None or engine_knows_run(model_id):
            raise UserError(f"training run {model_id!r} exists already", field="model_seq_id")
        session_models.check((owner, session_id))
        owners.record(Kind.RUN, model_id, owner)
        session_models.add((owner, session_id), model_id)
        idle.touch(model_id)
        if info.reward_head:
            reward_heads.add(model_id)
        request_id = open_future(model_id)
        create = Task(
            lambda: create_from_checkpoint(
                engine, model_id, req.path, info, req.optimizer, req.user_metadata
            ),
            store.finisher(request_id),
            "load_weights",
        )
        scheduler.open_model(model_id, info.base_model, create)
        answer = types.UntypedAPIFuture(request_id=request_id, model_id=model_id)
        sessions.remember(key, answer)
        return wire(answer)

    @ordered_post("/load_weights", request_body(types.LoadWeightsRequest))
    async def load_weights(request: Request) -> Response:
        received = await read(request)
        req = decode_ordered(received, json_body(types.LoadWeightsRequest))
        if req.model_id is None:
            return load_as_new_model(req)
        return enqueue_ordered(
            received,
            req,
            check_load,
            lambda r: engine.load_state(r.model_id or "", r.path, r.optimizer),
            "load_weights",
        )

    @api.post("/unload_model", openapi_extra=request_body(types.UnloadModelRequest))
    async def unload_model(request: Request) -> Response:
        model_id = (await body(request, types.UnloadModelRequest)).model_id
        base_model_of(model_id)
        session_models.discard(model_id)
        request_id = open_future(model_id)
        try:
            scheduler.close_model(
                model_id,
                Task(lambda: engine.unload_model(model_id), store.finisher(request_id), "unload_model"),
            )
        except BaseException:
            store.discard(request_id)
            raise
        return wire(types.UntypedAPIFuture(request_id=request_id, model_id=model_id))

    # -- checkpoints -------------------------------------------------------------------------

    @api.post("/weights_info", openapi_extra=request_body(types.WeightsInfoRequest))
    async def weights_info(request: Request) -> Response:
        req = await body(request, types.WeightsInfoRequest)
        validation.parse_tinker_path(req.tinker_path, "tinker_path")
        owners.check_readable(req.tinker_path, "tinker_path")
        return wire(engine.weights_info(req.tinker_path))

    def own_run(run_id: str) -> str:
        """A run id of the caller's; another's answers as a run that does not exist."""
        validation.check_safe_name(run_id, "training_run_id")
        if owners.foreign(Kind.RUN, run_id):
            raise unknown_run(run_id)
        return run_id

    def with_public(checkpoint: types.Checkpoint) -> types.Checkpoint:
        return checkpoint.model_copy(update={"public": owners.is_published(checkpoint.tinker_path)})

    @api.get("/training_runs/{run_id}")
    async def training_run(run_id: str) -> Response:
        run = engine.training_run(own_run(run_id))
        return wire(run.model_copy(update={"model_owner": current_owner.get()}))

    @api.get("/training_runs/{run_id}/checkpoints")
    async def list_checkpoints(run_id: str) -> Response:
        listed = engine.list_checkpoints(own_run(run_id))
        return wire(listed.model_copy(update={"checkpoints": [with_public(c) for c in listed.checkpoints]}))

    def own_checkpoint(run_id: str, kind: str, name: str) -> str:
        """The tinker path of a checkpoint of the caller's; another's answers as one that does not exist."""
        tinker_path = f"{types.TINKER_SCHEME}{run_id}/{kind}/{name}"
        validation.parse_tinker_path(tinker_path, "checkpoint_id")
        if owners.foreign(Kind.RUN, run_id):
            raise NotFoundError(f"checkpoint {run_id}/{kind}/{name} not found", field="checkpoint_id")
        return tinker_path

    @api.delete("/training_runs/{run_id}/checkpoints/{kind}/{name}", status_code=204)
    async def delete_checkpoint(run_id: str, kind: str, name: str) -> Response:
        own_checkpoint(run_id, kind, name)
        parsed = validation.parse_tinker_path(f"{types.TINKER_SCHEME}{run_id}/{kind}/{name}", "checkpoint_id")
        await asyncio.wrap_future(
            scheduler.call(
                lambda: engine.delete_checkpoint(parsed.training_run_id, parsed.checkpoint_id),
                "delete_checkpoint",
            )
        )
        return Response(status_code=204)

    async def set_published(run_id: str, kind: str, name: str, published: bool) -> Response:
        tinker_path = f"{types.TINKER_SCHEME}{run_id}/{kind}/{name}"
        validation.parse_tinker_path(tinker_path, "checkpoint_id")
        if owners.foreign(Kind.RUN, run_id):  # published or not, only its owner publishes it
            raise unknown_checkpoint(tinker_path, "tinker_path")
        engine.weights_info(tinker_path)  # 404 for a checkpoint that does not exist
        if not owners.set_published(tinker_path, published):
            state = "public" if published else "private"
            raise ConflictError(f"checkpoint {tinker_path} is already {state}", field="checkpoint_id")
        return Response(status_code=204)

    @api.post("/training_runs/{run_id}/checkpoints/{kind}/{name}/publish", status_code=204)
    async def publish_checkpoint(run_id: str, kind: str, name: str) -> Response:
        """Make a checkpoint loadable (read-only) by every tenant of this server."""
        return await set_published(run_id, kind, name, True)

    @api.delete("/training_runs/{run_id}/checkpoints/{kind}/{name}/publish", status_code=204)
    async def unpublish_checkpoint(run_id: str, kind: str, name: str) -> Response:
        return await set_published(run_id, kind, name, False)

    @api.get("/storage_usage")
    async def storage_usage() -> Response:
        """Disk used by the caller's checkpoints, against its quota (our extension)."""
        owner = current_owner.get()
        usage = await run_in_threadpool(quota.used, owner)
        return wire(types.StorageUsageResponse(owner=owner, used_bytes=usage, limit_bytes=quota.limit))

    @api.get("/training_runs/{run_id}/checkpoints/{kind}/{name}/archive")
    async def checkpoint_archive(
        run_id: str, kind: str, name: str, request: Request, format: str = "checkpoint"
    ) -> Response:
        """Tinker's archive link (200 with {url, expires}); `format` picks an export (our extension)."""
        tinker_path = f"{types.TINKER_SCHEME}{run_id}/{kind}/{name}"
        validation.parse_tinker_path(tinker_path, "checkpoint_id")
        owners.check_readable(tinker_path, "tinker_path")
        check_export(format, tinker_path, engine.weights_info(tinker_path).is_lora)
        path = f"{downloads_prefix}{run_id}/{kind}/{name}/{format}.tar"
        expires, signature = signer.sign(path)
        query = urlencode({"expires": expires, "signature": signature})
        url = f"{str(request.base_url).rstrip('/')}{path}?{query}"
        return wire(types.CheckpointArchiveUrlResponse(url=url, expires=datetime.fromtimestamp(expires, UTC)))

    @api.get("/checkpoint_downloads/{run_id}/{kind}/{name}/{fmt}.tar")
    async def checkpoint_download(
        run_id: str, kind: str, name: str, fmt: str, expires: int, signature: str
    ) -> Response:
        """The archive behind a signed link, written on the compute thread (a merge is model-sized work)."""
        signer.verify(f"{downloads_prefix}{run_id}/{kind}/{name}/{fmt}.tar", expires, signature)
        tinker_path = f"{types.TINKER_SCHEME}{run_id}/{kind}/{name}"
        validation.parse_tinker_path(tinker_path, "checkpoint_id")
        check_export(fmt, tinker_path, engine.weights_info(tinker_path).is_lora)
        archive = await asyncio.wrap_future(
            scheduler.call(lambda: engine.export_archive(tinker_path, fmt), "export_checkpoint")
        )
        return FileResponse(
            archive,
            media_type="application/x-tar",
            filename=f"{run_id}-{kind}-{name}-{fmt}.tar",
            background=BackgroundTask(archive.unlink, missing_ok=True),
        )

    # -- sampling ----------------------------------------------------------------------------

    @api.post("/create_sampling_session", openapi_extra=request_body(types.CreateSamplingSessionRequest))
    async def create_sampling_session(request: Request) -> Response:
        req = await body(request, types.CreateSamplingSessionRequest)
        owner = current_owner.get()
        check_session_open(req.session_id)
        key = ("sampler", owner, req.session_id, req.sampling_session_seq_id)
        sampler_id = await shared_sampler(key, req.base_model, req.model_path)
        if not owners.owns(Kind.SAMPLER, sampler_id, owner):
            owners.record(Kind.SAMPLER, sampler_id, owner)
            idle.touch(sampler_id)
            for oldest in session_samplers.add((owner, req.session_id), sampler_id):
                release_idle_sampler(oldest)
        return wire(types.CreateSamplingSessionResponse(sampling_session_id=sampler_id))

    @api.get("/samplers/{sampler_id}")
    async def get_sampler(sampler_id: str) -> Response:
        return wire(engine.get_sampler(owners.check(Kind.SAMPLER, sampler_id)))

    async def checked_sample_job(req: types.SampleRequest) -> SampleJob:
        """A sample request bound to its sampler, once it has passed every check."""
        validation.check_sample_target(req)
        sampler_id = req.sampling_session_id
        if sampler_id is None:  # older form: sample a base model or checkpoint directly
            sampler_id = await implicit_sampler(req.base_model, req.model_path)
        else:
            owners.check(Kind.SAMPLER, sampler_id)
            idle.touch(sampler_id)
        limits = engine.model_limits(engine.sampler_base_model(sampler_id))
        validation.check_sample_request(req, limits, config.max_num_samples)
        request_limits.check_sample_tokens(req, limits, config)
        return SampleJob(sampler_id, req)

    @api.post("/asample", openapi_extra=request_body(types.SampleRequest))
    async def asample(request: Request) -> Response:
        req = await body(request, types.SampleRequest)
        job = await checked_sample_job(req)
        request_id = open_future()
        try:
            scheduler.submit_sample(job, store.finisher(request_id))
        except BaseException:
            store.discard(request_id)
            raise
        sequence_ids = [f"{request_id}:{index}" for index in range(req.num_samples)]
        return wire(types.UntypedAPIFuture(request_id=request_id, sample_sequence_ids=sequence_ids))

    @api.post("/asample_batch", openapi_extra=request_body(types.SampleBatchRequest))
    async def asample_batch(request: Request) -> Response:
        """Several sample requests, all checked before any is queued (sample_batches.py)."""
        req = await body(request, types.SampleBatchRequest)
        request_limits.check_sample_batch(len(req.requests), config)
        jobs = []
        for index, sample in enumerate(req.requests):
            try:
                jobs.append(await checked_sample_job(sample))
            except UserError as exc:  # name the request at fault
                exc.field = f"requests.{index}" + (f".{exc.field}" if exc.field else "")
                exc.message = f"requests.{index}: {exc.message}"
                raise
        request_id = open_future()
        collector = BatchCollector(len(jobs), store.finisher(request_id))
        try:
            scheduler.submit_samples([(job, collector.finisher(i)) for i, job in enumerate(jobs)], whole=True)
        except BaseException:
            store.discard(request_id)
            raise
        return wire(types.UntypedAPIFuture(request_id=request_id))

    # -- futures -----------------------------------------------------------------------------

    @api.post("/retrieve_future", openapi_extra=request_body(types.FutureRetrieveRequest))
    async def retrieve_future(request: Request) -> Response:
        req = await body(request, types.FutureRetrieveRequest)
        if owners.foreign(Kind.FUTURE, req.request_id):
            raise NotFoundError(str(UnknownRequestError(req.request_id, expired=False)), field="request_id")
        try:
            outcome = await store.wait(req.request_id, config.long_poll_seconds)
        except UnknownRequestError as exc:
            raise NotFoundError(str(exc), field="request_id") from None
        if outcome is None:
            return wire(types.TryAgainResponse(request_id=req.request_id, queue_state="active"))
        if not isinstance(outcome, Succeeded):
            return Response(content=outcome.body(), media_type=JSON)
        media_type = outcome.media_type
        if outcome.result is not None:
            media_type = result_formats.answer_format(outcome.result, request.headers.get("accept"))
        try:
            content = await store.body(req.request_id, outcome, media_type)
        except Exception as exc:
            # A result that cannot be written fails its request: polling again would not help.
            logger.exception("writing the result of %s as %s failed", req.request_id, media_type)
            failed = Failed(f"{type(exc).__name__}: {exc}", types.RequestErrorCategory.Server)
            return Response(content=failed.body(), media_type=JSON)
        return Response(content=content, media_type=media_type)

    app.include_router(api)
    openai_engine: Any = OwnedCheckpointsEngine(engine, owners)
    app.include_router(openai_routes.openai_router(openai_engine, scheduler, config, implicit_sampler))
    document_bodies(app, {("post", f"{openai_routes.PREFIX}/chat/completions"): ChatCompletionRequest})
    return app
