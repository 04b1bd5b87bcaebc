"""Property tests for the hypivisor's pure input boundaries (specs/reliability.md, specs/security.md).

Every function here faces bytes a stranger can send: the ``$HOME`` path
policy, the ``/ws`` request parser, the method dispatcher (params
validation) and the token/Origin check. The properties: each input gets a
clear, typed answer (a value or the module's own error with a documented
code), never another exception; the path policy never answers with a path
outside ``$HOME`` and never creates anything.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypivisor import access, paths, rpc
from hypivisor.config import parse as parse_config
from hypivisor.paths import PathError
from hypivisor.service import RpcFailure, Service
from pi_socket.protocol import ErrorCode

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PATH_CODES = {ErrorCode.PATH_OUTSIDE_HOME, ErrorCode.PATH_NOT_FOUND, ErrorCode.INVALID_PATH}
RPC_CODES = {ErrorCode.PARSE_ERROR, ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_PARAMS}


# ------------------------------------------------------------------ path policy
@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """home/{proj/sub, file.txt, link-in -> proj, link-out -> ../outside, abs-out -> /, dangling} + outside/."""
    root = tmp_path_factory.mktemp("fuzzpaths")
    home = root / "home"
    (home / "proj" / "sub").mkdir(parents=True)
    (home / "file.txt").write_text("x")
    (root / "outside" / "deep").mkdir(parents=True)
    (home / "link-in").symlink_to(home / "proj")
    (home / "link-out").symlink_to(root / "outside")
    (home / "abs-out").symlink_to("/")
    (home / "dangling").symlink_to(home / "nowhere")
    (home / "proj" / "up").symlink_to("../..")  # escapes through a relative symlink two levels deep
    return root


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


SEGMENTS = st.sampled_from(
    [
        "..",
        ".",
        "",
        "~",
        "proj",
        "sub",
        "file.txt",
        "link-in",
        "link-out",
        "abs-out",
        "dangling",
        "up",
        "outside",
        "deep",
        "etc",
        "tmp",
        "new",
        "a" * 300,
        "x\x00y",
        "\\..\\",
        "%2e%2e",
        "...",
        " ..",
    ]
)


@st.composite
def path_strings(draw) -> str:
    """Paths built from dangerous pieces: .., symlinks out, absolute roots, NUL, very long names."""
    parts = draw(st.lists(SEGMENTS, max_size=8))
    lead = draw(st.sampled_from(["", "/", "~/", "~", "//", "/etc/", "/tmp/", "../", "{home}/", "{root}/outside/"]))
    return lead + "/".join(parts)


def fill(raw: str, tree: Path) -> str:
    return raw.replace("{home}", str(tree / "home")).replace("{root}", str(tree))


@FUZZ
@given(raw=st.one_of(path_strings(), st.text(max_size=300), st.just("a/" * 2100)))
def test_resolve_dir_answers_inside_home_or_a_path_error(tree, raw):
    home = str(tree / "home")
    real_home = os.path.realpath(home)
    before = snapshot(tree)
    try:
        got = paths.resolve_dir(fill(raw, tree), home)
    except PathError as exc:
        assert exc.code in PATH_CODES and exc.message
    else:
        assert paths.is_inside(got, real_home) and os.path.isdir(got)
        assert os.path.realpath(got) == got
    assert snapshot(tree) == before


FOLDERS = st.one_of(
    st.sampled_from(
        [
            "..",
            ".",
            "",
            ".hidden",
            "a/b",
            "a\\b",
            "/abs",
            "x\x00",
            "n" * 201,
            " lead",
            "trail ",
            "link-out",
            "abs-out",
            "ok-name",
            "proj",
            "file.txt",
        ]
    ),
    st.text(max_size=220),
)


@FUZZ
@given(raw=path_strings(), new_folder=st.one_of(st.none(), FOLDERS))
def test_spawn_target_never_leaves_home_and_creates_nothing(tree, raw, new_folder):
    home = str(tree / "home")
    real_home = os.path.realpath(home)
    before = snapshot(tree)
    try:
        target = paths.spawn_target(fill(raw, tree), new_folder, home)
    except PathError as exc:
        assert exc.code in PATH_CODES
    else:
        assert paths.is_inside(os.path.realpath(target.path), real_home)
        if new_folder is not None:
            # one visible segment only: no separators, NUL, hidden or relative names got through
            assert "/" not in new_folder and "\\" not in new_folder and "\x00" not in new_folder
            assert not new_folder.startswith(".") and 0 < len(new_folder) <= 200
            assert os.path.dirname(target.path.rstrip("/")) != "" and target.path.endswith(new_folder)
    assert snapshot(tree) == before, "the path policy created or removed something"


@pytest.mark.parametrize("name", ["a/b", "a\\b", "../x", "/", "..", ".", ".git", "x\x00y", "n" * 201, ""])
def test_new_folder_with_separators_or_relative_parts_is_1005(tree, name):
    with pytest.raises(PathError) as e:
        paths.spawn_target("", name, str(tree / "home"))
    assert e.value.code == ErrorCode.INVALID_PATH


@pytest.mark.parametrize(
    "raw",
    [
        "link-out",
        "abs-out",
        "link-out/deep",
        "proj/up",
        "proj/up/outside",
        "/",
        "/etc",
        "{root}/outside",
        "~/../outside",
        "proj/../../outside",
    ],
)
def test_every_way_out_is_1003(tree, raw):
    with pytest.raises(PathError) as e:
        paths.resolve_dir(fill(raw, tree), str(tree / "home"))
    assert e.value.code == ErrorCode.PATH_OUTSIDE_HOME


# ------------------------------------------------------------------ /ws request parser
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
REQUESTISH = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(JSON, st.integers(min_value=-(2**80), max_value=2**80), st.text(min_size=100, max_size=300)),
        "method": st.one_of(
            st.sampled_from(
                [
                    "list_nodes",
                    "register",
                    "heartbeat",
                    "deregister",
                    "list_directories",
                    "spawn_agent",
                    "",
                    "nope",
                    "__init__",
                    "_m_register",
                ]
            ),
            JSON,
        ),
        "params": JSON,
        "extra": JSON,
    },
)


def parse_outcome(data):
    try:
        return rpc.parse_request(data)
    except RpcFailure as exc:
        assert exc.code in RPC_CODES and exc.message
        return exc


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), st.text(max_size=200), JSON.map(json.dumps), REQUESTISH.map(json.dumps)))
def test_parse_request_never_raises_anything_but_rpc_failure(data):
    out = parse_outcome(data)
    if not isinstance(out, RpcFailure):
        rpc_id, method, params = out
        assert isinstance(method, str) and method and (params is None or isinstance(params, dict))
        assert rpc_id is None or isinstance(rpc_id, (int, str)) and not isinstance(rpc_id, bool)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deep_nesting_is_a_parse_error_not_a_recursion_error(depth):
    for doc in (
        "[" * depth + "]" * depth,
        '{"a":' * depth + "1" + "}" * depth,
        json.dumps({"id": 1, "method": "list_nodes"})[:-1] + ', "params": ' + "[" * depth + "]" * depth + "}",
    ):
        out = parse_outcome(doc)
        assert isinstance(out, RpcFailure), "a deeply nested document must be refused"


def test_huge_and_odd_ids():
    assert isinstance(parse_outcome(json.dumps({"id": "x" * 129, "method": "list_nodes"})), RpcFailure)
    assert isinstance(parse_outcome(json.dumps({"id": True, "method": "list_nodes"})), RpcFailure)
    assert isinstance(parse_outcome(json.dumps({"id": 1.5, "method": "list_nodes"})), RpcFailure)
    assert parse_outcome('{"id": ' + "9" * 30 + ', "method": "list_nodes"}') is not None  # orjson refuses or parses
    assert parse_outcome(json.dumps({"id": 2**62, "method": "list_nodes"}))[0] == 2**62


# ------------------------------------------------------------------ dispatcher
@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("svc-home")
    cfg = parse_config(["--host", "127.0.0.1", "-p", "1"], {"HOME": str(home)})
    return Service(cfg, {"HOME": str(home), "PATH": "/nonexistent"})


@FUZZ
@given(
    method=st.sampled_from(["list_nodes", "heartbeat", "deregister", "list_directories", "register", "frob"]),
    params=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["id", "machine", "cwd", "port", "path", "pid", "host", "tokens", "x"]), JSON, max_size=5
        ),
    ),
)
def test_dispatch_answers_result_or_rpc_failure(service, method, params):
    async def run():
        try:
            return await service.dispatch(method, params, "fuzz-conn", "127.0.0.1")
        except RpcFailure as exc:
            assert exc.code in {
                *RPC_CODES,
                ErrorCode.METHOD_NOT_FOUND,
                ErrorCode.NOT_FOUND,
                ErrorCode.FORBIDDEN,
                ErrorCode.AGENT_UNAVAILABLE,  # a machine the hypivisor does not know, or offline (specs/machines.md)
                *PATH_CODES,
            }, exc.code
            return exc

    asyncio.run(run())
    json.dumps(service.registry.nodes() and [n.model_dump(mode="json") for n in service.registry.nodes()])


# ------------------------------------------------------------------ token / Origin
# The constant-time comparison itself is tested in pi_socket/tests/test_handshake.py.
HEADERS = st.dictionaries(
    st.sampled_from(["authorization", "sec-websocket-protocol", "origin", "host"]),
    st.one_of(
        st.text(alphabet=st.characters(max_codepoint=255), max_size=60),
        st.sampled_from(
            [
                "Bearer s3cret",
                "bearer  s3cret ",
                "Basic s3cret",
                "hypi.v1, hypi-token.czNjcmV0",
                "hypi-token.!!!",
                "hypi-token.",
                "http://evil.example",
                "null",
                "http://127.0.0.1:1",
            ]
        ),
    ),
    max_size=4,
)


@FUZZ
@given(headers=HEADERS, query=st.one_of(st.none(), st.text(max_size=20), st.just("s3cret")))
def test_auth_check_never_raises_and_only_the_secret_opens(headers, query):
    allowed = {"http://127.0.0.1:1"}
    d = access.check(headers.get, query, "s3cret", allowed)
    assert d.status in (200, 401, 403)
    origin = headers.get("origin")
    if origin is not None and origin.rstrip("/") not in allowed:
        assert d.status == 403
    if d.allowed:
        assert "s3cret" in access.presented_tokens(headers.get, query)


def test_oversize_frame_limit_is_documented():
    """The /ws frame limit the server enforces is the one specs/protocol.md states (1 MiB)."""
    assert rpc.MAX_FRAME == 1024 * 1024
    spec = " ".join((Path(__file__).resolve().parents[2] / "specs" / "protocol.md").read_text().split())
    assert "Frames over 1 MiB close the connection (1009)" in spec


# ------------------------------------------------------------------ stored roster values (issue #16 items 2-4, 8)
def _nest(value, levels: int):
    for _ in range(levels):
        value = {"x": value}
    return value


HOSTILE_VALUE = st.one_of(
    JSON,
    st.integers(min_value=1, max_value=400).map(lambda n: _nest(1, n)),  # deep nesting in a few hundred bytes
    st.integers(min_value=1, max_value=400).map(lambda n: [[]] * n),
    st.sampled_from([10**30, -1, 2**53, 1e308, 1e-308, 2**63]),
    st.integers(min_value=1, max_value=200_000).map(lambda n: "v" * n),  # large fields
    st.dictionaries(st.text(max_size=8), st.integers(), min_size=50, max_size=200),  # many keys
)
STORED_KEYS = [
    "tokens",
    "cost",
    "protocol_version",
    "pi_version",
    "session_name",
    "model",
    "started_at",
    "machine",
    "cwd",
    "pid",
    "activity",
    "host",
]


@FUZZ
@given(
    method=st.sampled_from(["register", "heartbeat"]),
    changes=st.dictionaries(st.sampled_from(STORED_KEYS), HOSTILE_VALUE, max_size=4),
    token_extra=st.dictionaries(st.text(max_size=8), HOSTILE_VALUE, max_size=3),
)
def test_hostile_stored_values_are_refused_or_bounded_and_the_roster_always_serialises(
    service, method, changes, token_extra
):
    """Whatever register/heartbeat carry (deep nesting, huge numbers, long strings, extra keys), the node stored is
    bounded and the roster still serialises for everyone: init, list_nodes, and the next registration."""
    params = {"id": "fuzz-node", "machine": "m", "cwd": "/", "port": 4242, **changes}
    if "tokens" in changes and isinstance(changes["tokens"], dict):
        params["tokens"] = {**changes["tokens"], **token_extra}
    if method == "heartbeat":
        params = {k: v for k, v in params.items() if k in {"id", "tokens", "cost", "session_name", "model",
                                                           "activity"}}  # fmt: skip

    async def run():
        await service.dispatch("register", {"id": "fuzz-node", "machine": "m", "cwd": "/", "port": 4242},
                               "fuzz-stored", "127.0.0.1")  # fmt: skip
        try:
            await service.dispatch(method, params, "fuzz-stored", "127.0.0.1")
        except RpcFailure as exc:
            assert exc.code == ErrorCode.INVALID_PARAMS, exc.code
        service._snapshot = None
        frames = service.init_frames()
        assert sum(len(f) for f in frames) < 100_000  # nothing large was stored
        listed = orjson.loads(orjson.dumps(await service.dispatch("list_nodes", None, "fuzz-dash", "h")))["nodes"]
        node = next(n for n in listed if n["id"] == "fuzz-node")
        assert set(node["tokens"]) == {"input", "output", "cache_read", "cache_write", "total"}
        assert len(orjson.dumps(node)) < 6000
        await service.dispatch("register", {"id": "fuzz-other", "machine": "m", "cwd": "/", "port": 4243},
                               "fuzz-other", "127.0.0.1")  # fmt: skip

    asyncio.run(run())


def test_many_nodes_on_one_connection_stop_at_the_cap_with_1008(tmp_path):
    """A connection registering node after node gets a clear 1008 at the cap; it cannot grow its per-frame cost."""
    from hypivisor.registry import MAX_NODES_PER_CONNECTION

    cfg = parse_config(["--host", "127.0.0.1", "-p", "1"], {"HOME": str(tmp_path)})
    svc = Service(cfg, {"HOME": str(tmp_path), "PATH": "/nonexistent"})

    async def run():
        for i in range(MAX_NODES_PER_CONNECTION):
            await svc.dispatch("register", {"id": f"n{i}", "machine": "m", "cwd": "/", "port": 1 + i}, "many", "h")
        with pytest.raises(RpcFailure) as e:
            await svc.dispatch("register", {"id": "over", "machine": "m", "cwd": "/", "port": 60000}, "many", "h")
        assert e.value.code == ErrorCode.RATE_LIMITED and f"at most {MAX_NODES_PER_CONNECTION}" in e.value.message

    asyncio.run(run())
    assert len(svc.registry) == MAX_NODES_PER_CONNECTION
