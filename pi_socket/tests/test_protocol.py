"""The protocol models are the contract: these tests pin what they accept and refuse."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from pi_socket import protocol as p


def parse_client(frame: dict):
    return p.client_message_adapter.validate_python(frame)


def test_prompt_round_trip():
    msg = parse_client({"type": "prompt", "id": "c1", "text": "hi", "deliver_as": "followUp"})
    assert isinstance(msg, p.PromptMsg)
    assert msg.deliver_as == "followUp"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "prompt", "text": "no id"},
        {"type": "prompt", "id": "", "text": "empty id"},
        {"type": "prompt", "id": "x" * (p.MAX_ID_LEN + 1), "text": "huge id"},
        {"type": "prompt", "id": "a", "text": "x", "deliver_as": "now"},
        {"type": "prompt", "id": "a", "text": 5},
        {"type": "prompt", "id": "a", "text": 5, "surprise": 1},
        {"type": "fetch_history", "before": -1},
        {"type": "fetch_history", "before": 0, "limit": p.HISTORY_PAGE_MAX + 1},
        {"type": "set_session_name", "name": ""},
        {"type": "launch_missiles"},
        {"no_type": True},
    ],
)
def test_client_frames_rejected(frame):
    with pytest.raises(ValidationError):
        parse_client(frame)


def test_a_newer_peer_s_unknown_fields_are_ignored_and_named():
    """Version skew (specs/protocol.md §0): unknown fields are dropped, never stored or re-sent."""
    msg = parse_client({"type": "prompt", "id": "a", "text": "x", "surprise": 1})
    assert isinstance(msg, p.PromptMsg) and "surprise" not in msg.model_dump()
    assert p.unknown_fields(p.PromptMsg, {"type": "prompt", "id": "a", "text": "x", "surprise": 1}) == ["surprise"]
    reg = p.RegisterParams.model_validate({"id": "n1", "machine": "m", "cwd": "/w", "port": 1, "wormhole": {"x": 1}})
    assert "wormhole" not in reg.model_dump()
    assert p.incompatibility("1", "a", "x", "y") is None and p.incompatibility("1.9", "a", "x", "y") is None
    assert p.incompatibility(None, "a", "x", "y") is None
    newer = p.incompatibility("2.0", "the agent", "the hypivisor", "the agent's pi-socket")
    assert newer is not None and "2.0" in newer and p.PROTOCOL_VERSION in newer and "upgrade the hypivisor" in newer
    older = p.incompatibility("0.9", "the agent", "the hypivisor", "the agent's pi-socket")
    assert older is not None and "upgrade the agent's pi-socket" in older


def test_too_many_attachments_rejected():
    att = {"name": "a.txt", "mime_type": "text/plain", "data": "aGk="}
    with pytest.raises(ValidationError):
        parse_client({"type": "prompt", "id": "a", "text": "x", "attachments": [att] * (p.MAX_ATTACHMENTS + 1)})


def test_registry_params_strict():
    ok = p.RegisterParams.model_validate({"id": "n1", "machine": "m", "cwd": "/w", "port": 8080})
    assert ok.activity == "idle"
    for bad in (
        {"id": "n1", "machine": "m", "cwd": "/w", "port": 70000},
        {"id": "n1", "machine": "m", "cwd": "/w", "port": 8080, "pid": "not a pid"},
        {"machine": "m", "cwd": "/w", "port": 8080},
    ):
        with pytest.raises(ValidationError):
            p.RegisterParams.model_validate(bad)
    assert set(p.REGISTRY_METHODS) >= {
        "register",
        "deregister",
        "heartbeat",
        "list_nodes",
        "list_directories",
        "spawn_agent",
        "list_attention",
        "mark_read",
        "dismiss_attention",
    }


def test_pi_messages_pass_through_unknown_fields():
    msg = p.PiMessage.model_validate({"role": "assistant", "content": [], "newFieldFromPi15": {"x": 1}})
    assert p.dump(msg)["newFieldFromPi15"] == {"x": 1}


def test_init_event_carries_protocol_version():
    ev = p.InitEvent(nodes=[])
    assert p.dump(ev) == {
        "event": "init",
        "nodes": [],
        "protocol_version": p.PROTOCOL_VERSION,
        "hypivisor_version": None,
        "capabilities": list(p.CAPABILITIES),
        "total": None,
        "peers": None,
    }


def test_schema_command_exports_every_model():
    out = subprocess.run(
        [sys.executable, "-m", "pi_socket.protocol", "schema"], capture_output=True, text=True, check=True
    ).stdout
    schema = json.loads(out)
    defs = schema["$defs"]
    for model in p.SCHEMA_MODELS:
        assert model.__name__ in defs, model.__name__
    assert schema["protocol_version"] == p.PROTOCOL_VERSION
    assert -32700 in defs["ErrorCode"]["enum"]


def test_the_committed_schema_is_generated_from_these_models():
    """pi_de/src/protocol/schema.json (and so types.ts, which a vitest test ties to it) is what `make schema`
    writes from protocol.py: a model change without regenerating them fails here."""
    committed = Path(__file__).resolve().parents[2] / "pi_de" / "src" / "protocol" / "schema.json"
    assert json.loads(committed.read_text()) == json.loads(json.dumps(p.json_schema())), (
        "run `make schema` and `cd pi_de && npm run gen:types`"
    )
