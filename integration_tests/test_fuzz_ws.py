"""Bad input against REAL processes: the hypivisor's ``/ws`` and a real bridge's agent link.

Hypothesis generates batches of hostile frames (invalid JSON, wrong types,
unknown methods/types, huge ids, binary frames, random params); hand-written
cases add 100,000-deep nesting, oversize frames and floods. After every
batch the SAME connection must still answer (``list_nodes`` / ``list_commands``)
and the state must be unchanged (roster snapshot; nothing reached pi except
frames that were valid prompts). Each error is a typed ``{code, message}``.

Bridge runs here use ``pi_socket/tests/fake_shim.py`` (the real bridge
process, a scripted shim); ``test_real_pi_agent_link_survives_a_fuzz_batch``
repeats one batch against real pi 0.73.1 with the shim installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from integration_tests.harness.hypivisor_proc import RegistryClient, node_params
from pi_socket.bridge.frames import parse_client_frame
from pi_socket.protocol import ErrorMsg, PromptMsg
from pi_socket.tests.fake_shim import FakeShim

BATCH = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
REGISTRY_ERRORS = {-32700, -32600, -32601, -32602, 1002, 1003, 1004, 1005, 1006}
LINK_ERRORS = {-32700, -32600, -32601, -32602, 1007}

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
HUGE_ID = st.one_of(st.text(min_size=129, max_size=5000), st.integers(min_value=2**63, max_value=2**200))


def _dumps(obj) -> str:
    return json.dumps(obj)


# ---------------------------------------------------------------------------------------------- /ws
SAFE_METHODS = [
    "list_nodes",
    "heartbeat",
    "deregister",
    "list_directories",
    "register",
    "",
    "nope",
    "_m_list_nodes",
    "__class__",
    "LIST_NODES",
]
REQUEST = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(JSON, HUGE_ID),
        "method": st.one_of(st.sampled_from(SAFE_METHODS), JSON),
        "params": st.one_of(
            JSON, st.dictionaries(st.sampled_from(["id", "machine", "cwd", "port", "path"]), JSON, max_size=4)
        ),
        "jsonrpc": JSON,
        "extra": JSON,
    },
)
WS_FRAME = st.one_of(
    st.binary(max_size=200),  # binary frames
    st.text(max_size=200),  # not JSON (mostly)
    JSON.map(_dumps),  # JSON that is not a request
    REQUEST.map(_dumps),  # request-shaped, wrong types, unknown methods, huge ids
)


class Ws:
    """A sync /ws connection that sorts replies from pushed events."""

    def __init__(self, hv, **kw):
        self.ws = connect(
            hv.ws_url, additional_headers=hv.auth_headers, max_size=None, open_timeout=5, **kw
        ).__enter__()
        self.n = 0

    def roundtrip(self, frames: list, timeout: float = 10.0) -> list[dict]:
        """Send ``frames`` then a list_nodes; return every reply before the list_nodes answer, and that answer."""
        for f in frames:
            self.ws.send(f)
        self.n += 1
        probe = f"probe-{self.n}"
        self.ws.send(json.dumps({"id": probe, "method": "list_nodes"}))
        replies, answer, deadline = [], None, time.monotonic() + timeout
        while answer is None or len(replies) < len(frames):  # replies may come out of order (concurrent requests)
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if "event" in msg:
                continue
            if msg.get("id") == probe:
                answer = msg
            else:
                replies.append(msg)
        return replies + [answer]

    def close(self):
        self.ws.close()


@pytest.fixture
def roster(hypivisor_factory):
    """A real hypivisor with two registered nodes (held by a bridge-like connection) and a dashboard socket."""
    hv = hypivisor_factory(args=["--rate-limit", "0"])  # the flood test below sets its own limit
    holder = Ws(hv)
    ids = [f"node-{uuid.uuid4().hex}" for _ in range(2)]
    for i, nid in enumerate(ids):
        holder.ws.send(json.dumps({"id": f"reg{i}", "method": "register", "params": node_params(nid, 9100 + i)}))
    holder.roundtrip([])
    dash = Ws(hv)
    nodes = dash.roundtrip([])[-1]["result"]["nodes"]
    assert sorted(n["id"] for n in nodes) == sorted(ids)
    yield hv, dash, nodes
    dash.close()
    holder.close()


def comparable(nodes: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in n.items() if k != "last_seen"} for n in nodes), key=lambda n: n["id"])


@BATCH
@given(frames=st.lists(WS_FRAME, min_size=1, max_size=20))
def test_registry_fuzz_batches_get_typed_errors_and_change_nothing(roster, frames):
    hv, dash, before = roster
    replies = dash.roundtrip(frames)
    probe = replies.pop()
    assert comparable(probe["result"]["nodes"]) == comparable(before), "a fuzz batch changed the roster"
    assert len(replies) == len(frames), "every frame gets exactly one answer"
    for r in replies:
        if "error" in r:
            assert r["error"]["code"] in REGISTRY_ERRORS and r["error"]["message"], r
        else:  # a generated frame that happened to be a valid read-only call
            assert "result" in r and set(r) == {"id", "result"}, r
    assert hv.proc.poll() is None


def test_registry_hand_written_bad_input(roster):
    hv, dash, before = roster
    deep = "[" * 100_000 + "]" * 100_000
    deep_params = '{"id": "d", "method": "list_nodes", "params": ' + '{"a":' * 100_000 + "1" + "}" * 100_000 + "}"
    frames = [
        deep,
        deep_params,
        "{" * 500_000,
        b"\x00\xff" * 1000,
        '{"id": ' + "9" * 5000 + ', "method": "x"}',
        json.dumps({"id": "x" * 10_000, "method": "list_nodes"}),
        json.dumps({"id": [1], "method": "list_nodes"}),
        json.dumps({"id": "w", "method": "heartbeat", "params": {"id": before[0]["id"]}}),  # not its owner
        json.dumps({"id": "p", "method": "list_directories", "params": {"path": "../../etc"}}),
        json.dumps({"id": "n", "method": "list_directories", "params": {"path": "a\x00b"}}),
        json.dumps({"id": "l", "method": "list_directories", "params": {"path": "x/" * 3000}}),
        "",
    ]
    replies = dash.roundtrip(frames, timeout=20)
    probe = replies.pop()
    by_id = {r["id"]: r["error"]["code"] for r in replies if r["id"] is not None}
    assert by_id == {"w": 1006, "p": 1003, "n": 1005, "l": -32602}  # not owner, outside home, NUL, over 4096 chars
    unnamed = sorted(r["error"]["code"] for r in replies if r["id"] is None)
    assert unnamed == [-32700] * 6 + [-32600] * 2  # deep nesting, huge int id, binary, empty; over-long/array ids
    assert comparable(probe["result"]["nodes"]) == comparable(before)
    assert "RecursionError" not in hv.log_lines() and "Traceback" not in hv.stderr()


def test_registry_oversize_frame_closes_only_that_socket_1009(roster):
    hv, dash, before = roster
    big = Ws(hv)
    big.ws.send(json.dumps({"id": 1, "method": "list_nodes", "pad": "x" * (1024 * 1024 + 10)}))
    with pytest.raises(ConnectionClosed) as e:
        for _ in range(10):
            big.ws.recv(timeout=5)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1009
    assert comparable(dash.roundtrip([])[-1]["result"]["nodes"]) == comparable(before)
    ok = Ws(hv)  # the limit is per frame: a frame just under 1 MiB is fine
    assert "error" in ok.roundtrip([json.dumps({"id": 2, "method": "list_nodes", "pad": "x" * (1000 * 1024)})])[0]
    ok.close()


async def test_registry_flood_is_rate_limited_with_1008_without_closing(hypivisor_factory):
    hv = hypivisor_factory(args=["--rate-limit", "50"])  # burst 500, then 50/s
    async with await RegistryClient.connect(hv, max_queue=None) as c:
        await c.event("init")
        n = 2000
        for i in range(n):
            await c.ws.send(json.dumps({"id": i, "method": "list_nodes"}))
        got = {}
        while len(got) < n:
            r = await c._read_one(20)
            if "event" not in r:
                assert r["id"] not in got, "answered twice"
                got[r["id"]] = r
        limited = [i for i, r in got.items() if "error" in r]
        assert all(got[i]["error"]["code"] == 1008 for i in limited)
        assert 500 <= n - len(limited) <= 700, n - len(limited)  # the burst plus what refilled meanwhile
        await asyncio.sleep(0.5)
        assert "result" in await c.call("list_nodes")  # same connection, still served


async def test_registry_default_limit_never_refuses_a_normal_client(hypivisor_factory):
    hv = hypivisor_factory()
    async with await RegistryClient.connect(hv) as bridge:
        await bridge.call("register", node_params("n", 9001))
        for i in range(300):  # far more than a bridge ever sends in a burst
            assert "result" in await bridge.call("heartbeat", {"id": "n", "session_name": f"s{i}"})


# ---------------------------------------------------------------------------------------------- agent link
class Loop:
    """An asyncio loop in a thread, to drive FakeShim from synchronous hypothesis tests."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def bridge(tmp_path):
    (tmp_path / "proj" / "src").mkdir(parents=True)
    (tmp_path / "outside-secret").mkdir()
    (tmp_path / "proj" / "out").symlink_to(tmp_path / "outside-secret")
    loop = Loop()
    fake = FakeShim(tmp_path, cwd=tmp_path / "proj", env={"PI_SOCKET_RATE_LIMIT": "0"})
    loop.run(fake.start())
    try:
        yield fake
    finally:
        loop.run(fake.stop())
        loop.close()


