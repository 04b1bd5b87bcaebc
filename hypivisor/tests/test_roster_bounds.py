"""The roster stays serialisable and bounded whatever a registry client sends (security issue #16, items 2-4, 8).

Every value the hypivisor stores and re-sends to everyone is bounded at validation time (depth, length, key
count, finite numbers); a node that still cannot be serialised is left out of ``init`` and ``list_nodes``
instead of taking them down for everyone; ``list_nodes`` pages stay under a byte budget.
"""

from __future__ import annotations

import math
import types
import typing

import orjson
import pytest
from pydantic import BaseModel

from hypivisor import service as service_mod
from hypivisor.broadcast import Hub
from hypivisor.config import Config
from hypivisor.registry import Entry, Registry, RegistryError
from hypivisor.service import RpcFailure, Service
from hypivisor.tests.test_broadcast import _init_payload
from pi_socket import protocol as p

STORED = (
    p.NodeInfo,
    p.TokenTotals,
    p.RegisterParams,
    p.HeartbeatParams,
    p.AttentionReport,
    p.AttentionLive,
    p.AttentionRun,
    p.AttentionItem,
    p.SpendCounter,
    p.ApprovalEnded,
)


def _service(tmp_path) -> Service:
    return Service(Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none"), env={"HOME": str(tmp_path)})


def _deep(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = {"x": value}
    return value


def _reg(i: int, **kw) -> dict:
    return {"id": f"n{i}", "machine": "m", "cwd": "/", "port": 1 + i, **kw}


# ------------------------------------------------------------------ models: every stored field bounded
def _leaves(annotation, metadata: list) -> list[tuple[object, list]]:
    """(type, constraints) for every alternative of a field's type, Annotated constraints included."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extra = typing.get_args(annotation)
        found = [c for m in extra for c in (getattr(m, "metadata", None) or [m])]
        return _leaves(inner, metadata + found)
    if origin is typing.Literal:
        return [(typing.Literal, metadata)]
    if origin in (typing.Union, types.UnionType):
        return [leaf for a in typing.get_args(annotation) for leaf in _leaves(a, metadata)]
    if origin is list:  # a bounded list of bounded items
        assert any(type(c).__name__ == "MaxLen" for c in metadata), f"a list without max_length: {annotation}"
        (inner,) = typing.get_args(annotation)
        return _leaves(inner, [])
    return [(annotation, metadata)]


@pytest.mark.parametrize("model", STORED, ids=lambda m: m.__name__)
def test_every_stored_field_is_bounded_and_no_stored_model_keeps_extra_keys(model: type[BaseModel]):
    assert model.model_config.get("extra") in ("ignore", "forbid"), f"{model.__name__} would store unknown keys"
    for name, field in model.model_fields.items():
        for leaf, constraints in _leaves(field.annotation, list(field.metadata)):
            kinds = {type(c).__name__ for c in constraints}
            where = f"{model.__name__}.{name}"
            if leaf is str:
                assert "MaxLen" in kinds, f"{where}: a str without max_length"
            elif leaf in (int, float):
                assert kinds & {"Le", "Lt"}, f"{where}: a number without an upper bound"
                if leaf is float:
                    assert any(getattr(c, "allow_inf_nan", True) is False for c in constraints), (
                        f"{where}: a float that may be inf or nan (not JSON)"
                    )
            elif isinstance(leaf, type) and issubclass(leaf, BaseModel):
                assert leaf in STORED, f"{where}: nested model {leaf.__name__} is not checked here"
            else:
                assert leaf in (bool, type(None), typing.Literal), f"{where}: open type {leaf!r} would be stored"


def test_tokens_drop_unknown_keys_however_deep_and_numbers_are_finite_and_bounded():
    params = p.RegisterParams.model_validate(_reg(0, tokens={"input": 3, "extra": _deep(300)}))
    assert params.tokens is not None and params.tokens.model_dump() == {**p.TokenTotals().model_dump(), "input": 3}
    orjson.dumps(p.NodeInfo(**params.model_dump(include={"id", "machine", "cwd", "port", "tokens"})).model_dump())
    for bad in (
        {"tokens": {"total": 10**30}},
        {"tokens": {"input": -1}},
        {"cost": math.inf},
        {"cost": math.nan},
        {"cost": -1},
        {"started_at": math.inf},
        {"protocol_version": "1" * 33},
        {"pi_version": "v" * 33},
        {"session_name": "s" * 201},
        {"model": "m" * 201},
        {"cwd": "/" * 4097},
        {"tokens": []},
    ):
        with pytest.raises(ValueError):
            p.RegisterParams.model_validate(_reg(0, **bad))
    with pytest.raises(ValueError):
        p.HeartbeatParams.model_validate({"id": "a", "cost": math.inf})
    # a newer peer's unknown top-level params are dropped too (version skew): never stored, never re-sent
    newer = p.RegisterParams.model_validate(_reg(0, prot_version="1", wormhole=_deep(300)))
    assert "wormhole" not in newer.model_dump() and "prot_version" not in newer.model_dump()


# ------------------------------------------------------------------ one bad node never takes the roster down
def _force_unserialisable(svc: Service, node_id: str) -> None:
    """A node that cannot be serialised, put straight into the registry (validation no longer lets one in)."""
    bad = p.NodeInfo.model_construct(id=node_id, machine="m", cwd="/", port=65000, status="active", activity="idle",
                                     tokens=_deep(300), cost=0.0, protocol_version="1")  # fmt: skip
    svc.registry._entries[node_id] = Entry(node=bad, owner=None, host="127.0.0.1", secret=b"")


async def test_an_unserialisable_node_is_left_out_and_logged_once(tmp_path, monkeypatch):
    svc = _service(tmp_path)
    await svc.dispatch("register", _reg(1), "c1", "127.0.0.1")
    _force_unserialisable(svc, "bad")
    await svc.dispatch("register", _reg(2), "c2", "127.0.0.1")  # register works, and drops the cached roster
    logged: list[dict] = []
    monkeypatch.setattr(service_mod.log, "error", lambda event, **kw: logged.append(kw))
    for _ in range(3):
        svc._snapshot = None
        init = _init_payload(svc.init_frames()[0])
        assert [n["id"] for n in init["nodes"]] == ["n1", "n2"] and init["total"] == 2
        listed = orjson.loads(orjson.dumps(await svc.dispatch("list_nodes", None, "c3", "h")))["nodes"]
        assert [n["id"] for n in listed] == ["n1", "n2"]
    assert [entry["node_id"] for entry in logged] == ["bad"]
    await svc.dispatch("register", _reg(3), "c3", "127.0.0.1")  # new agents still register
    assert _init_payload(svc.init_frames()[0])["total"] == 3


# ------------------------------------------------------------------ list_nodes pages within a byte budget
async def test_list_nodes_pages_never_pass_the_byte_budget_and_cover_the_roster_once(tmp_path, monkeypatch):
    monkeypatch.setattr(service_mod, "LIST_PAGE_BYTES", 2000)
    svc = _service(tmp_path)
    for i in range(40):
        await svc.dispatch("register", _reg(i, cwd="/" + "c" * 200), f"c{i}", "127.0.0.1")
    for params in (None, {"cursor": 0}, {"cursor": 0, "limit": 10_000}):
        seen: list[str] = []
        cursor: int | None = 0
        while cursor is not None:
            svc._snapshot = None
            page = orjson.loads(orjson.dumps(await svc.dispatch("list_nodes", {**(params or {}), "cursor": cursor},
                                                                "d", "h")))  # fmt: skip
            assert len(orjson.dumps(page["nodes"])) <= 2000 + 500 and page["nodes"]
            seen += [n["id"] for n in page["nodes"]]
            cursor = page["next_cursor"]
        assert seen == [f"n{i}" for i in range(40)]
    first = orjson.loads(orjson.dumps(await svc.dispatch("list_nodes", None, "d", "h")))
    assert first["next_cursor"] is not None and 0 < len(first["nodes"]) < 40  # no params: the first page
    page = orjson.loads(orjson.dumps(await svc.dispatch("list_nodes", {"cursor": 10, "limit": 3}, "d", "h")))
    assert [n["id"] for n in page["nodes"]] == ["n10", "n11", "n12"] and page["next_cursor"] == 13
    end = orjson.loads(orjson.dumps(await svc.dispatch("list_nodes", {"cursor": 99}, "d", "h")))
    assert end == {"nodes": [], "next_cursor": None}


async def test_a_small_roster_is_one_page_as_before(tmp_path):
    svc = _service(tmp_path)
    for i in range(3):
        await svc.dispatch("register", _reg(i), f"c{i}", "127.0.0.1")
    res = orjson.loads(orjson.dumps(await svc.dispatch("list_nodes", None, "d", "h")))
    assert [n["id"] for n in res["nodes"]] == ["n0", "n1", "n2"] and res["next_cursor"] is None


# ------------------------------------------------------------------ nodes per connection
async def test_the_per_connection_cap_is_a_clear_1008_and_other_connections_still_register(tmp_path):
    svc = _service(tmp_path)
    svc.registry = Registry(svc.registry.ttl, max_per_connection=5)
    for i in range(5):
        await svc.dispatch("register", _reg(i), "one", "127.0.0.1")
    with pytest.raises(RpcFailure) as e:
        await svc.dispatch("register", _reg(5), "one", "127.0.0.1")
    assert e.value.code == p.ErrorCode.RATE_LIMITED and "at most 5 nodes" in e.value.message
    await svc.dispatch("register", _reg(0, session_name="again"), "one", "127.0.0.1")  # its own ids: still fine
    await svc.dispatch("register", _reg(5), "two", "127.0.0.1")
    svc.publish(svc.registry.deregister("n0", "one", 1.0))
    await svc.dispatch("register", _reg(6), "one", "127.0.0.1")  # room again after a deregister
    assert len(svc.registry) == 6 and isinstance(svc.hub, Hub)


def test_last_seen_comes_from_the_connections_last_frame_without_walking_its_nodes():
    r = Registry(30.0, max_per_connection=1000)
    for i in range(1000):
        r.register(p.RegisterParams(**_reg(i)), "c", "h", now=0.0)
    r.touch("c", now=50.0)
    assert {n.last_seen for n in r.nodes()} == {50.0}
    assert r.sweep(now=50.0 + 3 * 30.0 - 1) == []  # the frame at 50 keeps all 1,000 alive
    r.connection_closed("c", now=60.0)
    assert {(n.status, n.last_seen) for n in r.nodes()} == {("offline", 50.0)}
    with pytest.raises(RegistryError):
        r.heartbeat(p.HeartbeatParams(id="n1"), "c", now=61.0)
