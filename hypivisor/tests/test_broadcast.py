"""The outbox without sockets: frames are built once, written whole and in order, batched per loop
iteration; only a peer whose transport stays paused with a full queue is disconnected."""

from __future__ import annotations

import asyncio
import struct

import orjson

from hypivisor.broadcast import Hub, Outbox, encode, text_frame
from pi_socket import __version__
from pi_socket.protocol import PROTOCOL_VERSION, HeartbeatParams, InitEvent, NodeInfo, NodeJoinedEvent


def parse(buf: bytearray) -> list[tuple[int, bytes]]:
    """Unmasked server frames in ``buf`` as (opcode, payload); consumes them."""
    out = []
    while buf:
        assert buf[0] & 0x80 and not buf[1] & 0x80  # FIN, unmasked
        n, head = buf[1] & 0x7F, 2
        if n == 126:
            n, head = struct.unpack_from("!H", buf, 2)[0], 4
        elif n == 127:
            n, head = struct.unpack_from("!Q", buf, 2)[0], 10
        out.append((buf[0] & 0x0F, bytes(buf[head : head + n])))
        del buf[: head + n]
    return out


class FakeProtocol:
    def __init__(self) -> None:
        self.writing_paused = False
        self._waiter: asyncio.Future | None = None

    async def _drain_helper(self) -> None:
        if self.writing_paused:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def resume(self) -> None:
        self.writing_paused = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.protocol = FakeProtocol()
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def get_protocol(self) -> FakeProtocol:
        return self.protocol

    def frames(self) -> list[bytes]:
        buf = bytearray(b"".join(self.writes))
        return [payload for _, payload in parse(buf)]


class FakeWs:
    def __init__(self) -> None:
        self.closed = False
        self.close_code: int | None = None

    async def close(self, code: int, message: bytes) -> None:
        self.closed = True
        self.close_code = code


def test_text_frame_lengths_round_trip():
    for n in (0, 1, 125, 126, 65535, 65536, 70000):
        payload = b"x" * n
        buf = bytearray(text_frame(payload))
        assert parse(buf) == [(1, payload)] and not buf


async def test_frames_queued_in_one_iteration_go_out_in_one_write_in_order():
    hub = Hub()
    t = FakeTransport()
    box = hub.outbox(FakeWs(), t, limit=100)
    hub.dashboards.add(box)
    box.reply(b'{"id":1}')
    for i in range(10):
        hub.publish([NodeJoinedEvent(node=NodeInfo(id=f"n{i}", machine="m", cwd="/", port=1000 + i))])
    assert t.writes == []  # nothing written synchronously
    await asyncio.sleep(0)
    assert len(t.writes) == 1
    frames = t.frames()
    assert frames[0] == b'{"id":1}' and [f.split(b'"id":"')[1][:2] for f in frames[1:]] == [
        f"n{i}".encode() for i in range(10)
    ]


async def test_many_outboxes_share_one_flush_callback():
    hub = Hub()
    boxes = [hub.outbox(FakeWs(), FakeTransport(), limit=10) for _ in range(5)]
    hub.dashboards.update(boxes)
    hub.publish([NodeJoinedEvent(node=NodeInfo(id="a", machine="m", cwd="/", port=1))])
    hub.publish([NodeJoinedEvent(node=NodeInfo(id="b", machine="m", cwd="/", port=2))])
    await asyncio.sleep(0)
    assert all(len(b.transport.writes) == 1 and len(b.transport.frames()) == 2 for b in boxes)


async def test_an_unflushed_burst_above_the_limit_is_written_not_kicked():
    t = FakeTransport()
    box = Outbox(FakeWs(), t, limit=8)
    for i in range(50):  # more events in one iteration than the queue holds, transport not paused
        assert box.send(b"%d" % i)
    await asyncio.sleep(0)
    assert not box.closed and t.frames() == [b"%d" % i for i in range(50)]