class Link:
    def __init__(self, url: str):
        self.ws = connect(url, max_size=None, open_timeout=5).__enter__()
        self.init = json.loads(self.ws.recv(timeout=5))
        assert self.init["type"] == "init_state"
        self.n = 0

    def roundtrip(self, frames: list, timeout: float = 15.0) -> tuple[list[dict], dict]:
        """Send frames, then list_commands; (every other frame received meanwhile, the commands_list)."""
        for f in frames:
            self.ws.send(f)
        self.ws.send(json.dumps({"type": "list_commands"}))
        seen, deadline = [], time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("type") == "commands_list":
                # list_commands frames from the batch answer too; the probe's is the last one
                if sum(1 for m in seen if m.get("type") == "commands_list") >= expected_lists(frames):
                    return seen, msg
            seen.append(msg)

    def more(self, seen: list[dict], until, timeout: float = 10.0) -> list[dict]:
        """Keep receiving into ``seen`` until ``until(seen)`` (replies of concurrent requests come in any order)."""
        deadline = time.monotonic() + timeout
        while not until(seen):
            seen.append(json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))))
        return seen


def expected_lists(frames: list) -> int:
    return sum(1 for f in frames if type(parse_client_frame(f)).__name__ == "ListCommandsMsg")


LINK_TYPES = [
    "prompt",
    "abort",
    "fetch_history",
    "list_commands",
    "list_files",
    "set_session_name",
    "init_state",
    "ack",
    "",
    "PROMPT",
    "__init__",
]
LINK_FRAME = st.one_of(
    st.binary(max_size=100),
    st.text(max_size=200),
    JSON.map(_dumps),
    st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(LINK_TYPES), JSON)},
        optional={
            "id": st.one_of(JSON, HUGE_ID),
            "text": JSON,
            "before": JSON,
            "limit": JSON,
            "prefix": st.one_of(JSON, st.sampled_from(["../", "/etc/", "out/", "src/../../", "\x00"])),
            "name": JSON,
            "deliver_as": JSON,
            "attachments": JSON,
            "x": JSON,
        },
    ).map(_dumps),
)


