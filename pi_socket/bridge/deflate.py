"""permessage-deflate for the agent port with a bound on inflation (no I/O).

websockets inflates a compressed message in one ``decompress`` call bounded
only by the frame limit (64 MiB), so a few kilobytes of zeros made it allocate
64 MiB before refusing the message; the refusal's traceback kept that buffer
alive until a late garbage collection. Here a message is inflated in steps of
``STEP`` bytes and may grow to at most ``floor + ratio x its compressed size``
(and never past the frame limit), so a bomb costs at most that much memory and
every byte is dropped before the error is raised. Ordinary traffic is far
inside it: JSON text compresses 3-10x, base64 attachments about 1.3x, and any
message up to ``floor`` is accepted whatever its ratio.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import CONT, CTRL_OPCODES, Frame
from websockets.typing import ExtensionParameter

STEP = 256 * 1024
DEFAULT_FLOOR = 8 * 1024 * 1024
DEFAULT_RATIO = 64
_EMPTY_BLOCK = b"\x00\x00\xff\xff"


def inflate_limit(compressed: int, max_size: int | None, floor: int, ratio: int) -> int:
    """Bytes a message with ``compressed`` bytes so far may inflate to."""
    bound = floor + ratio * compressed
    return bound if max_size is None else min(bound, max_size)


class BoundedPerMessageDeflate(PerMessageDeflate):
    """``PerMessageDeflate`` whose ``decode`` inflates step by step within :func:`inflate_limit`."""

    def __init__(self, *args: Any, floor: int = DEFAULT_FLOOR, ratio: int = DEFAULT_RATIO, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.floor = floor
        self.ratio = ratio
        self._in = 0  # compressed bytes of the current message so far
        self._out = 0  # inflated bytes of the current message so far

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if frame.opcode in CTRL_OPCODES:
            return frame
        if frame.opcode is CONT:
            if not self.decode_cont_data:
                return frame
            if frame.rsv1:
                raise ProtocolError("RSV1 bit set in continuation frame")
            if frame.fin:
                self.decode_cont_data = False
        else:
            if not frame.rsv1:
                return frame
            if not frame.fin:
                self.decode_cont_data = True
            if self.remote_no_context_takeover:
                self.decoder = zlib.decompressobj(wbits=-self.remote_max_window_bits)
            self._in = self._out = 0
        self._in += len(frame.data)
        # ``max_size`` is what is left of the message limit; the ratio bound counts the whole message.
        room = inflate_limit(self._in, None, self.floor, self.ratio) - self._out
        if max_size is not None:
            room = min(room, max_size)
        chunks = self._inflate((frame.data, _EMPTY_BLOCK) if frame.fin else (frame.data,), room)
        if chunks is None:
            # Nothing inflated is referenced any more: the memory is free before the error propagates.
            raise PayloadTooBig(None, max_size if max_size is not None else room)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._out += len(data)
        if frame.fin and self.remote_no_context_takeover:
            del self.decoder
        return Frame(frame.opcode, data, frame.fin, False, frame.rsv2, frame.rsv3)

    def _inflate(self, inputs: tuple[Any, ...], room: int) -> list[bytes] | None:
        """The inflated chunks of ``inputs`` fed in order, or None (everything dropped) past ``room`` bytes."""
        chunks: list[bytes] = []
        size = 0
        try:
            for pending in inputs:
                while True:
                    chunk = self.decoder.decompress(pending, STEP)
                    size += len(chunk)
                    if size > room:
                        chunks.clear()
                        return None
                    if chunk:
                        chunks.append(chunk)
                    pending = self.decoder.unconsumed_tail
                    if not pending and len(chunk) < STEP:
                        break
        except zlib.error as exc:
            chunks.clear()
            raise ProtocolError("decompression failed") from exc
        return chunks


class BoundedDeflateFactory(ServerPerMessageDeflateFactory):
    """websockets' server factory with its defaults, negotiating :class:`BoundedPerMessageDeflate`."""

    def __init__(self, floor: int = DEFAULT_FLOOR, ratio: int = DEFAULT_RATIO) -> None:
        # The same settings websockets uses for ``compression="deflate"``.
        super().__init__(server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5})
        self.floor = floor
        self.ratio = ratio

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Any]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, ext = super().process_request_params(params, accepted_extensions)
        bounded = BoundedPerMessageDeflate(
            ext.remote_no_context_takeover,
            ext.local_no_context_takeover,
            ext.remote_max_window_bits,
            ext.local_max_window_bits,
            ext.compress_settings,
            floor=self.floor,
            ratio=self.ratio,
        )
        return response, bounded
