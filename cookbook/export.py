"""Trained weights out, through the server: a PEFT adapter or a merged Hugging Face model directory.

    python -m cookbook.export tinker://RUN/sampler_weights/NAME --out DIR [--merged] [--base-url URL]

A LoRA checkpoint becomes a PEFT adapter directory (`peft.PeftModel.from_pretrained(base, DIR)`);
with `--merged`, and always for a full-weight checkpoint, a complete model directory
(`transformers.AutoModelForCausalLM.from_pretrained(DIR)`). Both carry the tokenizer files and chat
template. The server writes the files (a merge needs torch, which this package never imports) and
hands out a signed link to their tar archive, so this works against a remote server: the address
and key come from `--base-url`/`--api-key` or $COOKBOOK_BASE_URL/$COOKBOOK_API_KEY, and with
neither it uses this process's bundled local server.

The adapter's `base_model_name_or_path` is where the server loaded the base from (a directory or hub
id). A base no other tool loads by name (the built-in model, a GGUF file) is exported beside the
adapter in `base_model/`, as a Hugging Face directory (a GGUF dequantised to fp32), and referenced by
its absolute path. `--base-ref` writes another reference (e.g. the hub id, or your copy of the base)
and then the server sends no `base_model/`.

A reward model's export (a checkpoint with a reward head) also holds `reward_head.safetensors`: the
head's `reward_head.weight` [1, hidden]; its score of a sequence is the model's final hidden state
at the last token (`hidden_states[-1][:, -1]`) times that row.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cookbook.client import types
from cookbook.client.errors import CookbookError, status_error
from cookbook.client.http.settings import API_PREFIX, resolve_api_key, resolve_base_url
from cookbook.client.local_server import shared_local_server

ADAPTER_CONFIG = "adapter_config.json"
REWARD_HEAD_FILE = "reward_head.safetensors"
BUNDLED_BASE_DIR = "base_model"
REQUEST_TIMEOUT_S = 60.0
# A merge loads the base model on the server before the first byte comes back.
DOWNLOAD_TIMEOUT = httpx.Timeout(REQUEST_TIMEOUT_S, read=3600.0)


class ExportError(CookbookError):
    """The export could not be written (a bad destination or an unsafe archive)."""


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    format: types.CheckpointExportFormat  # "peft" (an adapter, with or without its base) or "merged"
    base_reference: str | None  # the adapter's base_model_name_or_path (None for a merged model)
    reward_head: Path | None = None  # a reward model's head file (None: the checkpoint has no head)


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    field = body.get("field") if isinstance(body, dict) else None
    raise status_error(response.status_code, error or response.text or response.reason_phrase, body, field)


def _safe_extract(archive: Path, out: Path) -> None:
    """Regular files only, each inside `out` (the archive comes over the network)."""
    root = out.resolve()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if not member.isfile() or not target.is_relative_to(root) or target == root:
                raise ExportError(f"refusing archive entry {member.name!r}: not a plain file inside {out}")
        tar.extractall(root, filter="data")


def _prepare_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out} exists and is not an empty directory")
    out.mkdir(parents=True, exist_ok=True)


def _point_adapter_at(out: Path, base_reference: str | None) -> str:
    """Rewrite the adapter's base reference: the given one, else the bundled base's absolute path."""
    config_path = out / ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    if base_reference is None and (out / BUNDLED_BASE_DIR).is_dir():
        base_reference = str((out / BUNDLED_BASE_DIR).resolve())
    if base_reference is not None:
        config["base_model_name_or_path"] = base_reference
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    return str(config["base_model_name_or_path"])


def export_checkpoint(
    tinker_path: str,
    out: str | Path,
    *,
    merged: bool = False,
    base_url: str | None = None,
    api_key: str | None = None,
    base_reference: str | None = None,
) -> ExportResult:
    """Write the checkpoint at `tinker_path` to the new or empty directory `out`."""
    parsed = types.ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
    out = Path(out)
    url = resolve_base_url(base_url) or shared_local_server().url
    key = resolve_api_key(api_key)
    headers = {"X-API-Key": key} if key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S) as http:
        info_response = http.post(f"{API_PREFIX}/weights_info", json={"tinker_path": tinker_path})
        _raise_for_status(info_response)
        info = types.WeightsInfoResponse.model_validate(info_response.json())
        fmt: types.CheckpointExportFormat = "merged" if merged or not info.is_lora else "peft"
        # A caller who names the base needs no copy of it, so the server is asked for none.
        wire_fmt: types.CheckpointExportFormat = (
            "peft_without_base" if fmt == "peft" and base_reference is not None else fmt
        )
        link_response = http.get(
            f"{API_PREFIX}/training_runs/{parsed.training_run_id}/checkpoints/{parsed.checkpoint_id}/archive",
            params={"format": wire_fmt},
        )
        _raise_for_status(link_response)
        link = types.CheckpointArchiveUrlResponse.model_validate(link_response.json())
        _prepare_out(out)
        with tempfile.TemporaryDirectory(prefix="cookbook-export-") as tmp:
            archive = Path(tmp) / "export.tar"
            with http.stream("GET", link.url, timeout=DOWNLOAD_TIMEOUT) as download:
                if not download.is_success:
                    download.read()
                    _raise_for_status(download)
                with archive.open("wb") as sink:
                    for chunk in download.iter_bytes(1 << 20):
                        sink.write(chunk)
            _safe_extract(archive, out)
    reference = _point_adapter_at(out, base_reference) if fmt == "peft" else None
    head = out / REWARD_HEAD_FILE
    return ExportResult(out, fmt, reference, head if info.reward_head and head.is_file() else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cookbook.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("tinker_path", help="tinker://RUN/sampler_weights/NAME or tinker://RUN/weights/NAME")
    parser.add_argument("--out", required=True, type=Path, help="a new or empty directory to write")
    parser.add_argument("--merged", action="store_true", help="a merged model directory, not an adapter")
    parser.add_argument("--base-url", help="the server (default $COOKBOOK_BASE_URL, else a local server)")
    parser.add_argument("--api-key", help="the server's key (default $COOKBOOK_API_KEY)")
    parser.add_argument(
        "--base-ref", help="the adapter's base_model_name_or_path: a hub id or a path to the base model"
    )
    args = parser.parse_args(argv)
    try:
        result = export_checkpoint(
            args.tinker_path,
            args.out,
            merged=args.merged,
            base_url=args.base_url,
            api_key=args.api_key,
            base_reference=args.base_ref,
        )
    except (CookbookError, ValueError, httpx.HTTPError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    files = ", ".join(sorted(p.name for p in result.directory.iterdir()))
    print(f"wrote a {result.format} export of {args.tinker_path} to {result.directory}: {files}")
    if result.base_reference is not None:
        print(f"its base model: {result.base_reference} (change with --base-ref or in {ADAPTER_CONFIG})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