async def test_a_paused_transport_queues_then_drains_in_order():
    t = FakeTransport()
    ws = FakeWs()
    box = Outbox(ws, t, limit=8)
    box.send(b"first")
    t.protocol.writing_paused = True  # the write of "first" filled the transport buffer
    await asyncio.sleep(0)
    for i in range(5):
        assert box.send(b"%d" % i)
    await asyncio.sleep(0.01)
    assert t.frames() == [b"first"]  # held back while paused
    t.protocol.resume()
    await asyncio.sleep(0.01)
    assert t.frames() == [b"first"] + [b"%d" % i for i in range(5)] and not box.closed


async def test_a_peer_paused_with_a_full_queue_is_closed_with_1008():
    t = FakeTransport()
    ws = FakeWs()
    box = Outbox(ws, t, limit=4)
    box.send(b"first")
    t.protocol.writing_paused = True
    await asyncio.sleep(0)
    results = [box.send(b"%d" % i) for i in range(5)]
    assert results == [True] * 4 + [False]
    await asyncio.sleep(0.01)
    assert box.closed and ws.close_code == 1008 and t.aborted


async def test_a_client_reading_a_large_snapshot_may_fall_behind_by_as_much_again_then_the_limit_is_back():
    t = FakeTransport()
    ws = FakeWs()
    box = Outbox(ws, t, limit=4)
    box.send_snapshot([text_frame(b"n%d" % i) for i in range(10)])  # a roster of 10 frames
    t.protocol.writing_paused = True  # writing the snapshot fills the transport buffer: the client reads it slowly
    await asyncio.sleep(0)
    results = [box.send(b"e%d" % i) for i in range(20)]  # the roster changes meanwhile
    assert results == [True] * 20 and not box.closed  # up to twice the snapshot, not 4
    t.protocol.resume()
    await asyncio.sleep(0.01)
    assert len(t.frames()) == 30 and box.limit == 4  # all delivered in order; caught up: the limit is back
    box.send(b"next")
    t.protocol.writing_paused = True
    await asyncio.sleep(0)
    assert [box.send(b"x%d" % i) for i in range(5)] == [True] * 4 + [False]  # a slow client is still dropped


async def test_replies_never_kick_but_clear_room():
    t = FakeTransport()
    box = Outbox(FakeWs(), t, limit=2)
    box.send(b"first")
    t.protocol.writing_paused = True
    await asyncio.sleep(0)
    for i in range(5):
        assert box.reply(b"%d" % i)
    assert not box.closed and not box.room.is_set() and not box.has_room()
    t.protocol.resume()
    await asyncio.sleep(0.01)
    assert box.room.is_set() and len(t.frames()) == 6


async def test_nothing_is_written_once_the_socket_closes():
    t = FakeTransport()
    ws = FakeWs()
    box = Outbox(ws, t, limit=4)
    box.send(b"a")
    ws.closed = True  # aiohttp started its close handshake
    await asyncio.sleep(0)
    assert t.writes == []


# -- the roster snapshot shared by init and list_nodes ----------------------------------------------


