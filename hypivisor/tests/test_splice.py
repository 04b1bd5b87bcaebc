"""The byte splice on both event loops the hypivisor can run on (uvloop in production, asyncio without it).

Each direction's ``data_received`` is the peer transport's ``write`` itself (splice.Pipe): the loop must
then deliver every chunk straight to the other socket, in order, both ways, and closing one side must close
the other. The real proxy is tested end to end in integration_tests/test_hypivisor_proxy.py.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from hypivisor import splice

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if data.endswith(b"!bye"):  # the agent hangs up
                break
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _spliced_client() -> tuple[socket.socket, asyncio.Transport, asyncio.Server]:
    """A socket whose other end is spliced to an echo server; returns (our end, spliced transport, server)."""
    loop = asyncio.get_running_loop()
    server, port = await _echo_server()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client, _ = await loop.connect_accepted_socket(asyncio.Protocol, theirs)
    client.pause_reading()
    await splice.open_splice(client, "127.0.0.1", port, b"first:")
    return ours, client, server


async def _read_exactly(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = b""
    async with asyncio.timeout(5):
        while len(got) < n:
            chunk = await loop.sock_recv(sock, n - len(got))
            if not chunk:
                break
            got += chunk
    return got


async def _relay_both_ways() -> None:
    loop = asyncio.get_running_loop()
    ours, client, server = await _spliced_client()
    try:
        down = client.get_protocol()
        assert isinstance(down, splice.Pipe)
        assert down.data_received == down.peer.write  # no Python frame of ours per chunk
        # the first bytes (the rewritten handshake) come back first, then every chunk in order
        chunks = [bytes([65 + i % 26]) * (1 + i * 997 % 70000) for i in range(40)]
        for c in chunks:
            await loop.sock_sendall(ours, c)
        want = b"first:" + b"".join(chunks)
        assert await _read_exactly(ours, len(want)) == want
        # closing the dashboard's end closes the agent side (the other way: the next test)
        agent_side = down.peer
        ours.close()
        async with asyncio.timeout(5):
            while not agent_side.is_closing():
                await asyncio.sleep(0.01)
    finally:
        ours.close()
        server.close()
        await server.wait_closed()


async def _agent_close_closes_client() -> None:
    loop = asyncio.get_running_loop()
    ours, client, server = await _spliced_client()
    try:
        assert await _read_exactly(ours, 6) == b"first:"
        await loop.sock_sendall(ours, b"!bye")
        assert await _read_exactly(ours, 1) == b""  # EOF: the splice closed the dashboard's side
        assert client.is_closing()
    finally:
        ours.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_splice_relays_in_order_both_ways(loop_name: str) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(_relay_both_ways())


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_agent_closing_closes_the_dashboard_side(loop_name: str) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(_agent_close_closes_client())