def check_link_batch(fake_sent_before: int, sent_now: int, frames: list, seen: list[dict], cwd_real: Path) -> None:
    valid_prompts = sum(
        1 for f in frames if isinstance(m := parse_client_frame(f), PromptMsg) and (m.text.strip() or m.attachments)
    )
    assert sent_now - fake_sent_before <= valid_prompts, "an invalid frame reached pi as a prompt"
    for m in seen:
        if m.get("type") == "error":
            assert m["code"] in LINK_ERRORS | {1012} and m["message"], m
        if m.get("type") == "files_list":
            for entry in m["files"]:
                assert (cwd_real / entry["path"]).resolve().is_relative_to(cwd_real), entry


@BATCH
@given(frames=st.lists(LINK_FRAME, min_size=1, max_size=20))
def test_agent_link_fuzz_batches_get_typed_errors_and_nothing_reaches_pi(bridge, frames):
    link = Link(bridge.url)
    try:
        before = len(bridge.sent("send"))
        seen, commands = link.roundtrip(frames)
        assert commands["commands"], "the same connection still answers list_commands"
        invalid = [f for f in frames if isinstance(parse_client_frame(f), ErrorMsg)]
        assert sum(1 for m in seen if m.get("type") == "error") >= len(invalid)
        check_link_batch(before, len(bridge.sent("send")), frames, seen, Path(os.path.realpath(bridge.cwd)))
    finally:
        link.ws.close()
    assert bridge.proc.returncode is None


