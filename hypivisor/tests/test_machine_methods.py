"""The registry's machine methods on a real Service (no sockets): who may register a machine, and routing."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypivisor.config import Config
from hypivisor.service import RpcFailure, Service


def _service(tmp_path: Path, **config) -> Service:
    cfg = Config(host="0.0.0.0", port=1, dashboard_dir=tmp_path / "none", **config)
    return Service(cfg, env={"HOME": str(tmp_path), "PI_SOCKET_MACHINE": "hub"})


async def test_without_a_token_only_this_machine_may_register_a_machine(tmp_path):
    svc = _service(tmp_path)
    with pytest.raises(RpcFailure) as err:
        await svc.dispatch("register_machine", {"name": "beta"}, "c1", "192.0.2.7")
    assert err.value.code == 1002 and "HYPI_TOKEN" in err.value.message
    assert [m.name for m in svc.machines.book.machines()] == ["hub"]
    result = await svc.dispatch("register_machine", {"name": "beta"}, "c2", "127.0.0.1")
    assert result["machine"]["online"] and result["machine_secret"]


async def test_with_a_token_or_the_remote_flag_any_peer_may(tmp_path):
    for config in ({"token": "t" * 20}, {"allow_unauthenticated_remote": True}):
        svc = _service(tmp_path, **config)
        result = await svc.dispatch("register_machine", {"name": "beta"}, "c1", "192.0.2.7")
        assert result["machine"]["name"] == "beta"


async def test_list_machines_and_the_own_machine_default(tmp_path):
    (tmp_path / "here").mkdir()
    svc = _service(tmp_path, token="t" * 20)
    machines = (await svc.dispatch("list_machines", {}, "c1", "127.0.0.1"))["machines"]
    assert [(m["name"], m["own"], m["online"]) for m in machines] == [("hub", True, True)]
    for params in ({}, {"machine": "hub"}):
        listing = await svc.dispatch("list_directories", params, "c1", "127.0.0.1")
        assert [d["name"] for d in listing["directories"]] == ["here"]
    with pytest.raises(RpcFailure) as err:
        await svc.dispatch("list_directories", {"machine": "beta"}, "c1", "127.0.0.1")
    assert err.value.code == 1012


async def test_a_reply_from_a_connection_that_registered_no_machine_is_refused(tmp_path):
    svc = _service(tmp_path, token="t" * 20)
    with pytest.raises(RpcFailure) as err:
        await svc.dispatch("machine_reply", {"rid": "m1", "result": {}}, "c1", "127.0.0.1")
    assert err.value.code == 1006
