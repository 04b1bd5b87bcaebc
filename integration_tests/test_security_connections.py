"""Connection exhaustion, request heads and token hygiene against a real hypivisor process.

- tricklers (one byte a second) are closed within the head timeout, on the first request of a
  connection and after a first request (every plain HTTP response closes its connection), with and
  without HYPI_TOKEN;
- one address holding its cap gets HTTP 503 with a JSON error; peers holding many cannot take the
  reserve; another address still opens the dashboard's /ws and gets its init;
- request lines past 8 KB, over-long heads, pipelined second requests carrying the token in the
  query, a header or a subprotocol: the token appears in no output of the process;
- the 16 KB head limit holds whether the head comes in one segment or one byte at a time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time

import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from hypivisor.front import HEAD_TIMEOUT
from hypivisor.httphead import MAX_HEAD

SENTINEL = "SentinelTok3n-Qx7vLm2Rp9Zk4Wd8"
MARGIN = 4.0


def read_all(sock: socket.socket, deadline: float) -> tuple[bytes, float]:
    """Everything until the peer closes (or ``deadline``), and when it closed (monotonic)."""
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data, time.monotonic()
        if not chunk:
            return data, time.monotonic()
        data += chunk
    return data, float("inf")


def trickle(port: int, prefix: bytes, results: list, limit_s: float) -> None:
    """Send ``prefix`` at once, then one byte a second of an endless head; record (answer, seconds open)."""
    start = time.monotonic()
    deadline = start + limit_s
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(prefix)
        closed_at = float("inf")
        data = b""
        filler = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 1000
        for byte in filler:
            if time.monotonic() > deadline:
                break
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            got, closed_at = read_all(s, time.monotonic() + 1.0)
            data += got
            if closed_at != float("inf"):
                break
        if closed_at == float("inf"):
            got, closed_at = read_all(s, deadline)
            data += got
    results.append((data, closed_at - start))


@pytest.mark.parametrize("token", [None, SENTINEL], ids=["no-token", "token"])
def test_trickling_heads_are_closed_within_the_head_timeout(hypivisor_factory, token):
    hv = hypivisor_factory(token=token)
    results: list = []
    limit = HEAD_TIMEOUT + 3 * MARGIN
    first_request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    threads = [
        threading.Thread(target=trickle, args=(port, prefix, results, limit))
        for port in (hv.port, hv.dashboard_port)
        for prefix in (b"", first_request)
        for _ in range(5)
    ]  # 20 tricklers: both ports, on a fresh connection and after a first request
    for t in threads:
        t.start()
    for t in threads:
        t.join(limit + 5)
    assert len(results) == 20
    for data, seconds in results:
        assert seconds <= HEAD_TIMEOUT + MARGIN, f"a trickler stayed open {seconds:.1f} s: {data[:200]!r}"
        if data.startswith(b"HTTP/1.1 200"):  # the first request was answered, then the connection closed
            assert b"Connection: close" in data and data.count(b"HTTP/1.1 ") == 1
        else:
            assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    with socket.create_connection(("127.0.0.1", hv.port), timeout=5) as s:  # still serving
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_all(s, time.monotonic() + 5)[0].startswith(b"HTTP/1.1 200")


def connect_from(source: str, port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def answer_now(sock: socket.socket) -> bytes:
    return read_all(sock, time.monotonic() + 3)[0]


def test_connection_caps_answer_503_and_keep_a_reserve_for_a_dashboard(hypivisor_factory):
    # total 32 (the last 4 kept for addresses holding fewer than 8), 16 per address
    hv = hypivisor_factory(args=["--max-connections", "32", "--max-connections-per-peer", "16"])
    held: list[socket.socket] = []
    try:
        held += [connect_from("127.0.0.1", hv.port) for _ in range(16)]
        # One more on the same port first: one listening socket accepts in order, so this refusal also proves
        # the 16 are counted (a loaded accept loop could take a connection to the other port before them).
        with connect_from("127.0.0.1", hv.port) as extra:
            assert answer_now(extra).startswith(b"HTTP/1.1 503 ")
        with connect_from("127.0.0.1", hv.dashboard_port) as extra:  # both ports count together
            refused = answer_now(extra)
        assert refused.startswith(b"HTTP/1.1 503 "), refused[:200]
        body = json.loads(refused.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["code"] == 1008 and "this address" in body["error"]["message"]
        held += [connect_from("127.0.0.3", hv.port) for _ in range(12)]  # 28 open: the reserve starts here
        with connect_from("127.0.0.3", hv.port) as extra:
            refused = answer_now(extra)
        assert refused.startswith(b"HTTP/1.1 503 "), refused[:200]
        # Another address still gets in: the dashboard's registry socket and its init.
        sock = connect_from("127.0.0.2", hv.port)
        with ws_connect(f"ws://127.0.0.1:{hv.port}/ws", sock=sock, open_timeout=5) as ws:
            ws.send(json.dumps({"id": 1, "method": "list_nodes", "params": {}}))
            frames = [json.loads(ws.recv(timeout=5)) for _ in range(2)]
            assert any(f.get("event") == "init" for f in frames), frames
    finally:
        for s in held:
            s.close()
    # Released on close: the first address may connect again.
    deadline = time.monotonic() + 5
    while True:
        with connect_from("127.0.0.1", hv.port) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = answer_now(s)
        if answer.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def b64(token: str) -> str:
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def test_token_never_reaches_any_output_for_long_lines_and_bad_heads(hypivisor_factory):
    hv = hypivisor_factory(token=SENTINEL)
    long_q = "/healthz?pad=" + "p" * 8300 + f"&token={SENTINEL}"
    bad = [
        f"GET {long_q} HTTP/1.1\r\nHost: x\r\n\r\n",  # request line past 8 KB, first request
        f"GET /ws?token={SENTINEL}&pad={'p' * 8300} HTTP/1.1\r\nHost: x\r\n\r\n",  # token early in it
        # the same as a pipelined second request after a first one
        f"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET {long_q} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /x?token={SENTINEL} HTTP/1.1\r\nX: {'v' * 9000}\r\n\r\n",
        f"GET /ws?token={SENTINEL} HTTP/1.1\r\nX: {'v' * 17000}\r\n\r\n",  # head over 16 KB
        f"GET /ws HTTP/1.1\r\nAuthorization: Bearer {SENTINEL}\r\nX: {'v' * 9000}\r\n\r\n",
        f"GET /ws HTTP/1.1\r\nSec-WebSocket-Protocol: hypi.v1, hypi-token.{b64(SENTINEL)}\r\nX: {'v' * 9000}\r\n\r\n",
        f"GET /ws?token={SENTINEL} HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        f"GET /ws?token={SENTINEL} HTTP/1.1\r\nX: a\rb\r\n\r\n",
        f"GET /ws?token={SENTINEL} HTTP/9.9\r\n\r\n",
        f"GET /healthz HTTP/1.1\r\n\r\nGARBAGE {SENTINEL} \x00\r\n\r\n",
        f"GET /ws/agent/x?token={SENTINEL} HTTP/1.1\r\nX: {'v' * 9000}\r\n\r\n",
    ]
    for port in (hv.port, hv.dashboard_port):
        for raw in bad:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(raw.encode("latin-1"))
                answer = read_all(s, time.monotonic() + 3)[0]
            assert not answer.startswith(b"HTTP/1.1 5"), answer[:300]
    hv.stop()
    output = hv.stdout() + hv.stderr() + hv.log_lines()
    assert "hypivisor" in output  # the files were found
    forms = [SENTINEL, b64(SENTINEL)] + [SENTINEL[i : i + 8] for i in range(0, len(SENTINEL) - 8, 4)]
    leaked = [f for f in forms if f in output]
    assert not leaked, f"token fragments in the output: {leaked}; stderr: {hv.stderr()[-2000:]}"


@pytest.mark.parametrize("one_byte_at_a_time", [False, True], ids=["one-segment", "byte-by-byte"])
def test_the_16_kb_head_limit_holds_however_the_bytes_arrive(hypivisor_factory, one_byte_at_a_time):
    hv = hypivisor_factory()

    def send(raw: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", hv.port), timeout=5) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if one_byte_at_a_time:
                for i in range(len(raw)):
                    try:
                        s.send(raw[i : i + 1])
                    except (BrokenPipeError, ConnectionResetError):
                        break
            else:
                try:
                    s.sendall(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            return read_all(s, time.monotonic() + 5)[0]

    def head(size: int) -> bytes:
        start = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        pad = size - len(start) - len(b"X: \r\n\r\n")
        return start + b"X: " + b"v" * pad + b"\r\n\r\n"

    assert send(head(MAX_HEAD)).startswith(b"HTTP/1.1 200 "), "a head of exactly 16 KB is accepted"
    assert send(head(MAX_HEAD + 1)).startswith(b"HTTP/1.1 431 ")
    assert send(head(MAX_HEAD + 4000)).startswith(b"HTTP/1.1 431 ")


async def test_spliced_agent_connections_count_and_are_released_when_closed(hypivisor_factory):
    """A /ws/agent/<id> connection is counted while the splice owns it and uncounted once closed."""
    from integration_tests.test_hypivisor_proxy import ToyAgent, register

    hv = hypivisor_factory(args=["--max-connections-per-peer", "4"])
    async with ToyAgent() as agent:
        bridge = await register(hv, "a1", agent.port)  # one connection from 127.0.0.1
        try:
            for _round in range(3):
                links = [await websockets.connect(hv.agent_url("a1"), open_timeout=5) for _ in range(3)]
                for ws in links:
                    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "init_state"
                with pytest.raises(InvalidStatus) as info:
                    await websockets.connect(hv.agent_url("a1"), open_timeout=5)
                assert info.value.response.status_code == 503
                for ws in links:
                    await ws.close()
        finally:
            await bridge.close()
