"""A model of cluster mode at scale (specs/cluster.md): many agents across sites, their hypivisors and dashboards.

No NATS, no sockets: counts what the subjects and keys of specs/cluster.md would carry for a given population
and event mix, deterministic for a seed. Run it: ``python -m bench.cluster_sim`` (100,000 agents across 10 sites),
``--json`` for the raw figures, ``--help`` for the knobs.

The model:

* **Population**: ``agents`` spread over ``sites`` of uneven size (weights 1/sqrt(rank), shuffled); 1-16
  agents per machine; each machine's service is connected to one of the site's ``hypivisors``; each site has
  ``dashboards``, each connected to one of the site's hypivisors and watching (an agent opened) 0-3 agents,
  ``cross_site`` of them on another site.
* **Event mix** over ``duration`` seconds: every agent changes its roster record (activity, pending approvals,
  unread, tokens) on average every ``status_every`` s; a working agent (``working`` of the time on average,
  each agent its own share) streams ``delta_hz`` deltas a second; an attention item (approval, finished, error)
  arises every ``attention_every`` s per agent, half of them approvals (opened, then decided once).
* **Two liveness designs** for the roster KV: *per-agent* (each record put again every ``heartbeat`` s, so the
  TTL expires it) and *lease* (records are put only on a change; each hypivisor puts its lease
  ``HP_HV_<site>.<hv>`` every ``lease`` s and its agents are deleted by whoever sees that lease PURGE).
* **Sizes** are the real record shapes: each agent's roster record is a ``NodeInfo`` (pi_socket/protocol.py)
  with per-agent strings, plus its owner ``hv``, serialised with orjson; in-memory bytes are those of the parsed records
  (sys.getsizeof, deep).

What it reports, per site and in total: KV writes a second, watch messages into each hypivisor, events a
second into each dashboard (roster, inbox, deltas of its watched agents), pushes a second (each once), and
what each hypivisor holds in memory.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from pi_socket.protocol import AttentionItem, NodeInfo, TokenTotals

MB = 1024 * 1024


@dataclass(frozen=True)
class Params:
    seed: int = 1
    agents: int = 100_000
    sites: int = 10
    hypivisors: int = 3  # per site
    dashboards: int = 20  # per site
    duration: float = 600.0  # seconds simulated
    status_every: float = 60.0  # mean seconds between roster changes of one agent
    working: float = 0.3  # mean share of time an agent is working
    delta_hz: float = 10.0  # deltas a second while working (what an opened agent streams)
    attention_every: float = 600.0  # mean seconds between attention items of one agent
    attention_open_s: float = 300.0  # mean time an item stays open (decided, read)
    heartbeat: float = 15.0  # per-agent design: put interval (TTL 45 s)
    lease: float = 5.0  # lease design: hypivisor lease put interval (TTL 15 s)
    cross_site: float = 0.1  # share of watched agents on another site
    max_watch: int = 3  # a dashboard watches 0..max_watch agents


@dataclass
class Agent:
    site: int
    machine: int
    hv: int  # index of the owner hypivisor within its site
    status_changes: int
    deltas: int
    attention: int
    record_bytes: int


@dataclass
class Dashboard:
    site: int
    hv: int
    watched: list[int] = field(default_factory=list)  # agent indices


@dataclass
class World:
    params: Params
    agents: list[Agent]
    dashboards: list[Dashboard]
    site_sizes: list[int]
    py_bytes_per_byte: float  # parsed-dict bytes per serialised byte (measured)
    attention_item_bytes: int


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth below 30, a rounded normal above: the counts only feed rates)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def site_sizes(rng: random.Random, agents: int, sites: int) -> list[int]:
    weights = [1 / math.sqrt(i + 1) for i in range(sites)]
    rng.shuffle(weights)
    total = sum(weights)
    sizes = [int(agents * w / total) for w in weights]
    for i in range(agents - sum(sizes)):
        sizes[i % sites] += 1
    return sizes


def node_record(rng: random.Random, site: int, machine: int, agent: int) -> dict[str, Any]:
    """One agent's roster record in cluster mode: a real NodeInfo with plausible strings, plus its owner."""
    project = f"project-{rng.randrange(10_000)}"
    depth = "/".join(f"part{rng.randrange(100)}" for _ in range(rng.randrange(0, 4)))
    node = NodeInfo(
        id=f"{rng.getrandbits(64):016x}",
        machine=f"build-{machine:04d}.site{site}.example.com",
        cwd=f"/home/dev{rng.randrange(50)}/src/{project}/{depth}".rstrip("/"),
        port=rng.randrange(20_000, 60_000),
        pid=rng.randrange(1000, 4_000_000),
        activity=rng.choice(["idle", "working"]),
        session_name=f"{project} {rng.choice(['fix', 'refactor', 'review', 'tests'])} #{rng.randrange(1000)}",
        model=rng.choice(["claude-sonnet-4-5", "gpt-6.2", "gemini-3-pro", "claude-opus-4-5"]),
        started_at=1_796_500_000 + rng.randrange(100_000),
        last_seen=1_796_600_000 + rng.randrange(1000),
        tokens=TokenTotals(
            input=rng.randrange(10**6), output=rng.randrange(10**5), cache_read=rng.randrange(10**7), total=0
        ),
        cost=round(rng.random() * 20, 4),
        pi_version="1.6.0",
        approval_policy=rng.choice(["off", "writes", "all"]),
        pending_approvals=rng.choice([0, 0, 0, 1]),
        unread=rng.randrange(5),
        capabilities=["approvals", "attention", "budgets"],
        git_branch=rng.choice(["main", f"feature/{project}", None]),
        activity_since=1_796_600_000 + rng.randrange(1000),
        session_file=f"/home/dev/.pi/agent/sessions/--{project}--/2026-12-06T20-{rng.randrange(60):02d}.jsonl",
    )
    return {**node.model_dump(mode="json"), "hv": f"hv-{site}-{agent % 3}"}


