"""The agent link end to end: a real bridge process, a fake shim, real WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json

from websockets.exceptions import ConnectionClosed

from .bridge_helpers import init_when, open_client, recv_json, recv_until, send_json
from .fake_shim import FakeShim, assistant_message, sample_events, user_message


def is_type(kind: str):
    return lambda m: m.get("type") == kind


async def test_join_mid_stream_gets_partial_then_the_rest(shim: FakeShim):
    events = sample_events()
    await shim.emit(*events[:8])  # agent_start, turn_start, user msg, assistant start, text_start, 2 deltas
    ws, init = await init_when(
        shim, lambda i: i["partial"] is not None and len(i["partial"]["content"][0]["text"]) >= 12
    )
    async with ws:
        assert init["is_streaming"] is True
        assert init["partial"]["role"] == "assistant"
        assert init["partial"]["content"] == [{"type": "text", "text": "Hello from f"}]
        assert [m["role"] for m in init["messages"]] == ["user"]
        await shim.emit(*events[8:16])  # ... through agent_end of the first run
        end, before = await recv_until(ws, lambda m: m["type"] == "message_end" and m["message"]["role"] == "assistant")
        assert end["message"]["content"][0]["text"] == "Hello from fake LLM. You said: hello"
        deltas = "".join(m["assistantMessageEvent"].get("delta", "") for m in before if m["type"] == "message_update")
        assert "Hello from f" + deltas == "Hello from fake LLM. You said: hello"
        assert all(
            "message" not in m and "partial" not in m.get("assistantMessageEvent", {})
            for m in before
            if m["type"] == "message_update"
        )
        await recv_until(ws, is_type("agent_end"))
    ws, init = await init_when(shim, lambda i: i["context_usage"] is not None)  # state refreshed after the run
    async with ws:
        assert init["is_streaming"] is False and init["partial"] is None
        assert init["tokens"]["total"] == 616 and abs(init["cost"] - 0.000625) < 1e-9
        assert init["context_usage"]["context_window"] == 128000


async def test_big_history_cut_at_500kb_and_paged_without_gaps_or_duplicates(tmp_path):
    history = []
    for i in range(1000):
        history.append(user_message(f"question {i} " + "q" * 400, 2 * i))
        history.append(assistant_message(f"answer {i} " + "a" * 400, 2 * i + 1))
    fake = FakeShim(tmp_path, history=history)
    await fake.start()
    try:
        async with await open_client(fake) as ws:
            init = await recv_json(ws)
            assert init["truncated"] is True and init["total_messages"] == 2000
            assert len(json.dumps(init["messages"], separators=(",", ":"))) <= 500 * 1024
            assert init["cursor"] == 2000 - len(init["messages"])
            stamps = [m["timestamp"] for m in init["messages"]]
            cursor = init["cursor"]
            for _ in range(100):
                if cursor == 0:
                    break
                await send_json(ws, {"type": "fetch_history", "before": cursor, "limit": 137})
                page = await recv_json(ws)
                assert page["type"] == "history_page" and page["before"] == cursor
                assert page["cursor"] == cursor - len(page["messages"]) and page["has_more"] == (page["cursor"] > 0)
                stamps = [m["timestamp"] for m in page["messages"]] + stamps
                cursor = page["cursor"]
            assert stamps == list(range(2000))
            assert init["tokens"]["total"] == 1000 * 20
    finally:
        await fake.stop()


async def test_two_clients_see_the_same_frames_in_the_same_order(shim: FakeShim):
    async def until_second_agent_end(ws) -> list[dict]:
        frames: list[dict] = []
        for _ in range(2):
            end, before = await recv_until(ws, is_type("agent_end"))
            frames += before + [end]
        return frames

    async with await open_client(shim) as a, await open_client(shim) as b:
        await recv_json(a), await recv_json(b)
        await shim.emit(*sample_events())
        seen_a, seen_b = await until_second_agent_end(a), await until_second_agent_end(b)
        assert seen_a == seen_b and len(seen_a) == len(sample_events())
        assert [m["type"] for m in seen_a] == [e["type"] for e in sample_events()]


async def test_prompt_ack_once_and_idempotent_across_reconnect(shim: FakeShim):
    shim.send_delay = 0.6
    async with await open_client(shim) as ws:
        await recv_json(ws)
        await send_json(ws, {"type": "prompt", "id": "p-1", "text": "hello", "deliver_as": "followUp"})
        await shim.wait_for_request("send")
    # disconnected before the ack; the client resends the same id on reconnect
    async with await open_client(shim) as ws:
        await recv_json(ws)
        await send_json(ws, {"type": "prompt", "id": "p-1", "text": "hello"})
        ack = await recv_json(ws)
        assert ack == {"type": "ack", "id": "p-1", "duplicate": True}
        await send_json(ws, {"type": "prompt", "id": "p-1", "text": "hello"})
        assert await recv_json(ws) == {"type": "ack", "id": "p-1", "duplicate": True}
        shim.send_delay = 0
        await send_json(ws, {"type": "prompt", "id": "p-2", "text": "second"})
        assert await recv_json(ws) == {"type": "ack", "id": "p-2", "duplicate": False}
    sends = shim.sent("send")
    assert [(s["text"], s.get("deliverAs")) for s in sends] == [("hello", "followUp"), ("second", None)]


async def test_refused_prompt_is_an_error_and_can_be_retried(shim: FakeShim):
    shim.send_ok = False
    async with await open_client(shim) as ws:
        await recv_json(ws)
        await send_json(ws, {"type": "prompt", "id": "r1", "text": "x"})
        err = await recv_json(ws)
        assert err["type"] == "error" and err["id"] == "r1" and err["code"] == 1012
        shim.send_ok = True
        await send_json(ws, {"type": "prompt", "id": "r1", "text": "x"})
        assert (await recv_json(ws))["type"] == "ack"
    assert len(shim.sent("send")) == 2


async def test_attachments_ride_in_the_same_prompt(shim: FakeShim):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n1234").decode()
    note = base64.b64encode(b"line1\nline2").decode()
    async with await open_client(shim) as ws:
        await recv_json(ws)
        await send_json(
            ws,
            {
                "type": "prompt",
                "id": "att",
                "text": "see",
                "attachments": [
                    {"name": "shot.png", "mime_type": "image/png", "data": png},
                    {"name": "notes.txt", "mime_type": "text/plain", "data": note},
                ],
            },
        )
        assert (await recv_json(ws))["type"] == "ack"
        await send_json(
            ws,
            {
                "type": "prompt",
                "id": "bad",
                "text": "x",
                "attachments": [{"name": "a.zip", "mime_type": "application/zip", "data": "UEs="}],
            },
        )
        err = await recv_json(ws)
        assert err["type"] == "error" and err["id"] == "bad" and "unsupported type" in err["message"]
    (send,) = shim.sent("send")
    assert send["text"] == 'see\n\n<file name="notes.txt">\nline1\nline2\n</file>'
    assert send["images"] == [{"type": "image", "data": png, "mimeType": "image/png"}]


async def test_invalid_frames_get_errors_and_the_connection_stays_open(shim: FakeShim):
    bad = [
        ("not json", -32700),
        (b"\x01\x02", -32600),
        ("[]", -32600),
        ('"str"', -32600),
        ('{"no":"type"}', -32600),
        ('{"type":"rm_rf"}', -32601),
        ('{"type":"prompt","id":"e1","text":7}', -32602),
        ('{"type":"prompt","id":"e2"}', -32602),
        ('{"type":"prompt","id":"e3","text":"   "}', -32602),
        ('{"type":"prompt","id":"","text":"x"}', -32602),
        ('{"type":"fetch_history","before":"x"}', -32602),
        ('{"type":"list_files","prefix":3}', -32602),
        ('{"type":"fetch_history","before":0,"limit":0,"extra":true}', -32602),
        ('{"type":"prompt","id":"e4","text":"x","deliver_as":"now"}', -32602),
    ]
    async with await open_client(shim) as ws:
        await recv_json(ws)
        for raw, code in bad:
            await ws.send(raw)
            reply = await recv_json(ws)
            assert reply["type"] == "error" and reply["code"] == code and reply["message"], (raw, reply)
        await send_json(ws, {"type": "fetch_history", "before": 0})
        assert (await recv_json(ws))["type"] == "history_page"
    assert shim.sent("send") == []


async def test_list_commands_list_files_and_rename(shim: FakeShim):
    (shim.cwd / "src").mkdir()
    (shim.cwd / "src" / "app.py").write_text("x")
    async with await open_client(shim) as a, await open_client(shim) as b:
        await recv_json(a), await recv_json(b)
        await send_json(a, {"type": "list_commands"})
        assert (await recv_json(a))["commands"][0]["name"] == "deploy"
        await send_json(a, {"type": "list_files", "prefix": "src/a"})
        assert (await recv_json(a))["files"] == [{"path": "src/app.py", "is_dir": False}]
        await send_json(a, {"type": "list_files", "prefix": "../"})
        assert (await recv_json(a))["files"] == []
        await send_json(a, {"type": "set_session_name", "name": "refactor auth"})
        for ws in (a, b):
            assert await recv_json(ws) == {"type": "session_info_changed", "name": "refactor auth"}
        await send_json(a, {"type": "abort"})
        await shim.wait_for_request("abort")
    assert shim.sent("set_session_name")[0]["name"] == "refactor auth"
    async with await open_client(shim) as c:
        assert (await recv_json(c))["session_name"] == "refactor auth"


async def test_new_session_resends_init_state(shim: FakeShim):
    async with await open_client(shim) as ws:
        await recv_json(ws)
        await shim.new_session("sess-2", [user_message("from the other session", 5)])
        init, _ = await recv_until(ws, is_type("init_state"))
        assert [m["timestamp"] for m in init["messages"]] == [5]


async def test_slow_client_is_dropped_and_others_keep_receiving(tmp_path):
    fake = FakeShim(tmp_path, env={"PI_SOCKET_CLIENT_QUEUE_FRAMES": "200"})
    await fake.start()
    try:
        slow = await open_client(fake, max_queue=1, compression=None)  # stops reading after one frame
        fast = await open_client(fake, compression=None)
        await recv_json(fast)
        filler = "z" * 20_000
        total = 1500

        async def read_all() -> list[int]:
            return [(await recv_json(fast, 10))["i"] for _ in range(total)]

        reader = asyncio.create_task(read_all())
        for i in range(total):  # paced a little, as pi's events are: the fast client must keep up
            await fake.emit(
                {
                    "type": "tool_execution_update",
                    "toolCallId": "t",
                    "toolName": "bash",
                    "i": i,
                    "partialResult": {"content": [{"type": "text", "text": filler}]},
                }
            )
            if i % 20 == 19:
                await asyncio.sleep(0.005)
        assert await asyncio.wait_for(reader, 20) == list(range(total))
        # the slow client wakes up: it finds what was buffered, then the 1008 close with its reason
        received = 0
        with contextlib.suppress(ConnectionClosed):
            for _ in range(total + 1):
                await asyncio.wait_for(slow.recv(), 5)
                received += 1
        assert received < total // 2
        assert slow.close_code == 1008 and "too slow" in slow.close_reason
        assert any(line["msg"] == "closing slow client" for line in fake.log_lines())
    finally:
        await fake.stop()


async def test_prompt_id_survives_a_bridge_restart(shim: FakeShim):
    async with await open_client(shim) as ws:
        await recv_json(ws)
        await send_json(ws, {"type": "prompt", "id": "keep-1", "text": "only once"})
        assert await recv_json(ws) == {"type": "ack", "id": "keep-1", "duplicate": False}
    port = shim.port
    await shim.restart()  # the bridge crashed before the client saw its ack, say
    assert shim.port == port
    async with await open_client(shim) as ws:
        await recv_json(ws)
        await send_json(ws, {"type": "prompt", "id": "keep-1", "text": "only once"})
        assert await recv_json(ws) == {"type": "ack", "id": "keep-1", "duplicate": True}
    assert [d["text"] for d in shim.delivered] == ["only once"]
    assert [s["prompt_id"] for s in shim.sent("send")] == ["keep-1", "keep-1"]


async def _watch_lines(fake: FakeShim, count: int, timeout: float = 5.0) -> list[bool]:
    """The bridge's `watch` lines so far, once there are ``count`` of them (bounded wait)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = [line["on"] for line in fake.lines if line.get("t") == "watch"]
        if len(got) >= count or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.02)


