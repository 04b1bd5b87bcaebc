"""bench/cluster_sim.py run small: deterministic for a seed, and its figures keep their invariants (fan-out
matches interest, sites add up to the total, the lease design writes less than per-agent heartbeats)."""

from __future__ import annotations

import orjson
import pytest

from bench.cluster_sim import Params, build, main, simulate

SMALL = Params(seed=7, agents=3_000, sites=3, hypivisors=2, dashboards=15, duration=120.0, max_watch=4)


def test_the_same_seed_gives_the_same_figures() -> None:
    assert simulate(SMALL) == simulate(SMALL)
    assert simulate(SMALL) != simulate(Params(**{**SMALL.__dict__, "seed": 8}))


def test_fan_out_matches_interest() -> None:
    world = build(SMALL)
    result = simulate(SMALL)
    checks = result["checks"]
    assert checks["delta_deliveries_to_dashboards"] == checks["delta_deliveries_by_interest"] > 0
    assert checks["delta_copies_into_hypivisors"] == checks["delta_copies_by_interest"]
    # one copy per interested hypivisor: never more than the dashboards' deliveries
    assert checks["delta_copies_into_hypivisors"] <= checks["delta_deliveries_to_dashboards"]
    assert checks["pushes_sent"] == checks["attention_items"]
    # a dashboard watching nothing gets no deltas; the busiest one gets exactly its agents' deltas
    t = SMALL.duration
    per_dash = [sum(world.agents[i].deltas for i in d.watched) / t for d in world.dashboards]
    assert result["total"]["delta_msgs_s_per_dashboard_max"] == pytest.approx(max(per_dash))
    assert all(v == 0 for d, v in zip(world.dashboards, per_dash, strict=True) if not d.watched)


def test_sites_add_up_and_the_lease_writes_less() -> None:
    result = simulate(SMALL)
    sites, total = result["sites"], result["total"]
    assert sum(s["agents"] for s in sites) == total["agents"] == SMALL.agents
    assert sum(s["pushes_s"] for s in sites) == pytest.approx(total["pushes_s"])
    assert sum(s["roster_events_s_per_dashboard_site_scope"] for s in sites) == pytest.approx(
        total["roster_events_s_per_dashboard_all_sites"]
    )
    assert sum(s["hv_memory_site_scope_serialised_mb"] for s in sites) == pytest.approx(
        total["hv_memory_all_sites_serialised_mb"]
    )
    for s in sites:
        assert s["kv_puts_s_lease"] < s["kv_puts_s_per_agent_heartbeat"]
    # per-agent heartbeats alone: agents / heartbeat interval
    assert total["kv_puts_s_per_agent_heartbeat"] > SMALL.agents / SMALL.heartbeat
    assert 300 < total["record_bytes_mean"] < 2000  # the real NodeInfo shape, not a stub
    assert total["python_bytes_per_serialised_byte"] > 1


def test_the_script_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--agents", "500", "--sites", "2", "--duration", "30", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["total"]["agents"] == 500
    assert main(["--agents", "500", "--sites", "2", "--duration", "30"]) == 0
    assert "| **all** | 500 |" in capsys.readouterr().out
