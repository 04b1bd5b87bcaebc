"""The Python agent bridge: everything a pi agent needs to be reachable, outside pi's process.

pi loads a tiny TypeScript shim (``pi_socket/extension/``) that exchanges JSON lines with a bridge
(``specs/protocol.md`` §4): one :class:`app.Bridge` per pi inside this machine's service
(``pi_socket.machine.agents``, over a unix socket), or ``python -m pi_socket.bridge`` started with piped stdio
(``PI_SOCKET_MODE=bridge``, or when no service answers). This package does the rest: the agent WebSocket
server (§3), registration with the hypivisor (§2), the history mirror and
pager, prompt acknowledgements, auth and the operational log.

Layout (one concept per module; the pure ones do no I/O and are unit-tested
in microseconds, the asyncio ones are thin shells around them):

pure
    ``config``       environment → settings
    ``auth``         token and Origin check for the agent port
    ``history``      the message mirror, the init window and the pager
    ``partial``      the streamed assistant message rebuilt from deltas
    ``prompt_ledger`` prompt ids: send once, acknowledge every repeat
    ``attachments``  attachment validation and bundling into one prompt
    ``files``        the ``list_files`` policy (inside cwd only)
    ``state``        everything an ``init_state`` needs, fed by pi events
    ``backoff``      registry reconnect delays
    ``frames``       agent-link frames: client frames → models or errors, models → frame text
asyncio
    ``shimlink``     JSON lines with the shim, stdio or socket (requests with ids; the line models
                     are ``pi_socket.shimwire``)
    ``clients``      per-client bounded outbound queues, broadcast
    ``handlers``     what each client message does (shim link, state, cwd, effect sink)
    ``server``       the agent WebSocket server; sees the rest through four callbacks
    ``hypivisor_client`` register/heartbeat/deregister with the hypivisor
    ``app``          wiring and lifecycle, the only module that knows them all;
                     ``__main__`` starts it

Imports go downwards only (``pi_socket/tests/test_bridge_layers.py``).
"""