def test_agent_link_hand_written_bad_input(bridge):
    link = Link(bridge.url)
    deep = "[" * 100_000 + "]" * 100_000
    frames = [
        deep,
        '{"type":"prompt","id":"d","text":' + "[" * 100_000 + "]" * 100_000 + "}",
        b"\x89PNG\r\n",
        json.dumps({"type": "prompt", "id": "x" * 100_000, "text": "hi"}),
        json.dumps(
            {
                "type": "prompt",
                "id": "bad-b64",
                "text": "hi",
                "attachments": [{"name": "a.png", "mime_type": "image/png", "data": "%%%"}],
            }
        ),
        json.dumps(
            {
                "type": "prompt",
                "id": "bad-mime",
                "text": "hi",
                "attachments": [{"name": "a.exe", "mime_type": "application/x-msdownload", "data": "TVo="}],
            }
        ),
        json.dumps(
            {
                "type": "prompt",
                "id": "too-big",
                "text": "hi",
                "attachments": [{"name": "a.png", "mime_type": "image/png", "data": "A" * (7 * 1024 * 1024)}],
            }
        ),
        json.dumps({"type": "list_files", "prefix": "../"}),
        json.dumps({"type": "list_files", "prefix": "out/"}),
        json.dumps({"type": "list_files", "prefix": "/etc/"}),
        json.dumps({"type": "fetch_history", "before": -1}),
        json.dumps({"type": "rm", "id": "r"}),
    ]
    seen, _ = link.roundtrip(frames, timeout=30)
    link.more(
        seen,
        lambda s: sum(m.get("type") == "files_list" for m in s) == 3 and sum(m.get("type") == "error" for m in s) == 9,
    )
    errors = {m.get("id"): m["code"] for m in seen if m.get("type") == "error"}
    assert errors.get("bad-b64") == -32602 and errors.get("bad-mime") == -32602 and errors.get("too-big") == 1007
    assert errors.get("r") == -32601
    assert [m["files"] for m in seen if m.get("type") == "files_list"] == [[], [], []]
    assert sum(1 for m in seen if m.get("type") == "error") == 9, seen
    assert bridge.sent("send") == [] and "RecursionError" not in bridge.log_path.read_text()
    link.ws.close()


def test_agent_link_oversize_frame_is_1009_for_that_client_only(tmp_path):
    loop = Loop()
    fake = FakeShim(tmp_path, env={"PI_SOCKET_MAX_FRAME_BYTES": str(256 * 1024)})
    loop.run(fake.start())
    try:
        other = Link(fake.url)
        big = Link(fake.url)
        big.ws.send(json.dumps({"type": "prompt", "id": "big", "text": "x" * (300 * 1024)}))
        with pytest.raises(ConnectionClosed) as e:
            for _ in range(10):
                big.ws.recv(timeout=5)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1009
        assert other.roundtrip([])[1]["commands"] and fake.sent("send") == []
        other.ws.close()
    finally:
        loop.run(fake.stop())
        loop.close()


def test_agent_link_flood_is_rate_limited_with_1008_and_prompts_named(tmp_path):
    loop = Loop()
    fake = FakeShim(tmp_path, env={"PI_SOCKET_RATE_LIMIT": "20"})  # burst 200, then 20/s
    loop.run(fake.start())
    try:
        link = Link(fake.url)
        n = 600
        for _ in range(n):
            link.ws.send(json.dumps({"type": "fetch_history", "before": 0, "limit": 1}))
        link.ws.send(json.dumps({"type": "prompt", "id": "flooded", "text": "hi"}))
        answers, limited, deadline = 0, [], time.monotonic() + 20
        while answers < n + 1 and time.monotonic() < deadline:
            m = json.loads(link.ws.recv(timeout=10))
            if m.get("type") in ("history_page", "error", "ack"):
                answers += 1
                if m.get("type") == "error":
                    limited.append(m)
        assert answers == n + 1, "every frame gets exactly one answer"
        assert all(m["code"] == 1008 for m in limited)  # over the rate, or over 64 in flight: both 1008
        by_rate = [m for m in limited if m["message"].startswith("rate limited")]
        assert 200 <= n + 1 - len(by_rate) <= 260, len(by_rate)  # the burst plus what refilled meanwhile
        assert by_rate[-1]["id"] == "flooded", "a refused prompt is named so the client can retry it"
        assert fake.sent("send") == []
        time.sleep(1.0)
        link.ws.send(json.dumps({"type": "prompt", "id": "flooded", "text": "hi"}))
        ack = json.loads(link.ws.recv(timeout=10))
        assert ack["type"] == "ack" and ack["id"] == "flooded" and len(fake.sent("send")) == 1
        link.ws.close()
    finally:
        loop.run(fake.stop())
        loop.close()


