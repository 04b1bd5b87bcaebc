"""Target 11: the session index (#22) over 1 GB of generated pi session files on this machine, beside ripgrep.

The files have the shapes real pi writes with the fake LLM (the entries of ``pi_socket/tests/fixtures/sessions``:
header, model and thinking-level changes, user prompts, assistant text with thinking and tool calls, tool results,
session names, compactions), with text drawn from a Zipf-distributed vocabulary so there are common words, rare
words (planted a few times each) and recurring phrases.

* indexing throughput (MB of session files per second, one thread, no pause) and the index's size as a fraction of
  the input;
* query latency p50/p99 for common words, rare words and phrases (``Index.search``: ranked, 20 hits (the default) with snippets
  read from the files), beside ``rg -i -F -c`` (ripgrep) searching the same files in the same run;
* opening a 10,000-message past session (``read_session`` through the hypivisor's method: parse, branch, first
  page, tree).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import orjson

from bench.common import Row, median

SECTION = "11 sessions"
WORDS = 30_000
SENTENCES = 20_000
RARE = 60  # rare words, each planted in RARE_HITS messages
RARE_HITS = 4
TIMESTAMP = "2026-01-01T00:00:00.000Z"


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Corpus:
    """Deterministic text: a Zipf vocabulary, a pool of sentences, rare words planted at known places."""

    def __init__(self, seed: int = 7):
        self.rng = random.Random(seed)
        syll = ["ka", "to", "ri", "me", "lu", "sa", "no", "vi", "de", "po", "gra", "shi", "tem", "bor", "quin", "ax"]
        words: set[str] = set()
        while len(words) < WORDS:
            words.add("".join(self.rng.choice(syll) for _ in range(self.rng.randint(2, 4))))
        self.vocab = sorted(words, key=lambda w: (len(w), w))
        weights = [1 / (i + 1) for i in range(WORDS)]
        pool = []
        for _ in range(SENTENCES):
            n = self.rng.randint(6, 18)
            pool.append(" ".join(self.rng.choices(self.vocab, weights=weights, k=n)).capitalize() + ".")
        self.pool = pool
        self.rare = [f"zq{self.rng.randrange(16**8):08x}" for _ in range(RARE)]
        self.planted: list[str] = []  # rare words actually written, in order

    def text(self, sentences: int) -> str:
        return " ".join(self.rng.choice(self.pool) for _ in range(sentences))

    def common_queries(self) -> list[str]:
        return self.vocab[:12]

    def phrase_queries(self) -> list[str]:
        out = []
        for s in self.pool[:40]:
            w = s.rstrip(".").lower().split()
            if len(w) >= 3:
                out.append(f'"{w[1]} {w[2]}"')
        return out[:12]


def _entry(kind: str, eid: int, parent: int | None, **fields) -> bytes:
    return orjson.dumps({"type": kind, "id": f"{eid:08x}", "parentId": f"{parent:08x}" if parent is not None else None,
                         "timestamp": TIMESTAMP, **fields}) + b"\n"  # fmt: skip


USAGE = {"input": 812, "output": 164, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 976,
         "cost": {"input": 0.000812, "output": 0.000328, "cacheRead": 0, "cacheWrite": 0, "total": 0.00114}}  # fmt: skip


def session_bytes(corpus: Corpus, cwd: str, sid: str, turns: int, plant: list[str]) -> bytes:
    """One session file: ``turns`` user/assistant turns in the shapes pi writes (see the module docstring)."""
    rng = corpus.rng
    out = [orjson.dumps({"type": "session", "version": 3, "id": sid, "timestamp": TIMESTAMP, "cwd": cwd}) + b"\n"]
    eid = rng.randrange(1 << 28)
    out.append(_entry("model_change", eid, None, provider="fake", modelId="fake-model"))
    out.append(_entry("thinking_level_change", eid + 1, eid, thinkingLevel="off"))
    parent, eid = eid + 1, eid + 2
    for t in range(turns):
        prompt = corpus.text(rng.randint(1, 3))
        if plant and rng.random() < 0.3:
            word = plant.pop()
            corpus.planted.append(word)
            prompt += " " + word
        out.append(_entry("message", eid, parent, message={"role": "user", "content": [{"type": "text", "text": prompt}],
                                                           "timestamp": 1767225600000}))  # fmt: skip
        parent, eid = eid, eid + 1
        if rng.random() < 0.4:
            call = {"type": "toolCall", "id": f"call_{eid:08x}", "name": "bash",
                    "arguments": {"command": f"grep -rn {corpus.vocab[rng.randrange(2000)]} src/"}}  # fmt: skip
            out.append(_entry("message", eid, parent, message={
                "role": "assistant", "content": [call], "api": "openai-completions", "provider": "fake",
                "model": "fake-model", "usage": USAGE, "stopReason": "toolUse", "timestamp": 1767225600000}))  # fmt: skip
            parent, eid = eid, eid + 1
            lines = "\n".join(corpus.text(1) for _ in range(rng.randint(3, 40)))
            out.append(_entry("message", eid, parent, message={
                "role": "toolResult", "toolCallId": call["id"], "toolName": "bash",
                "content": [{"type": "text", "text": lines}], "isError": False, "timestamp": 1767225600000}))  # fmt: skip
            parent, eid = eid, eid + 1
        content = []
        if rng.random() < 0.2:
            content.append({"type": "thinking", "thinking": corpus.text(2), "thinkingSignature": "reasoning_content"})
        content.append({"type": "text", "text": corpus.text(rng.randint(2, 12))})
        out.append(_entry("message", eid, parent, message={
            "role": "assistant", "content": content, "api": "openai-completions", "provider": "fake",
            "model": "fake-model", "usage": USAGE, "stopReason": "stop", "timestamp": 1767225600000}))  # fmt: skip
        parent, eid = eid, eid + 1
        if t == 0:
            out.append(_entry("session_info", eid, parent, name=corpus.text(1)[:60]))
            parent, eid = eid, eid + 1
        if t and t % 150 == 0:
            out.append(_entry("compaction", eid, parent, summary=corpus.text(6), firstKeptEntryId=f"{parent:08x}",
                              tokensBefore=120000))  # fmt: skip
            parent, eid = eid, eid + 1
    return b"".join(out)


def generate(root: Path, total_bytes: int, corpus: Corpus, log) -> tuple[int, int]:
    """Session files under ``root/--<cwd>--/`` until ``total_bytes``; returns (bytes, files)."""
    rng = corpus.rng
    planted = [w for w in corpus.rare for _ in range(RARE_HITS)]
    rng.shuffle(planted)
    size = files = 0
    folders = [f"/home/user/project{i}" for i in range(20)]
    last = time.monotonic()
    while size < total_bytes:
        cwd = rng.choice(folders)
        d = root / ("--" + cwd.strip("/").replace("/", "-") + "--")
        d.mkdir(parents=True, exist_ok=True)
        plant = [planted.pop() for _ in range(min(len(planted), rng.randint(0, 2)))]
        data = session_bytes(corpus, cwd, f"s{files:06d}", rng.randint(20, 400), plant)
        (d / f"2026-01-01T00-00-00-000Z_s{files:06d}.jsonl").write_bytes(data)
        size += len(data)
        files += 1
        if time.monotonic() - last > 10:
            log(f"   generated {size / 1e6:.0f} MB in {files} files")
            last = time.monotonic()
    return size, files


def big_session(root: Path, corpus: Corpus, messages: int) -> Path:
    """One session of ``messages`` messages (user/assistant turns only)."""
    d = root / "--home-user-big--"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "2026-01-02T00-00-00-000Z_big.jsonl"
    path.write_bytes(session_bytes(corpus, "/home/user/big", "big", messages // 2, []))
    return path


def timed_rg(args: list[str], root: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["rg", "-i", "-F", "-c", *args, str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=600, check=False)  # fmt: skip
    return (time.perf_counter() - t0) * 1000


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(smoke: bool, reps: int | None, log=print) -> list[Row]:
    from hypivisor.config import Config
    from hypivisor.service import Service
    from pi_socket.sessions import dirs
    from pi_socket.sessions.index import Index, index_all

    total = (8 if smoke else 1024) * 1024 * 1024
    rounds = reps or (1 if smoke else 3)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    rows: list[Row] = []
    try:
        home = tmp / "home"
        sessions = home / ".pi" / "agent" / "sessions"
        corpus = Corpus()
        t0 = time.monotonic()
        size, nfiles = generate(sessions, total, corpus, log)
        log(f"   generated {size / 1e6:.0f} MB, {nfiles} files in {time.monotonic() - t0:.0f} s")
        state = tmp / "state"
        state.mkdir()
        idx = Index(str(state / "sessions.sqlite3"))
        found = list(dirs.scan([str(sessions)]))
        t0 = time.perf_counter()
        index_all(idx, found)
        took = time.perf_counter() - t0
        idx._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        index_bytes = dir_size(state)
        log(f"   indexed in {took:.1f} s; index {index_bytes / 1e6:.0f} MB")
        rows.append(Row(SECTION, "index throughput (one thread)", round(size / 1e6 / took, 1), "MB/s",
                        note=f"{size / 1e6:.0f} MB in {nfiles} files"))  # fmt: skip
        frac = index_bytes / size
        rows.append(Row(SECTION, "index size / input", round(frac, 3), "×", target="≤ 0.5×", met=frac <= 0.5,
                        note=f"{index_bytes / 1e6:.0f} MB"))  # fmt: skip

        rare = list(dict.fromkeys(corpus.planted))[:12]
        categories = {"common words": corpus.common_queries(), "rare words": rare,
                      "phrases": corpus.phrase_queries()}  # fmt: skip
        for name, queries in categories.items():
            ours: list[float] = []
            for _ in range(rounds):
                for q in queries:
                    t = time.perf_counter()
                    hits = idx.search(q, limit=20)  # search's default: 20 hits per machine
                    ours.append((time.perf_counter() - t) * 1000)
                    if name == "rare words":
                        assert hits, f"no hit for planted word {q}"
            rg: list[float] = []
            for q in queries[: 3 if not smoke else 1]:
                rg.append(timed_rg([q.strip('"')], sessions))
            rg_ms = median(rg)
            p50, p99 = percentile(ours, 50), percentile(ours, 99)
            rows.append(Row(SECTION, f"search p50, {name}", round(p50, 2), "ms", ref="rg", ref_value=round(rg_ms, 1),
                            reps=len(ours)))  # fmt: skip
            met = p99 <= 50 and p99 <= 0.05 * rg_ms
            rows.append(Row(SECTION, f"search p99, {name}", round(p99, 2), "ms", ref="rg", ref_value=round(rg_ms, 1),
                            target="≤ 50 ms and ≤ 0.05× rg", met=met, reps=len(ours),
                            note=f"rg -i -F -c over the same files: median {rg_ms:.0f} ms"))  # fmt: skip
        idx.close()

        big = big_session(sessions, corpus, 10_000)
        svc = Service(Config(host="127.0.0.1", state_dir=state), env={"HOME": str(home)})
        opens = []
        for _ in range(max(3, rounds)):
            svc.sessions.store._cache.clear()
            t = time.perf_counter()
            page = asyncio.run(svc.dispatch("read_session", {"path": str(big)}, "bench", "127.0.0.1"))
            orjson.dumps(page)
            opens.append(time.perf_counter() - t)
        svc.sessions.close()
        assert page["total_messages"] >= 10_000, page["total_messages"]
        worst = max(opens)
        rows.append(Row(SECTION, "open a 10,000-message session", round(median(opens), 3), "s", target="≤ 1 s",
                        met=worst <= 1.0, reps=len(opens),
                        note=f"{big.stat().st_size / 1e6:.0f} MB file, parse + branch + first page + tree; "
                        f"worst {worst:.2f} s"))  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":  # python -m bench.sessions [--smoke]
    import sys

    for r in run("--smoke" in sys.argv, None):
        print(r)
