"""Subjects, KV keys and bucket names of cluster mode (specs/cluster.md). Pure: no I/O.

Every name is built here so the NATS and in-process backplanes (and the simulation) agree byte for byte.

* A **site** is one NATS cluster or leaf node (one network); its name is a plain token
  (``[A-Za-z0-9_-]{1,32}``) because it is part of stream and bucket names.
* Machine names and agent ids are free text for the rest of the project; inside a subject or a KV key each
  becomes one **token**: ``[A-Za-z0-9_-]`` are kept, every other byte of its UTF-8 is ``=XX`` (hex, upper case).
  ``=`` is valid in KV keys and subjects, never a separator, so the encoding is reversible and injective, and a
  name can never add a level (``.``) or a wildcard (``*``, ``>``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

SITE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_KEEP = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_PLAIN = re.compile(r"[A-Za-z0-9_-]+")  # a name that is its own token (most are): no byte to encode

ROOT = "hp"
AGENTS_BUCKET = "HP_AGENTS_{site}"  # key <machine>.<agent> -> agent record (the roster)
APPROVALS_BUCKET = "HP_APPROVALS_{site}"  # key <machine>.<agent>.<approval> -> pending | decided
HV_BUCKET = "HP_HV_{site}"  # key <hv> -> hypivisor lease (url, started_at)
ATTN_STREAM = "HP_ATTN_{site}"  # subjects hp.attn.<site>.> (inbox items and their ends)
PUSH_CONSUMER = "pushsender"  # durable pull consumer on ATTN_STREAM shared by every hypivisor of the site
OWNER_QUEUE = "owner"  # queue group of the rpc subscriptions


class SiteNameError(ValueError):
    """A site name that cannot be part of a bucket or stream name."""


def check_site(site: str) -> str:
    if not SITE_RE.match(site):
        raise SiteNameError(f"site name {site!r} must be 1-32 of A-Z a-z 0-9 _ -")
    return site


def token(name: str) -> str:
    """One subject/KV token for any non-empty string (reversible: :func:`untoken`)."""
    if not name:
        raise ValueError("an empty name has no token")
    if _PLAIN.fullmatch(name):
        return name
    out: list[str] = []
    for b in name.encode("utf-8", "surrogatepass"):
        out.append(chr(b) if b in _KEEP else f"={b:02X}")
    return "".join(out)


def untoken(tok: str) -> str:
    if "=" not in tok and tok.isascii():
        return tok  # nothing was encoded (a token holds only [A-Za-z0-9_-] and =XX)
    raw = bytearray()
    i = 0
    while i < len(tok):
        if tok[i] == "=":
            raw.append(int(tok[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(ord(tok[i]))
            i += 1
    return raw.decode("utf-8", "surrogatepass")


# The agent token of a machine's own record in ``HP_AGENTS_<site>`` (key ``<machine>.=``): ``token`` never makes a
# bare ``=`` (it is always followed by two hex digits), so no agent id can name it.
MACHINE_TOKEN = "="


class AgentKey(NamedTuple):
    """Where an agent lives: its site, its machine and its id (the registry's node id).

    ``agent == ""`` is the machine's own record (:func:`machine_key`): what ``list_machines`` shows of a machine
    whose service is connected to some hypivisor, kept alive by that hypivisor's lease like its agents.

    A named tuple: immutable, ordered by its fields, and hashed and compared in C (every roster change of the
    cluster looks a key up several times)."""

    site: str
    machine: str
    agent: str

    @property
    def is_machine(self) -> bool:
        return self.agent == ""

    @property
    def _agent_token(self) -> str:
        return MACHINE_TOKEN if self.agent == "" else token(self.agent)

    @property
    def kv_key(self) -> str:
        """Key in ``HP_AGENTS_<site>``."""
        return f"{token(self.machine)}.{self._agent_token}"

    @classmethod
    def from_kv_key(cls, site: str, key: str) -> AgentKey:
        machine, agent = key.split(".")
        if not machine or not agent:
            raise ValueError(f"key {key!r} has an empty token")
        return cls(site, untoken(machine), "" if agent == MACHINE_TOKEN else untoken(agent))

    @property
    def prefix(self) -> str:
        return f"{token(self.site)}.{token(self.machine)}.{self._agent_token}"

    def event_subject(self, kind: str) -> str:
        """``hp.evt.<site>.<machine>.<agent>.<kind>``: live events of one agent (core NATS, not stored)."""
        return f"{ROOT}.evt.{self.prefix}.{token(kind)}"

    @property
    def events_of_agent(self) -> str:
        return f"{ROOT}.evt.{self.prefix}.>"

    def approval_key(self, approval_id: str) -> str:
        """Key in ``HP_APPROVALS_<site>``."""
        return f"{self.kv_key}.{token(approval_id)}"

    def attention_subject(self, what: str) -> str:
        """``hp.attn.<site>.<machine>.<agent>.<added|resolved>`` in stream ``HP_ATTN_<site>``."""
        return f"{ROOT}.attn.{self.prefix}.{token(what)}"


def machine_key(site: str, machine: str) -> AgentKey:
    """The key of ``machine``'s own record in ``HP_AGENTS_<site>`` (``<machine>.=``)."""
    return AgentKey(site, machine, "")


def hv_agents_subject(site: str, hv: str) -> str:
    """``hp.hv.<site>.<hv>.agents``: requests for the agents whose links hypivisor ``hv`` holds (each request names
    its agent's KV key in front of its payload; one subscription per hypivisor, however many agents it holds)."""
    return f"{ROOT}.hv.{token(site)}.{token(hv)}.agents"


def machine_rpc_subject(site: str, machine: str) -> str:
    """``hp.machine.<site>.<machine>.rpc``: served by the hypivisor the machine's service is connected to."""
    return f"{ROOT}.machine.{token(site)}.{token(machine)}.rpc"


def site_events(site: str) -> str:
    return f"{ROOT}.evt.{token(site)}.>"


def site_attention(site: str) -> str:
    return f"{ROOT}.attn.{token(site)}.>"


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, a final ``>`` is one or more tokens."""
    p = pattern.split(".")
    s = subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return i == len(p) - 1 and len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)