def _service(tmp_path):
    from hypivisor.config import Config
    from hypivisor.service import Service

    return Service(Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none"), env={"HOME": str(tmp_path)})


def _init_payload(framed: bytes) -> dict:
    return orjson.loads(parse(bytearray(framed))[0][1])


async def test_init_and_list_nodes_follow_every_roster_event(tmp_path):
    svc = _service(tmp_path)
    init = _init_payload(svc.init_frames()[0])
    assert init["event"] == "init" and init["nodes"] == [] and init["protocol_version"] == PROTOCOL_VERSION
    assert init["hypivisor_version"] == __version__
    await svc.dispatch("register", {"id": "a", "machine": "m", "cwd": "/", "port": 1}, "c1", "127.0.0.1")
    assert [n["id"] for n in _init_payload(svc.init_frames()[0])["nodes"]] == ["a"]
    await svc.dispatch("heartbeat", {"id": "a", "session_name": "s1"}, "c1", "127.0.0.1")
    nodes = orjson.loads(orjson.dumps(await svc.dispatch("list_nodes", {}, "c2", "127.0.0.1")))["nodes"]
    assert [(n["id"], n["session_name"]) for n in nodes] == [("a", "s1")]
    svc.publish(svc.registry.connection_closed("c1", 5.0))
    assert _init_payload(svc.init_frames()[0])["nodes"][0]["status"] == "offline"


async def test_init_matches_the_init_event_model(tmp_path):
    svc = _service(tmp_path)
    for i in range(3):
        await svc.dispatch("register", {"id": f"n{i}", "machine": "m", "cwd": "/", "port": 10 + i}, f"c{i}", "h")
    model = InitEvent(nodes=svc.registry.nodes(), hypivisor_version=__version__, total=3).model_dump(
        mode="json",
        exclude={"peers"},  # absent without --peer (tests/test_peers.py)
    )
    assert _init_payload(svc.init_frames()[0]) == model


async def test_a_snapshot_rebuilt_after_one_change_serialises_only_that_node(tmp_path):
    """A reconnect storm while events flow rebuilds the snapshot after every change: the nodes no event named keep
    their JSON (the same bytes object), the changed one is serialised again, and a node whose ``last_seen`` moved by
    more than the snapshot's staleness (``SNAPSHOT_MAX_AGE``) is serialised again with the new value."""
    from hypivisor.service import SNAPSHOT_MAX_AGE

    svc = _service(tmp_path)
    for i in range(3):
        await svc.dispatch("register", {"id": f"n{i}", "machine": "m", "cwd": "/", "port": 10 + i}, f"c{i}", "h")
    first = svc._roster().nodes
    await svc.dispatch("heartbeat", {"id": "n1", "session_name": "renamed"}, "c1", "h")
    second = svc._roster().nodes
    assert second[0] is first[0] and second[2] is first[2]
    assert second[1] is not first[1] and orjson.loads(second[1])["session_name"] == "renamed"
    # a quiet heartbeat (no field changed: no event) moves only last_seen; past the staleness it is serialised again
    entry = svc.registry.get("n2")
    svc.registry.heartbeat(HeartbeatParams(id="n2"), "c2", (entry.node.last_seen or 0) + SNAPSHOT_MAX_AGE + 5)
    svc.publish(svc.registry.set_unread("n0", 3))  # any event: the cached snapshot is dropped
    third = svc._roster().nodes
    assert orjson.loads(third[0])["unread"] == 3
    assert orjson.loads(third[2])["last_seen"] == entry.node.last_seen
    assert third[1] is second[1]


class _Recorder:
    """A dashboard's outbox reduced to what ``Hub.fan_out`` calls: the frames it was sent."""

    def __init__(self, chunks: bool = False) -> None:
        self.frames: list[bytes] = []
        self.chunks = chunks  # it asked for the roster in chunks (/ws?roster=chunks)

    def send_framed(self, framed: bytes) -> bool:
        self.frames.append(framed)
        return True


def _apply(view: dict[str, dict], frames: list[bytes]) -> dict[str, dict]:
    """What every client does with the frames of ``/ws``: ``init`` replaces, node events upsert or remove."""
    for framed in frames:
        for _, payload in parse(bytearray(framed)):
            msg = orjson.loads(payload)
            kind = msg["event"]
            if kind == "init":
                view = {n["id"]: n for n in msg["nodes"]}
            elif kind in ("node_joined", "node_updated"):
                view[msg["node"]["id"]] = msg["node"]
            elif kind == "nodes_joined":
                view.update((n["id"], n) for n in msg["nodes"])
            elif kind == "node_offline" and msg["id"] in view:
                view[msg["id"]] = {**view[msg["id"]], "status": "offline"}
            elif kind == "node_removed":
                view.pop(msg["id"], None)
    return view


def _shown(view: dict[str, dict]) -> dict[str, tuple]:
    return {k: (v["status"], v.get("session_name"), v.get("unread")) for k, v in view.items()}


async def test_dashboards_joining_while_a_large_roster_changes_share_one_snapshot_and_see_the_roster(
    tmp_path, monkeypatch
):
    """A roster past one ``init`` chunk is serialised once for the dashboards that connect while it changes (a
    reconnect storm): each gets that snapshot and the roster frames fanned out since, and every one of them ends
    with exactly the registry's roster (``list_nodes``, always built fresh), whenever it connected."""
    import random

    from hypivisor import service as service_mod
    from hypivisor.service import RpcFailure

    monkeypatch.setattr(service_mod, "INIT_CHUNK_BYTES", 600)  # a few nodes per init: the roster is "large"
    svc = _service(tmp_path)
    secrets: dict[str, str] = {}

    async def register(i: int) -> None:
        params = {"id": f"n{i}", "machine": "m", "cwd": "/", "port": 10 + i}
        if f"n{i}" in secrets:
            params["node_secret"] = secrets[f"n{i}"]
        answer = await svc.dispatch("register", params, f"c{i}", "h")
        secrets.setdefault(f"n{i}", answer.get("node_secret"))

    for i in range(40):
        await register(i)
    rng = random.Random(7)
    dashboards: list[tuple[_Recorder, list[bytes]]] = []
    built = set()
    for step in range(120):
        if step % 4 == 0:  # a dashboard connects: snapshot and subscription with no await between
            chunks = step % 8 == 0  # every other dashboard asked for the roster in chunks (/ws?roster=chunks)
            box = _Recorder(chunks)
            first = svc.init_frames(chunks)
            dashboards.append((box, first))
            svc.hub.dashboards.add(box)
            built.add(id(svc._snapshot))
            # the init sequence's nodes, and its total, are the roster's of that moment (only fields may be older)
            now = {node.id for node in svc.registry.nodes()}
            assert _init_payload(first[0])["total"] == len(now) and set(_apply({}, first)) == now
            kinds = [orjson.loads(p)["event"] for p in _payloads(first[0])]
            assert kinds[0] == "init" and set(kinds[1:]) == {"nodes_joined" if chunks else "node_joined"}
        i = rng.randrange(50)
        conn, node = f"c{i}", f"n{i}"
        what = rng.random()
        if what < 0.5 and svc.registry.get(node) is not None:
            try:  # refused once the node went offline (its connection closed)
                await svc.dispatch("heartbeat", {"id": node, "session_name": f"s{step}"}, conn, "h")
            except RpcFailure:
                pass
        elif what < 0.7:
            await register(i)
        elif what < 0.85:
            svc.publish(svc.registry.connection_closed(conn, 1.0))
        elif svc.registry.get(node) is not None:
            svc.publish(svc.registry.set_unread(node, step))
    listed = orjson.loads(orjson.dumps(await svc.dispatch("list_nodes", {}, "d", "h")))["nodes"]
    want = _shown({n["id"]: n for n in listed})
    assert len(want) >= 40
    for box, first in dashboards:
        assert _shown(_apply({}, first + box.frames)) == want
    assert len(built) < len(dashboards) / 3  # shared: most dashboards got a snapshot built before them


def _payloads(framed: bytes) -> list[bytes]:
    return [payload for _, payload in parse(bytearray(framed))]


async def test_a_client_that_asks_for_chunks_gets_the_same_roster_in_frames_of_up_to_one_chunk(tmp_path, monkeypatch):
    from hypivisor import service as service_mod

    monkeypatch.setattr(service_mod, "INIT_CHUNK_BYTES", 3000)
    svc = _service(tmp_path)
    for i in range(60):  # ids of different lengths: chunks of different node counts
        await svc.dispatch("register", {"id": "n" * (1 + i % 40) + str(i), "machine": "m", "cwd": "/", "port": 10 + i},
                           f"c{i}", "h")  # fmt: skip
    plain, chunked = svc.init_frames(), svc.init_frames(chunks=True)
    assert _apply({}, chunked) == _apply({}, plain) and len(_apply({}, plain)) == 60
    frames = [orjson.loads(p) for p in _payloads(chunked[0])]
    assert frames[0] == orjson.loads(_payloads(plain[0])[0])  # the same init frame
    assert len(frames) < len(_payloads(plain[0])) / 3
    order = [n["id"] for f in frames for n in f["nodes"]]
    assert order == [orjson.loads(raw)["id"] for raw in svc._roster().nodes]  # in the roster's order
    for f in frames[1:]:
        assert f["event"] == "nodes_joined" and f["nodes"]
        assert len(orjson.dumps(f["nodes"])) <= 3000 + 2  # the chunk bound, as for init's nodes
    assert svc.init_sequence(chunks=True)[1] == svc.init_sequence()[1]  # the queue allowance is the roster's
    assert svc.init_frames(chunks=True)[0] is chunked[0]  # built once per snapshot
    monkeypatch.setattr(service_mod, "INIT_CHUNK_BYTES", 1024 * 1024)
    svc._snapshot = None
    assert svc.init_frames(chunks=True) == svc.init_frames() and len(_payloads(svc.init_frames()[0])) == 1


async def test_a_shared_snapshot_is_rebuilt_once_its_replay_passes_half_the_roster_or_it_ages(tmp_path, monkeypatch):
    from hypivisor import service as service_mod

    monkeypatch.setattr(service_mod, "INIT_CHUNK_BYTES", 600)
    svc = _service(tmp_path)
    for i in range(10):
        await svc.dispatch("register", {"id": f"n{i}", "machine": "m", "cwd": "/", "port": 10 + i}, f"c{i}", "h")
    first = svc.init_frames()
    assert len(first) == 1 and len(parse(bytearray(first[0]))) > 1  # chunked: init, then node_joined frames
    for i in range(5):  # half the roster changes: replayed after the same snapshot
        await svc.dispatch("heartbeat", {"id": f"n{i}", "session_name": f"x{i}"}, f"c{i}", "h")
    again = svc.init_frames()
    assert again[0] is first[0] and len(again) == 6
    assert svc.init_sequence()[1] == len(parse(bytearray(b"".join(again))))  # the frame count send_snapshot uses
    await svc.dispatch("heartbeat", {"id": "n5", "session_name": "x5"}, "c5", "h")  # one more: past the bound
    rebuilt = svc.init_frames()
    assert rebuilt[0] is not first[0] and len(rebuilt) == 1
    assert _shown(_apply({}, rebuilt))["n5"][1] == "x5"
    await svc.dispatch("heartbeat", {"id": "n6", "session_name": "x6"}, "c6", "h")
    assert len(svc.init_frames()) == 2
    svc._snapshot.built_at -= service_mod.SNAPSHOT_MAX_AGE + 1  # an old snapshot is rebuilt (last_seen moves)
    aged = svc.init_frames()
    assert len(aged) == 1 and aged[0] is not rebuilt[0] and _shown(_apply({}, aged))["n6"][1] == "x6"
    # a node joining or leaving changes the roster's membership (and init.total): the next init is built anew
    await svc.dispatch("register", {"id": "new", "machine": "m", "cwd": "/", "port": 99}, "c99", "h")
    joined = svc.init_frames()
    assert len(joined) == 1 and joined[0] is not aged[0] and _init_payload(joined[0])["total"] == 11
    await svc.dispatch("deregister", {"id": "n0"}, "c0", "h")
    left = svc.init_frames()
    assert len(left) == 1 and _init_payload(left[0])["total"] == 10 and "n0" not in _apply({}, left)


async def test_a_small_roster_init_frame_alone_is_the_roster_after_each_change(tmp_path):
    """Below one chunk nothing is replayed: the ``init`` frame a dashboard gets holds every change so far."""
    svc = _service(tmp_path)
    await svc.dispatch("register", {"id": "a", "machine": "m", "cwd": "/", "port": 1}, "c1", "h")
    box = _Recorder()
    svc.hub.dashboards.add(box)
    assert len(svc.init_frames()) == 1
    await svc.dispatch("register", {"id": "b", "machine": "m", "cwd": "/", "port": 2}, "c2", "h")
    frames = svc.init_frames()
    assert len(frames) == 1 and len(parse(bytearray(frames[0]))) == 1
    assert sorted(_apply({}, frames)) == ["a", "b"] and svc.hub.roster_log is None


def test_a_run_of_upserts_reaches_a_chunks_dashboard_as_nodes_joined_frames_in_order(monkeypatch):
    """One fan-out: a dashboard of ``/ws?roster=chunks`` gets each run of two or more ``node_joined``/``node_updated``
    as ``nodes_joined`` frames (within ``CHUNK_BYTES``), everything else as it is and in order; a dashboard that did
    not ask gets one frame per event; both end with the same roster."""
    from hypivisor import broadcast as broadcast_mod
    from pi_socket.protocol import NodeOfflineEvent, NodeRemovedEvent, NodeUpdatedEvent

    def node(i: int, **extra) -> NodeInfo:
        return NodeInfo(id=f"n{i}", machine="m", cwd="/", port=1000 + i, **extra)

    hub = Hub()
    plain, chunked = _Recorder(), _Recorder(chunks=True)
    hub.dashboards.update((plain, chunked))
    events = [
        NodeJoinedEvent(node=node(1)),
        NodeUpdatedEvent(node=node(2, session_name="two")),
        NodeOfflineEvent(id="n1"),
        NodeJoinedEvent(node=node(3)),  # alone between two other events: as it is
        NodeRemovedEvent(id="n2", reason="ttl"),
        NodeUpdatedEvent(node=node(1, session_name="back")),
        NodeJoinedEvent(node=node(4)),
        NodeJoinedEvent(node=node(5)),
        NodeJoinedEvent(node=node(6), note="an extra field"),  # not only a node: as it is, ends the run
    ]
    hub.publish(events)
    assert [p for f in plain.frames for p in _payloads(f)] == [encode(e) for e in events]  # the bytes encode makes
    payloads = [orjson.loads(p) for f in chunked.frames for p in _payloads(f)]
    assert [(p["event"], [n["id"] for n in p["nodes"]] if "nodes" in p else p.get("id") or p["node"]["id"])
            for p in payloads] == [
        ("nodes_joined", ["n1", "n2"]), ("node_offline", "n1"), ("node_joined", "n3"), ("node_removed", "n2"),
        ("nodes_joined", ["n1", "n4", "n5"]), ("node_joined", "n6"),
    ]  # fmt: skip
    assert payloads[0]["nodes"][1] == orjson.loads(orjson.dumps(node(2, session_name="two").model_dump(mode="json")))
    assert _apply({}, plain.frames) == _apply({}, chunked.frames)
    # a run past CHUNK_BYTES is cut into frames within it (at least one node each), the nodes in order
    monkeypatch.setattr(broadcast_mod, "CHUNK_BYTES", 1200)
    plain.frames.clear()
    chunked.frames.clear()
    hub.publish([NodeJoinedEvent(node=node(10 + i)) for i in range(12)])
    sizes = [len(p) for f in chunked.frames for p in _payloads(f)]
    assert len(sizes) > 2 and all(s <= 1200 + 100 for s in sizes)
    ids = [n["id"] for f in chunked.frames for p in _payloads(f) for n in orjson.loads(p)["nodes"]]
    assert ids == [f"n{10 + i}" for i in range(12)] and _apply({}, plain.frames) == _apply({}, chunked.frames)
    # a lone upsert is one node_joined frame for both
    chunked.frames.clear()
    hub.publish([NodeUpdatedEvent(node=node(7))])
    assert [orjson.loads(p)["event"] for f in chunked.frames for p in _payloads(f)] == ["node_updated"]
