"""The Python agent bridge: everything a pi agent needs to be reachable, outside pi's process.

pi loads a tiny TypeScript shim (``pi_socket/extension/``) that starts
``python -m pi_socket.bridge`` with piped stdio and exchanges JSON lines with
it (``specs/protocol.md`` §4). This package does the rest: the agent WebSocket
server (§3), registration with the hypivisor (§2), the history mirror and
pager, prompt acknowledgements, auth and the operational log.

Layout (one concept per module; the pure ones do no I/O and are unit-tested
in microseconds, the asyncio ones are thin shells around them):

pure
    ``config``       environment → settings
    ``auth``         token and Origin check for the agent port
    ``history``      the message mirror, the init window and the pager
    ``partial``      the streamed assistant message rebuilt from deltas
    ``ledger``       prompt ids: send once, acknowledge every repeat
    ``attachments``  attachment validation and bundling into one prompt
    ``files``        the ``list_files`` policy (inside cwd only)
    ``state``        everything an ``init_state`` needs, fed by pi events
    ``backoff``      registry reconnect delays
    ``frames``       client-frame parsing into protocol models or errors
asyncio
    ``shimlink``     stdio JSON lines with the shim (requests with ids)
    ``clients``      per-client bounded outbound queues, broadcast
    ``server``       the agent WebSocket server and per-client dispatch
    ``registry``     register/heartbeat/deregister with the hypivisor
    ``app``          wiring and lifecycle; ``__main__`` starts it
"""
