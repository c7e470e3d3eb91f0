"""The model id and seq id of a JSON training call whose body was refused, from whatever of it is readable.

A model runs its calls strictly in seq id order, so a refused call must still give back its seq id,
or every later call of that model would wait for it. A refused body may be anything: JSON with a
wrong type deep inside, JSON nested too deep to parse, a body cut at the size limit. So the key is
read the way the body allows: the two fields alone through pydantic (the same lax rules a good
body's parse applies); failing that, a scan of the top-level keys, forward from the body's start
and backward from its end. A body sent as protobuf is first walked field by field
(`cookbook.client.proto.forward_backward_sequence_key`), then, in case it was mislabelled, read as JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from cookbook.client import proto, types
from server_stub.request_body import KEPT_BYTES, ReceivedBody

SequenceKey = tuple[str, int]
_WANTED = ("model_id", "seq_id")
_MISSING = object()

# A JSON token: a string (or one cut off at the end), a structural character, or a bare literal.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|"(?:[^"\\]|\\.)*\Z|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.DOTALL)


class _Key(types.WireModel):
    model_id: str
    seq_id: int


def _checked(fields: dict[str, Any]) -> SequenceKey | None:
    try:
        key = _Key.model_validate(fields)
    except ValidationError:
        return None
    return key.model_id, key.seq_id


def _literal(token: str) -> Any:
    try:
        return json.loads(token)
    except ValueError:
        return _MISSING


def _top_level_forward(text: str) -> dict[str, Any]:
    """Primitive values of the wanted keys of a JSON object, read from its start up to where it breaks."""
    found: dict[str, Any] = {}
    depth, key, candidate = 0, None, None
    for match in _TOKEN.finditer(text):
        token = match.group()
        if depth == 0 and token != "{":
            break
        if token in "{[":
            depth += 1
            key = None if depth == 2 else key
        elif token in "}]":
            depth -= 1
            if depth == 0:
                break
        elif depth != 1:
            continue
        elif token == ":":
            key, candidate = candidate, None
        elif token == ",":
            key = candidate = None
        elif key is None:
            candidate = _literal(token)
        else:
            value = _literal(token)
            if key in _WANTED and value is not _MISSING:
                found[key] = value
            key = None
    return found


def _string_start(text: str, end: int) -> int:
    """Where the string whose closing quote is at `end` opens (-1 if before the text starts)."""
    at = end
    while True:
        at = text.rfind('"', 0, at)
        if at < 0:
            return -1
        escape = at
        while escape > 0 and text[escape - 1] == "\\":
            escape -= 1
        if (at - escape) % 2 == 0:
            return at


def _top_level_backward(text: str) -> dict[str, Any]:
    """Primitive values of the wanted keys of a JSON object, read back from its end."""
    found: dict[str, Any] = {}
    at = len(text.rstrip()) - 1
    if at < 0 or text[at] != "}":
        return found
    at -= 1
    depth, value, awaiting_key = 1, _MISSING, False
    while at >= 0:
        char = text[at]
        if char.isspace():
            at -= 1
            continue
        if char == '"':
            start = _string_start(text, at)
            if start < 0:
                break
            token, at = text[start : at + 1], start - 1
        elif char in ":,{}[]":
            token, at = char, at - 1
        else:
            start = at
            while start > 0 and not text[start - 1].isspace() and text[start - 1] not in ':,{}[]"':
                start -= 1
            token, at = text[start : at + 1], start - 1
        if token in "}]":
            depth += 1
            value = _MISSING
        elif token in "{[":
            depth -= 1
            if depth == 0:
                break
        elif depth != 1:
            continue
        elif token == ":":
            awaiting_key = True
        elif token == ",":
            value, awaiting_key = _MISSING, False
        elif awaiting_key:
            key = _literal(token)
            if key in _WANTED and value is not _MISSING and key not in found:
                found[key] = value
            value, awaiting_key = _MISSING, False
        else:
            value = _literal(token)
    return found


def from_json(body: ReceivedBody) -> SequenceKey | None:
    """The key of a refused JSON body, when both fields can be read."""
    if body.refusal is None:
        try:
            key = _Key.model_validate_json(body.content)
            return key.model_id, key.seq_id
        except ValidationError:
            pass
    head = body.content[:KEPT_BYTES].decode("utf-8", errors="replace")
    end = (body.tail or body.content[-KEPT_BYTES:]).decode("utf-8", errors="replace")
    return _checked({**_top_level_backward(end), **_top_level_forward(head)})


def of_refused(body: ReceivedBody) -> SequenceKey | None:
    """The model id and seq id a refused training call carried, when they can be read."""
    if body.protobuf:
        key = proto.forward_backward_sequence_key(body.content)
        if key is not None:
            return key
    return from_json(body)
