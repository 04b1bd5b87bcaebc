"""A real bridge process reading bad shim lines: each is dropped, the first of each kind is logged once, the
bridge keeps serving, and good lines of the same kind after it still work."""

from __future__ import annotations

from .bridge_helpers import init_when
from .fake_shim import FakeShim


async def test_bad_lines_are_dropped_and_logged_once_per_kind(tmp_path):
    fake = FakeShim(tmp_path)
    await fake.start()
    try:
        for _ in range(3):
            await fake.write({"t": "session", "session_id": 5})
            await fake.write({"t": "event", "e": "not an object"})
            await fake.write({"t": "bye", "reason": 1})  # a bad bye is not a bye: the bridge stays
        await fake.emit({"type": "session_info_changed", "name": "still read"})
        ws, _init = await init_when(fake, lambda m: m.get("session_name") == "still read")  # read after the bad ones
        await ws.close()
        dropped = [x for x in fake.log_lines() if x.get("msg") == "shim line dropped"]
        assert sorted(x["line_type"] for x in dropped) == ["bye", "event", "session"]
        assert all(x.get("boundary") == "stdin.line" and not x.get("needsHardening") for x in dropped)
        assert fake.proc is not None and fake.proc.returncode is None
    finally:
        await fake.stop()
