"""Agent-link frames both ways, with no I/O but a debug line: client frames → protocol models, models → text.

``parse_client_frame`` turns the raw frame (``str`` or ``bytes``) into a
message model or the ``ErrorMsg`` to send back; nothing that fails here is ever
treated as a prompt. ``frame`` serialises an outgoing model once, as the text
every client receives (a broadcast shares that one string).
"""

from __future__ import annotations

from typing import Any, cast

import orjson
import structlog
from pydantic import BaseModel, ValidationError

from pi_socket.protocol import CLIENT_MESSAGE_TYPES, ErrorCode, ErrorMsg, client_message_adapter, dump, unknown_fields

log = structlog.get_logger()  # lazy proxy: resolves the config set up in __main__

CLIENT_TYPES = CLIENT_MESSAGE_TYPES  # one list: the protocol's union of client messages


def frame(model: BaseModel) -> str:
    """Serialise an outgoing protocol model once, as the text every client receives."""
    return orjson.dumps(dump(model)).decode()


def _frame_id(obj: dict[str, Any]) -> str | None:
    """The frame's ``id`` if it is a usable string, so a prompt's error names the prompt."""
    value = obj.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


def _describe(exc: ValidationError) -> str:
    """The first few pydantic errors as ``field: problem`` (readable, never the whole input echoed)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"][1:]) or "frame"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_client_frame(raw: str | bytes) -> BaseModel | ErrorMsg:
    """Validate one frame; returns the message model or the error to send back."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return ErrorMsg(code=ErrorCode.INVALID_REQUEST, message="binary frames are not supported; send JSON text")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ErrorMsg(code=ErrorCode.PARSE_ERROR, message="frame is not valid JSON")
    if not isinstance(obj, dict):
        return ErrorMsg(code=ErrorCode.INVALID_REQUEST, message="frame must be a JSON object with a 'type'")
    kind = obj.get("type")
    if not isinstance(kind, str):
        return ErrorMsg(id=_frame_id(obj), code=ErrorCode.INVALID_REQUEST, message="frame has no string 'type'")
    if kind not in CLIENT_TYPES:
        shown = kind[:40]
        return ErrorMsg(
            id=_frame_id(obj),
            code=ErrorCode.METHOD_NOT_FOUND,
            message=f"unknown type {shown!r}; expected one of {', '.join(CLIENT_TYPES)}",
        )
    try:
        msg = cast(BaseModel, client_message_adapter.validate_python(obj))
    except ValidationError as exc:
        return ErrorMsg(id=_frame_id(obj), code=ErrorCode.INVALID_PARAMS, message=f"invalid {kind}: {_describe(exc)}")
    if len(obj) > len(type(msg).model_fields):  # cheap test first: most frames carry only known fields
        _note_unknown(kind, unknown_fields(type(msg), obj))
    return msg


_unknown_seen: set[str] = set()


def _note_unknown(kind: str, names: list[str]) -> None:
    """A newer client's fields are ignored (version skew); each is logged once, at debug."""
    for name in names:
        key = f"{kind}.{name}"
        if key not in _unknown_seen and len(_unknown_seen) < 1000:
            _unknown_seen.add(key)
            log.debug("unknown field ignored (a newer client?)", frame=kind, field=name)
