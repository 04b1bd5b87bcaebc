"""Subjects and keys of cluster mode (hypivisor/cluster/names.py): one token per name, never a new level or a
wildcard, reversible; NATS wildcard matching."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypivisor.cluster.names import (
    AgentKey,
    SiteNameError,
    check_site,
    hv_agents_subject,
    machine_rpc_subject,
    site_events,
    subject_matches,
    token,
    untoken,
)

KV_KEY_TOKEN = re.compile(r"^[A-Za-z0-9_=-]+$")


@given(st.text(min_size=1, max_size=80))
def test_a_token_is_one_safe_level_and_reversible(name: str) -> None:
    tok = token(name)
    assert KV_KEY_TOKEN.match(tok)
    assert untoken(tok) == name


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_tokens_are_injective(a: str, b: str) -> None:
    assert (token(a) == token(b)) == (a == b)


def test_dangerous_names_stay_inside_their_level() -> None:
    key = AgentKey("lab", "host.example.com", "a.*>b c")
    assert key.kv_key == "host=2Eexample=2Ecom.a=2E=2A=3Eb=20c"
    assert hv_agents_subject("lab", "hv.1") == "hp.hv.lab.hv=2E1.agents"
    assert len(key.event_subject("delta").split(".")) == 6
    assert AgentKey.from_kv_key("lab", key.kv_key) == key
    assert key.approval_key("a1-xy") == key.kv_key + ".a1-xy"
    assert key.attention_subject("added").startswith("hp.attn.lab.")
    assert machine_rpc_subject("lab", "beta") == "hp.machine.lab.beta.rpc"
    with pytest.raises(ValueError):
        token("")


def test_site_names_are_plain() -> None:
    assert check_site("site-1_a") == "site-1_a"
    for bad in ("", "a.b", "a b", "x" * 33, "a*", "é"):
        with pytest.raises(SiteNameError):
            check_site(bad)


@pytest.mark.parametrize(
    ("pattern", "subject", "match"),
    [
        ("hp.evt.lab.>", "hp.evt.lab.m.a.delta", True),
        ("hp.evt.lab.>", "hp.evt.lab", False),
        ("hp.evt.*.m.a.>", "hp.evt.lab.m.a.status", True),
        ("hp.evt.*.m.a.>", "hp.evt.lab.m.b.status", False),
        ("hp.evt.lab.m.a.delta", "hp.evt.lab.m.a.delta", True),
        ("hp.evt.lab.m.a.delta", "hp.evt.lab.m.a.delta.x", False),
        ("hp.*", "hp.evt.x", False),
    ],
)
def test_subject_matching(pattern: str, subject: str, match: bool) -> None:
    assert subject_matches(pattern, subject) is match
    assert subject_matches(site_events("lab"), "hp.evt.lab.m.a.k")