def deep_size(value: Any) -> int:
    """Bytes of a parsed JSON value in this Python (sys.getsizeof of every container, key and value; shared
    small ints and interned strings counted each time, so an upper bound)."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(deep_size(k) + deep_size(v) for k, v in value.items())
    elif isinstance(value, list):
        size += sum(deep_size(v) for v in value)
    return size


def measure_py_ratio(records: list[dict[str, Any]]) -> float:
    """Bytes a parsed record occupies in a Python process per byte of its orjson form."""
    blobs = [orjson.dumps(r) for r in records]
    return sum(deep_size(orjson.loads(b)) for b in blobs) / sum(len(b) for b in blobs)


def build(params: Params) -> World:
    rng = random.Random(params.seed)
    sizes = site_sizes(rng, params.agents, params.sites)
    agents: list[Agent] = []
    samples: list[dict[str, Any]] = []
    machine_id = 0
    t = params.duration
    for site, size in enumerate(sizes):
        left = size
        while left > 0:
            n = min(left, rng.randint(1, 16))
            hv = rng.randrange(params.hypivisors)
            for _ in range(n):
                record = node_record(rng, site, machine_id, len(agents))
                if len(samples) < 2000:
                    samples.append(record)
                share = min(1.0, rng.random() * 2 * params.working)
                agents.append(
                    Agent(
                        site=site,
                        machine=machine_id,
                        hv=hv,
                        status_changes=poisson(rng, t / params.status_every),
                        deltas=poisson(rng, t * share * params.delta_hz),
                        attention=poisson(rng, t / params.attention_every),
                        record_bytes=len(orjson.dumps(record)) + len(f"m{machine_id:05d}.a{len(agents):016x}"),
                    )
                )
            machine_id += 1
            left -= n
    by_site: dict[int, list[int]] = defaultdict(list)
    for i, a in enumerate(agents):
        by_site[a.site].append(i)
    dashboards: list[Dashboard] = []
    for site in range(params.sites):
        for d in range(params.dashboards):
            dash = Dashboard(site, d % params.hypivisors)
            for _ in range(rng.randint(0, params.max_watch)):
                where = site
                if params.sites > 1 and rng.random() < params.cross_site:
                    where = rng.choice([s for s in range(params.sites) if s != site])
                if by_site[where]:
                    pick = rng.choice(by_site[where])
                    if pick not in dash.watched:
                        dash.watched.append(pick)
            dashboards.append(dash)
    item = AttentionItem(
        id="i123456",
        node_id="0123456789abcdef",
        kind="approval",
        summary="bash: npm run build && npm test -- --coverage",
        created_at=1_796_600_000,
        machine="build-0001.site1.example.com",
        cwd="/home/dev1/src/project-1234/part1",
        session_name="project-1234 fix #12",
        approval_id="a12-3f9c",
        tool_name="bash",
    )
    return World(params, agents, dashboards, sizes, measure_py_ratio(samples), len(orjson.dumps(item.model_dump())))


def simulate(params: Params) -> dict[str, Any]:
    w = build(params)
    p = params
    t = p.duration
    agents, dashboards = w.agents, w.dashboards
    status_by_site = Counter[int]()
    attention_by_site = Counter[int]()
    record_bytes_by_site = Counter[int]()
    machines_by_site: dict[int, set[int]] = defaultdict(set)
    for a in agents:
        status_by_site[a.site] += a.status_changes
        attention_by_site[a.site] += a.attention
        record_bytes_by_site[a.site] += a.record_bytes
        machines_by_site[a.site].add(a.machine)
    total_status = sum(status_by_site.values())
    total_attention = sum(attention_by_site.values())
    all_record_bytes = sum(record_bytes_by_site.values())

    # interest: which agents each hypivisor subscribes to (one subscription however many of its dashboards watch)
    interest: dict[tuple[int, int], set[int]] = defaultdict(set)  # (site, hv) -> agents
    watchers = Counter[int]()
    for d in dashboards:
        for i in d.watched:
            interest[(d.site, d.hv)].add(i)
            watchers[i] += 1
    delta_into_hv = {key: sum(agents[i].deltas for i in s) for key, s in interest.items()}
    delta_per_dash = [sum(agents[i].deltas for i in d.watched) for d in dashboards]
    cross_hv = sum(1 for d in dashboards for i in d.watched if (agents[i].site, agents[i].hv) != (d.site, d.hv))
    cross_site = sum(1 for d in dashboards for i in d.watched if agents[i].site != d.site)

    sites_out = []
    for s in range(p.sites):
        n = w.site_sizes[s]
        approvals = attention_by_site[s] / 2
        kv_per_agent = (status_by_site[s] + n * t / p.heartbeat + 2 * approvals) / t
        kv_lease = (status_by_site[s] + p.hypivisors * t / p.lease + 2 * approvals) / t
        dash_of_site = [i for i, d in enumerate(dashboards) if d.site == s]
        open_items = attention_by_site[s] / t * p.attention_open_s
        hv_mem_site_scope = record_bytes_by_site[s] + open_items * w.attention_item_bytes
        sites_out.append(
            {
                "site": s,
                "agents": n,
                "machines": len(machines_by_site[s]),
                "kv_puts_s_per_agent_heartbeat": kv_per_agent,
                "kv_puts_s_lease": kv_lease,
                "watch_msgs_s_into_each_hv_per_agent_heartbeat": (status_by_site[s] + n * t / p.heartbeat) / t,
                "watch_msgs_s_into_each_hv_lease": (status_by_site[s] + p.hypivisors * t / p.lease) / t,
                "roster_events_s_per_dashboard_site_scope": status_by_site[s] / t,
                "attention_stream_writes_s": 2 * attention_by_site[s] / t,
                "pushes_s": attention_by_site[s] / t,
                "open_attention_items": open_items,
                "delta_msgs_s_per_dashboard_mean": sum(delta_per_dash[i] for i in dash_of_site) / len(dash_of_site) / t
                if dash_of_site
                else 0.0,
                "delta_msgs_s_per_dashboard_max": max((delta_per_dash[i] for i in dash_of_site), default=0) / t,
                "delta_msgs_s_into_busiest_hv": max(delta_into_hv.get((s, h), 0) for h in range(p.hypivisors)) / t,
                "hv_memory_site_scope_serialised_mb": hv_mem_site_scope / MB,
                "hv_memory_site_scope_python_mb": hv_mem_site_scope * w.py_bytes_per_byte / MB,
            }
        )
    open_items_all = total_attention / t * p.attention_open_s
    mem_all = all_record_bytes + open_items_all * w.attention_item_bytes
    total = {
        "agents": len(agents),
        "machines": sum(len(m) for m in machines_by_site.values()),
        "hypivisors": p.hypivisors * p.sites,
        "dashboards": len(dashboards),
        "kv_puts_s_per_agent_heartbeat": sum(x["kv_puts_s_per_agent_heartbeat"] for x in sites_out),
        "kv_puts_s_lease": sum(x["kv_puts_s_lease"] for x in sites_out),
        "roster_events_s_per_dashboard_all_sites": total_status / t,
        "watch_msgs_s_into_each_hv_all_sites_per_agent_heartbeat": (total_status + len(agents) * t / p.heartbeat) / t,
        "watch_msgs_s_into_each_hv_all_sites_lease": (total_status + p.hypivisors * p.sites * t / p.lease) / t,
        "pushes_s": total_attention / t,
        "delta_msgs_s_per_dashboard_mean": sum(delta_per_dash) / len(dashboards) / t if dashboards else 0.0,
        "delta_msgs_s_per_dashboard_max": max(delta_per_dash, default=0) / t,
        "watches": sum(len(d.watched) for d in dashboards),
        "watches_cross_hypivisor": cross_hv,
        "watches_cross_site": cross_site,
        "record_bytes_mean": all_record_bytes / len(agents) if agents else 0.0,
        "python_bytes_per_serialised_byte": w.py_bytes_per_byte,
        "hv_memory_all_sites_serialised_mb": mem_all / MB,
        "hv_memory_all_sites_python_mb": mem_all * w.py_bytes_per_byte / MB,
    }
    checks = {
        # interest-based fan-out: every dashboard gets exactly the deltas of the agents it watches, every
        # hypivisor exactly one copy per agent one of its dashboards watches, and the sums agree
        "delta_deliveries_to_dashboards": sum(delta_per_dash),
        "delta_deliveries_by_interest": sum(agents[i].deltas * c for i, c in watchers.items()),
        "delta_copies_into_hypivisors": sum(delta_into_hv.values()),
        "delta_copies_by_interest": sum(agents[i].deltas for s in interest.values() for i in s),
        "pushes_sent": total_attention,
        "attention_items": total_attention,
    }
    return {"params": asdict(p), "sites": sites_out, "total": total, "checks": checks}


def render(result: dict[str, Any]) -> str:
    p, tot = result["params"], result["total"]
    lines = [
        f"cluster_sim seed={p['seed']}: {tot['agents']:,} agents, {tot['machines']:,} machines, {p['sites']} sites, "
        f"{tot['hypivisors']} hypivisors, {tot['dashboards']} dashboards, {p['duration']:.0f} s simulated",
        "",
        "| site | agents | KV puts/s (per-agent hb) | KV puts/s (lease) | watch msgs/s into each hv (hb / lease) "
        "| roster events/s per dashboard | pushes/s | deltas/s per dashboard (mean / max) | hv memory, site scope "
        "(serialised / Python) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["sites"]:
        lines.append(
            f"| {s['site']} | {s['agents']:,} | {s['kv_puts_s_per_agent_heartbeat']:,.0f} | {s['kv_puts_s_lease']:,.1f} "
            f"| {s['watch_msgs_s_into_each_hv_per_agent_heartbeat']:,.0f} / {s['watch_msgs_s_into_each_hv_lease']:,.1f} "
            f"| {s['roster_events_s_per_dashboard_site_scope']:,.1f} | {s['pushes_s']:.1f} "
            f"| {s['delta_msgs_s_per_dashboard_mean']:.1f} / {s['delta_msgs_s_per_dashboard_max']:.1f} "
            f"| {s['hv_memory_site_scope_serialised_mb']:.1f} MB / {s['hv_memory_site_scope_python_mb']:.1f} MB |"
        )
    lines.append(
        f"| **all** | {tot['agents']:,} | {tot['kv_puts_s_per_agent_heartbeat']:,.0f} | {tot['kv_puts_s_lease']:,.1f} "
        f"| {tot['watch_msgs_s_into_each_hv_all_sites_per_agent_heartbeat']:,.0f} / "
        f"{tot['watch_msgs_s_into_each_hv_all_sites_lease']:,.1f} "
        f"| {tot['roster_events_s_per_dashboard_all_sites']:,.1f} | {tot['pushes_s']:.1f} "
        f"| {tot['delta_msgs_s_per_dashboard_mean']:.1f} / {tot['delta_msgs_s_per_dashboard_max']:.1f} "
        f"| {tot['hv_memory_all_sites_serialised_mb']:.1f} MB / {tot['hv_memory_all_sites_python_mb']:.1f} MB |"
    )
    lines += [
        "",
        f"record: {tot['record_bytes_mean']:.0f} B serialised (key + orjson NodeInfo + hv), "
        f"{tot['python_bytes_per_serialised_byte']:.1f}x that as a parsed dict; watches {tot['watches']} "
        f"({tot['watches_cross_hypivisor']} on another hypivisor, {tot['watches_cross_site']} on another site)",
        f"checks: {result['checks']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, value in asdict(Params()).items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = vars(ap.parse_args(argv))
    as_json = args.pop("json")
    result = simulate(Params(**args))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if as_json else render(result))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
