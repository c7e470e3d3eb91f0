"""Request bodies in /openapi.json: the routes read their bodies by hand, so they declare them here.

A route reads its body itself (to refuse it with a named field, or to give back its seq id), so
FastAPI cannot see its type. Each route passes `openapi_extra=request_body(Model)` beside the
model it parses; `document_bodies` adds the models' schemas to the document's components, where
those requestBody entries point. Schema-driven clients and fuzzers then see every body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from cookbook.client.proto import PROTOBUF_CONTENT_TYPE

COMPONENTS = "#/components/schemas/"
ANY_JSON: dict[str, Any] = {"type": "object", "description": "read but ignored"}
_documented: dict[str, type[BaseModel]] = {}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    _documented[model.__name__] = model
    return {"$ref": COMPONENTS + model.__name__}


def request_body(*models: type[BaseModel], protobuf: bool = False, ignored: bool = False) -> dict[str, Any]:
    """The `openapi_extra` of a route whose JSON body is one of `models` (or, `protobuf`, also binary)."""
    if ignored:
        schema: dict[str, Any] = ANY_JSON
    elif len(models) == 1:
        schema = _ref(models[0])
    else:
        schema = {"oneOf": [_ref(model) for model in models]}
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if protobuf:
        content[PROTOBUF_CONTENT_TYPE] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": not ignored, "content": content}}


def document_bodies(app: FastAPI, extra: dict[tuple[str, str], type[BaseModel]] | None = None) -> None:
    """Make `app.openapi()` carry the schemas of every documented body (and `extra` routes' bodies,
    keyed by (method, path), for routers declared elsewhere)."""
    build: Callable[[], dict[str, Any]] = app.openapi
    extra_docs = {key: request_body(model) for key, model in (extra or {}).items()}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        for (method, path), doc in extra_docs.items():
            document["paths"][path][method].update(doc)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, model in _documented.items():
            schema = model.model_json_schema(ref_template=COMPONENTS + "{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