async def test_watch_follows_the_first_and_last_client_and_a_snapshot_resyncs_them(shim: FakeShim):
    ready = next(line for line in shim.lines if line.get("t") == "ready")
    assert ready["watch"] is True and ready["watching"] is False  # nobody connected yet: no deltas wanted
    events = sample_events()
    starts = [i for i, e in enumerate(events) if e["type"] == "message_start" and e["message"]["role"] == "assistant"]
    await shim.emit(*events[: starts[0] + 1])  # up to the assistant's message_start; its deltas went unforwarded
    ws, init = await init_when(shim, lambda i: i["is_streaming"] and i["partial"] is not None)
    async with ws:
        assert init["partial"]["content"] == []  # the bridge's copy is stale: it saw no delta
        assert await _watch_lines(shim, 1) == [True]
        second = await open_client(shim)  # a second client: still one `watch on`
        await recv_json(second)
        snapshot = {
            "role": "assistant",
            "content": [{"type": "text", "text": "Hello from f"}],
            "api": "x",
            "provider": "fake",
            "model": "fake-model",
            "timestamp": 1,
        }
        await shim.emit(
            {
                "type": "message_update",
                "message": snapshot,
                "assistantMessageEvent": {"type": "text_delta", "contentIndex": 0, "delta": "f"},
            },
            {
                "type": "message_update",
                "assistantMessageEvent": {"type": "text_delta", "contentIndex": 0, "delta": "ake"},
            },
        )
        for client in (ws, second):
            fresh, before = await recv_until(client, is_type("init_state"))
            assert not [m for m in before if m["type"] == "message_update"]  # the snapshot is not a delta
            assert fresh["is_streaming"] is True
            assert fresh["partial"]["content"] == [{"type": "text", "text": "Hello from f"}]
            after, _ = await recv_until(client, is_type("message_update"))
            assert after["assistantMessageEvent"]["delta"] == "ake"
        await second.close()
        await asyncio.sleep(0.3)
        assert await _watch_lines(shim, 2, timeout=0.5) == [True]  # one client is still there
    assert await _watch_lines(shim, 2) == [True, False]