# ---------------------------------------------------------------------------------------------- real pi
@pytest.mark.pi
def test_real_pi_agent_link_survives_a_fuzz_batch(start_pi, fake_llm):
    pi = start_pi("0.73.1", mode="rpc")
    link = Link(pi.url)
    frames = [
        "{",
        "[" * 100_000 + "]" * 100_000,
        b"\x00",
        json.dumps({"type": "nope"}),
        json.dumps({"type": "prompt", "id": 5, "text": "hi"}),
        json.dumps({"type": "prompt", "id": "e", "text": " "}),
        json.dumps(
            {
                "type": "prompt",
                "id": "a",
                "text": "hi",
                "attachments": [{"name": "x", "mime_type": "application/zip", "data": "UEs="}],
            }
        ),
        json.dumps({"type": "list_files", "prefix": "../../"}),
        json.dumps({"type": "set_session_name", "name": 7}),
    ]
    seen, commands = link.roundtrip(frames, timeout=30)
    link.more(seen, lambda s: sum(m.get("type") in ("files_list", "error") for m in s) == 9)
    assert commands["commands"] is not None
    assert [m["code"] for m in seen if m.get("type") == "error"] == [
        -32700,
        -32700,
        -32600,
        -32601,
        -32602,
        -32602,
        -32602,
        -32602,
    ]
    assert [m["files"] for m in seen if m.get("type") == "files_list"] == [[]]
    time.sleep(0.5)
    assert fake_llm.requests() == [], "nothing reached the model"
    link.ws.close()


# ---------------------------------------------------------------------------------------------- spawn paths
SPAWN_PATH = st.one_of(
    st.lists(
        st.sampled_from(["..", ".", "proj", "link-out", "abs-out", "etc", "x\x00", "a" * 300, "~", ""]), max_size=5
    ).map("/".join),
    st.sampled_from(["/", "/etc", "/tmp", "~/..", "../outside", "{outside}"]),
)
SPAWN_FOLDER = st.one_of(
    st.none(),
    st.sampled_from(["a/b", "..", ".", ".hidden", "x\x00", "n" * 201, "\\x", "/abs", "ok", " sp", "link-out"]),
    st.text(max_size=12),
)


@pytest.fixture
def spawn_home(hypivisor_factory, tmp_path):
    home = tmp_path / "home"
    (home / "proj").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (home / "link-out").symlink_to(tmp_path / "outside")
    (home / "abs-out").symlink_to("/")
    # "true" never registers: a spawn that passes every check ends in 1010 after 0.3 s, having run nothing else
    hv = hypivisor_factory(home=home, env={"HYPI_SPAWN_COMMAND": "true", "HYPI_SPAWN_TIMEOUT": "0.3"})
    ws = Ws(hv)
    yield hv, ws, tmp_path
    ws.close()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=SPAWN_PATH, new_folder=SPAWN_FOLDER)
def test_spawn_paths_against_the_real_process_create_nothing_unless_valid(spawn_home, path, new_folder):
    hv, ws, root = spawn_home
    before = {str(p.relative_to(root)) for p in root.rglob("*")}
    params = {"path": path.replace("{outside}", str(root / "outside")) or "~"}
    if new_folder is not None:
        params["new_folder"] = new_folder
    replies = ws.roundtrip([json.dumps({"id": "s", "method": "spawn_agent", "params": params})], timeout=20)
    reply = next(r for r in replies if r.get("id") == "s")
    code = reply["error"]["code"]
    assert code in {1003, 1004, 1005, -32602, 1010, 1008}, reply  # 1008: the spawn rate limit (20 a minute)
    after = {str(p.relative_to(root)) for p in root.rglob("*")}
    created = after - before
    # even a spawn that passed every check (1010: "true" never registers) leaves nothing behind
    assert created == set(), f"{reply} but created {created}"
    assert not (root / "outside").exists() or list((root / "outside").iterdir()) == []


# ---------------------------------------------------------------------------------------------- stored values
def _nest(value, levels: int):
    for _ in range(levels):
        value = {"x": value}
    return value


