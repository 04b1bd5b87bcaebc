"""Attachment validation and bundling: files ride along in the SAME prompt.

The earlier implementation sent each attachment as its own user message, which
started its own turn (specs/pi-runtime.md §4). Here a prompt with attachments
becomes one ``send``: images as pi ``{type:"image", data, mimeType}`` content
parts, text files appended to the text as ``<file name="...">`` blocks.

Everything is checked before anything is sent: an allow-listed MIME type,
valid base64, a decoded size ≤ ``protocol.MAX_ATTACHMENT_BYTES``, UTF-8 for
text. Any failure rejects the whole prompt with a specific error.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pi_socket.errors import HypiError
from pi_socket.protocol import MAX_ATTACHMENT_BYTES, Attachment, ErrorCode

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/javascript",
        "application/typescript",
        "application/x-sh",
        "application/x-python",
        "application/sql",
        "application/csv",
        "application/x-ndjson",
    }
)


class AttachmentError(HypiError, ValueError):
    """A rejected attachment; ``code`` is the protocol ErrorCode to report."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)


@dataclass
class Bundle:
    """What the shim's ``send`` needs: the final text and the image parts."""

    text: str
    images: list[dict[str, Any]] = field(default_factory=list)


def base_mime(mime_type: str) -> str:
    """``text/plain; charset=utf-8`` → ``text/plain`` (parameters do not change the kind)."""
    return mime_type.split(";", 1)[0].strip().lower()


def is_text_type(mime: str) -> bool:
    return mime.startswith("text/") or mime in TEXT_TYPES or mime.endswith("+json") or mime.endswith("+xml")


def decode(att: Attachment) -> bytes:
    """Strict base64 with a size check that runs before decoding (cheap rejection of huge data)."""
    data = "".join(att.data.split())
    if len(data) > (MAX_ATTACHMENT_BYTES + 2) // 3 * 4 + 4:
        raise AttachmentError(ErrorCode.TOO_LARGE, f"attachment {att.name!r} exceeds {MAX_ATTACHMENT_BYTES} bytes")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise AttachmentError(ErrorCode.INVALID_PARAMS, f"attachment {att.name!r} is not valid base64") from None
    if len(raw) > MAX_ATTACHMENT_BYTES:
        raise AttachmentError(ErrorCode.TOO_LARGE, f"attachment {att.name!r} exceeds {MAX_ATTACHMENT_BYTES} bytes")
    return raw


def file_block(name: str, body: str) -> str:
    """The text form of an attached file; quotes and newlines in the name would break the tag."""
    safe = "".join(ch for ch in name if ch not in '"<>\r\n')
    return f'\n\n<file name="{safe}">\n{body}\n</file>'


def bundle(text: str, attachments: Iterable[Attachment] | None) -> Bundle:
    """Validate every attachment and fold them into one prompt; raises AttachmentError."""
    out = Bundle(text=text)
    for att in attachments or ():
        mime = base_mime(att.mime_type)
        if mime in IMAGE_TYPES:
            raw = decode(att)
            out.images.append({"type": "image", "data": base64.b64encode(raw).decode("ascii"), "mimeType": mime})
        elif is_text_type(mime):
            raw = decode(att)
            try:
                body = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise AttachmentError(ErrorCode.INVALID_PARAMS, f"attachment {att.name!r} is not UTF-8 text") from None
            out.text += file_block(att.name, body)
        else:
            raise AttachmentError(
                ErrorCode.INVALID_PARAMS,
                f"attachment {att.name!r} has unsupported type {mime!r} (images: png, jpeg, gif, webp; text files)",
            )
    return out
