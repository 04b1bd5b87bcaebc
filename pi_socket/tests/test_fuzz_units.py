"""Property tests for the bridge's pure input boundaries (specs/reliability.md, specs/security.md).

Client frames, attachments, ``@file`` prefixes and handshake credentials all
come from the network. Each input must get a model or a typed error with a
documented code, never an exception; nothing outside the agent's cwd is ever
listed; only the exact token opens the agent port.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from pi_socket.bridge import attachments, files, port_auth
from pi_socket.bridge.frames import CLIENT_TYPES, parse_client_frame
from pi_socket.protocol import MAX_ATTACHMENT_BYTES, Attachment, ErrorCode, ErrorMsg

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FRAME_CODES = {ErrorCode.PARSE_ERROR, ErrorCode.INVALID_REQUEST, ErrorCode.METHOD_NOT_FOUND, ErrorCode.INVALID_PARAMS}

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FRAMEISH = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from([*CLIENT_TYPES, "Prompt", "", "init_state", "ack", "x" * 500]), JSON)},
    optional={
        "id": st.one_of(JSON, st.text(min_size=120, max_size=200), st.integers(min_value=-(2**70), max_value=2**70)),
        "text": JSON,
        "before": JSON,
        "limit": JSON,
        "prefix": JSON,
        "name": JSON,
        "deliver_as": JSON,
        "attachments": st.lists(
            st.fixed_dictionaries({}, optional={"name": JSON, "mime_type": JSON, "data": JSON}), max_size=3
        )
        | JSON,
        "extra": JSON,
    },
)


def outcome(raw):
    out = parse_client_frame(raw)
    assert isinstance(out, BaseModel)
    if isinstance(out, ErrorMsg):
        assert out.code in FRAME_CODES and out.message
        json.dumps(out.model_dump(mode="json"))  # the error itself is always serialisable
    return out


@FUZZ
@given(raw=st.one_of(st.binary(max_size=100), st.text(max_size=200), JSON.map(json.dumps), FRAMEISH.map(json.dumps)))
def test_any_frame_is_a_model_or_a_typed_error(raw):
    out = outcome(raw)
    if not isinstance(out, ErrorMsg):
        assert out.type in CLIENT_TYPES


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deep_nesting_is_an_error_not_a_recursion_error(depth):
    for doc in (
        "[" * depth + "]" * depth,
        '{"a":' * depth + "1" + "}" * depth,
        '{"type":"prompt","id":"p","text":' + "[" * depth + "]" * depth + "}",
    ):
        assert isinstance(outcome(doc), ErrorMsg)


def test_binary_unknown_and_wrong_types_are_specific():
    assert outcome(b"\x00\xff").code == ErrorCode.INVALID_REQUEST
    assert outcome('{"type":"rm -rf"}').code == ErrorCode.METHOD_NOT_FOUND
    assert outcome('{"type":"prompt","id":"p1","text":42}').code == ErrorCode.INVALID_PARAMS
    assert outcome('{"type":"prompt","id":"p1","text":42}').id == "p1"
    assert outcome('{"type":"prompt","id":"' + "x" * 129 + '","text":"hi"}').code == ErrorCode.INVALID_PARAMS
    assert outcome('{"type":"fetch_history","before":' + "9" * 400 + "}").code in FRAME_CODES


# ------------------------------------------------------------------ attachments
MIMES = st.one_of(
    st.sampled_from(
        [
            "image/png",
            "IMAGE/PNG; x=1",
            "text/plain",
            "application/json",
            "application/octet-stream",
            "application/x-msdownload",
            "image/svg+xml",
            "text/html",
            "video/mp4",
            "",
        ]
    ),
    st.text(max_size=30),
)


@FUZZ
@given(
    name=st.text(min_size=1, max_size=50),
    mime=MIMES,
    data=st.one_of(
        st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
        st.text(max_size=100),
        st.sampled_from(["====", "YQ", "YQ==YQ==", "Zm9v\n", "@@@@"]),
    ),
)
def test_attachments_bundle_or_a_specific_error(name, mime, data):
    try:
        att = Attachment(name=name, mime_type=mime or "x", data=data)
    except ValueError:
        return  # the model itself refused it: parse_client_frame answers -32602
    try:
        b = attachments.bundle("hi", [att])
    except attachments.AttachmentError as exc:
        assert exc.code in (ErrorCode.INVALID_PARAMS, ErrorCode.TOO_LARGE) and str(exc)
        return
    base = attachments.base_mime(att.mime_type)
    assert base in attachments.IMAGE_TYPES or attachments.is_text_type(base)
    if b.images:
        assert base64.b64decode(b.images[0]["data"], validate=True) == base64.b64decode("".join(data.split()))
    else:
        assert b.text.startswith("hi\n\n<file name=") and '"' not in b.text.split('name="', 1)[1].split('">', 1)[0]


def test_oversize_wrong_mime_and_invalid_base64():
    big = base64.b64encode(b"\0" * (MAX_ATTACHMENT_BYTES + 1)).decode()
    cases = [
        (Attachment(name="a.png", mime_type="image/png", data=big), ErrorCode.TOO_LARGE),
        (Attachment(name="a.exe", mime_type="application/x-msdownload", data="TVo="), ErrorCode.INVALID_PARAMS),
        (Attachment(name="a.png", mime_type="image/png", data="not base64!"), ErrorCode.INVALID_PARAMS),
        (
            Attachment(name="a.txt", mime_type="text/plain", data=base64.b64encode(b"\xff\xfe").decode()),
            ErrorCode.INVALID_PARAMS,
        ),
    ]
    for att, code in cases:
        with pytest.raises(attachments.AttachmentError) as e:
            attachments.bundle("x", [att])
        assert e.value.code == code, att.name


# ------------------------------------------------------------------ @file listing
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    cwd = root / "cwd"
    (cwd / "src" / "pkg").mkdir(parents=True)
    (cwd / "src" / "main.py").write_text("x")
    (cwd / ".env").write_text("SECRET=1")
    (root / "secret").mkdir()
    (root / "secret" / "key.pem").write_text("k")
    (cwd / "out").symlink_to(root / "secret")
    (cwd / "src" / "up").symlink_to("../..")
    (cwd / "root").symlink_to("/")
    return cwd


PREFIX = st.lists(
    st.sampled_from(
        [
            "..",
            ".",
            "",
            "src",
            "pkg",
            "out",
            "up",
            "root",
            "etc",
            "secret",
            "key",
            "ma",
            "\x00",
            "/",
            "\\..",
            "~",
            "a" * 300,
        ]
    ),
    max_size=6,
).map("/".join)


@FUZZ
@given(prefix=st.one_of(PREFIX, st.text(max_size=60), PREFIX.map(lambda p: "/" + p)))
def test_list_files_never_leaves_cwd(project, prefix):
    real = Path(os.path.realpath(project))
    for entry in files.list_files(project, prefix):
        resolved = Path(os.path.realpath(project / entry["path"]))
        assert resolved.is_relative_to(real), (prefix, entry)
        assert "key.pem" not in entry["path"]


# ------------------------------------------------------------------ handshake credentials
# websockets decodes header values as ISO-8859-1 and requires an ASCII request path, so those are the inputs.
LATIN1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=60)


@FUZZ
@given(
    authorization=st.one_of(st.none(), LATIN1, st.just("Bearer s3cret"), st.just("bearer s3cret ")),
    protocols=st.lists(st.one_of(LATIN1, st.just("hypi-token.czNjcmV0"), st.just("hypi-token.%%%")), max_size=3),
    path=st.one_of(
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
        st.just("/?token=s3cret"),
        st.just("/?token=%FF%FE"),
    ),
    origin=st.one_of(st.none(), LATIN1, st.just("http://127.0.0.1:5180"), st.just("null")),
)
def test_handshake_check_never_raises_and_only_the_token_opens(authorization, protocols, path, origin):
    allowed = frozenset({"http://127.0.0.1:5180"})
    v = port_auth.check_handshake(
        token="s3cret",
        allowed_origins=allowed,
        authorization=authorization,
        protocols=protocols,
        path=path,
        origin=origin,
    )
    if origin is not None and origin.rstrip("/") not in allowed:
        assert v.status == 403
    if v.allowed:
        assert "s3cret" in port_auth.presented_tokens(authorization, protocols, path)