STORED_SHAPES = st.fixed_dictionaries(
    {},
    optional={
        "tokens": st.one_of(
            JSON, st.integers(min_value=250, max_value=400).map(lambda n: {"input": 1, "x": _nest(1, n)})
        ),
        "protocol_version": st.one_of(JSON, st.integers(min_value=1, max_value=300_000).map(lambda n: "1" * n)),
        "session_name": st.one_of(JSON, st.integers(min_value=1, max_value=300_000).map(lambda n: "s" * n)),
        "cost": st.one_of(JSON, st.sampled_from([10**30, -1, 1e308])),
        "model": JSON,
        "extra": JSON,
    },
)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(shapes=st.lists(STORED_SHAPES, min_size=1, max_size=5))
@example(shapes=[{"tokens": {"input": 1, "x": _nest(1, 300)}}])  # the 600-byte frame
@example(shapes=[{"protocol_version": "1" * 1_000_000}])
def test_registry_stored_values_deep_large_or_odd_never_lock_anyone_out(roster, shapes):
    """Deep nesting, large fields and extra keys in register/heartbeat: refused (-32602) or stored bounded; a new
    dashboard still gets init and a bridge still registers (one 600-byte frame locked everyone out before)."""
    hv, dash, before = roster
    writer, run = Ws(hv), uuid.uuid4().hex[:8]  # the hypivisor lives across examples: ids are new each time
    try:
        frames = []
        for k, shape in enumerate(shapes):
            nid = f"stored-{run}-{k}"
            frames.append(
                json.dumps({"id": f"r{k}", "method": "register", "params": {**node_params(nid, 9300 + k), **shape}})
            )
            hb = {key: v for key, v in shape.items() if key in {"tokens", "cost", "session_name", "model"}}
            frames.append(json.dumps({"id": f"h{k}", "method": "heartbeat", "params": {"id": nid, **hb}}))
        for reply in writer.roundtrip(frames, timeout=30)[:-1]:
            assert "result" in reply or reply["error"]["code"] in {-32700, -32602, 1006}, (
                reply
            )  # -32700: an integer orjson cannot hold
        fresh = Ws(hv)
        try:
            init = json.loads(fresh.ws.recv(timeout=10))
            assert init["event"] == "init" and len(json.dumps(init)) < 200_000
            assert all(
                set(n["tokens"]) <= {"input", "output", "cache_read", "cache_write", "total"} for n in init["nodes"]
            )
            listed = fresh.roundtrip(
                [
                    json.dumps(
                        {"id": "reg", "method": "register", "params": node_params(f"late-{uuid.uuid4().hex[:8]}", 9400)}
                    )
                ]
            )
            assert listed[0]["result"]["status"] == "registered" and "result" in listed[-1]
        finally:
            fresh.close()
    finally:
        writer.close()
    assert hv.proc.poll() is None


def test_registry_many_nodes_on_one_connection_stop_at_the_cap(hypivisor_factory):
    """1,000 nodes on one connection (room for a per-machine service), the 1,001st is a clear 1008; frames from
    that connection stay cheap (one time per connection, not per node) and the others keep being answered."""
    from hypivisor.registry import MAX_NODES_PER_CONNECTION

    hv = hypivisor_factory(args=["--rate-limit", "0"])
    owner = Ws(hv)
    try:
        frames = [
            json.dumps({"id": i, "method": "register", "params": node_params(f"many-{i}", 1 + i)})
            for i in range(MAX_NODES_PER_CONNECTION + 1)
        ]
        replies = {r["id"]: r for r in owner.roundtrip(frames, timeout=60)[:-1]}
        assert all("result" in replies[i] for i in range(MAX_NODES_PER_CONNECTION))
        over = replies[MAX_NODES_PER_CONNECTION]["error"]
        assert over["code"] == 1008 and f"at most {MAX_NODES_PER_CONNECTION}" in over["message"]
        started = time.monotonic()
        for _ in range(5):  # bounded: 5 x 200 heartbeats of one node
            owner.roundtrip([json.dumps({"id": f"hb{k}", "method": "heartbeat", "params": {"id": "many-0"}})
                             for k in range(200)])  # fmt: skip
        assert time.monotonic() - started < 20
        other = Ws(hv)
        try:
            assert other.roundtrip(
                [json.dumps({"id": "x", "method": "register", "params": node_params("other", 50_000)})]
            )[0]["result"]
        finally:
            other.close()
    finally:
        owner.close()
