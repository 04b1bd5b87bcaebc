"""The other hypivisors' machines, as this hypivisor lists them: a pure structure (no NATS, no clock, no loop).

Cluster mode (specs/cluster.md §12, specs/machines.md): the hypivisor a machine service is connected to (and every
hypivisor for its own machine) puts that machine's record into the shared roster: the ``MachineInfo`` it lists,
plus ``hv`` (its id) and ``secret_sha256`` (the hash of the name's machine secret, so another hypivisor can check a
fail-over registration; never shown). A record's ``agents`` is always 0: every hypivisor counts a machine's agents
from its own roster, which is the whole cluster's (so a count moving writes no record). :class:`RemoteMachines`
keeps the other hypivisors' records and decides what a dashboard here sees:

* **a live connection here wins**: a machine that is this hypivisor's own, or whose service is connected here, is
  listed as the local book has it, whatever the roster says;
* otherwise the roster's record wins over a local offline entry or a local entry known only from agents (the
  machine is, or was last, somewhere else), with ``agents`` the local book's count (the whole roster's); a local
  entry is listed when no record exists;
* each change of a record is one ``machine_joined`` / ``machine_updated`` / ``machine_left`` for the dashboards,
  computed from what they saw before and after (nothing when the visible entry did not change).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from hypivisor.machines import machine_events
from pi_socket.protocol import MachineInfo

SECRET_FIELD = "secret_sha256"


@dataclass(frozen=True)
class RemoteMachine:
    info: MachineInfo  # as a dashboard here sees it: ``own`` false, ``hv`` the owner's id
    hv: str
    secret: str  # sha256 hex of its machine secret ("" when none: a hypivisor's own machine)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def machine_record(info: MachineInfo, secret_sha256: str) -> dict[str, Any]:
    """What the owner puts for a machine it holds (the backplane adds ``hv``). ``agents`` is 0: each hypivisor
    counts the agents itself (a record rewritten on every count change would be a write per agent change)."""
    record = info.model_dump(mode="json", exclude={"hv"})
    record["agents"] = 0
    if secret_sha256:
        record[SECRET_FIELD] = secret_sha256
    return record


def strong(local: MachineInfo | None) -> bool:
    """This hypivisor holds the machine live: its own machine, or its service connected here."""
    return local is not None and (local.own or (local.service and local.online))


class RemoteMachines:
    """Machine name → the record another hypivisor put. Not thread-safe: drive it from one event loop."""

    def __init__(self, hv_id: str, own_name: str) -> None:
        self.hv_id = hv_id
        self.own_name = own_name
        self._machines: dict[str, RemoteMachine] = {}
        self.refused = 0  # records that were not a valid machine (counted, never shown)

    def __len__(self) -> int:
        return len(self._machines)

    def get(self, name: str) -> RemoteMachine | None:
        return self._machines.get(name)

    def names(self) -> list[str]:
        return list(self._machines)

    def view(self, name: str, local: MachineInfo | None) -> MachineInfo | None:
        """What a dashboard here lists for ``name`` (None: not listed): the local entry when this hypivisor holds
        the machine live or no record exists, else the record with the local book's agent count (the whole
        roster's; 0 without a local entry: no agent on the roster names it)."""
        remote = self._machines.get(name)
        if strong(local) or remote is None:
            return local
        agents = local.agents if local is not None else 0
        return remote.info if remote.info.agents == agents else remote.info.model_copy(update={"agents": agents})

    def apply(
        self,
        op: Literal["put", "deleted", "expired"],
        name: str,
        record: dict[str, Any] | None,
        local: MachineInfo | None,
    ) -> tuple[list[BaseModel], bool]:
        """One change of a machine record → (the events for this hypivisor's dashboards, ``reassert``).

        ``local`` is this hypivisor's own entry for the name (its book). ``reassert`` is True when another
        hypivisor put an *offline* record for a machine that is live here: the live connection is the truth, so
        this hypivisor puts its record again (an offline record never wins over a live one; two live records do
        not fight: the last put stays); also when the record of a machine live here was deleted or expired."""
        before = self.view(name, local)
        reassert = False
        if op != "put" or record is None:
            self._machines.pop(name, None)
            reassert = strong(local)  # deleted under a live connection (a late delete of its old holder): put again
        else:
            hv = record.get("hv")
            if not isinstance(hv, str) or not hv or hv == self.hv_id or name == self.own_name:
                self._machines.pop(name, None)  # its own record (or one naming this hypivisor's own machine)
                return [], False
            fields = {k: v for k, v in record.items() if k not in ("hv", SECRET_FIELD)}
            try:
                info = MachineInfo.model_validate({**fields, "own": False, "hv": hv})
            except ValidationError:
                self.refused += 1
                return [], False
            if info.name != name:
                self.refused += 1
                return [], False
            secret = record.get(SECRET_FIELD)
            self._machines[name] = RemoteMachine(info, hv, secret if isinstance(secret, str) else "")
            reassert = strong(local) and not local.own and not info.online  # type: ignore[union-attr]
        return machine_events(name, before, self.view(name, local)), reassert

    def merged(self, local: list[MachineInfo]) -> list[MachineInfo]:
        """``list_machines`` here: the local book's list with the other hypivisors' machines (own machine first)."""
        by_name = {m.name: m for m in local}
        out: list[MachineInfo] = []
        for name in by_name.keys() | self._machines.keys():
            info = self.view(name, by_name.get(name))
            if info is not None:
                out.append(info)
        out.sort(key=lambda m: (not m.own, m.name.lower(), m.name))
        return out

    def secret_ok(self, name: str, secret: str | None) -> bool:
        """May a service register ``name`` here with ``secret``? Not when another hypivisor lists the name with a
        secret and this one is not it (a name belongs to its service cluster-wide; a fail-over presents it)."""
        remote = self._machines.get(name)
        if remote is None or not remote.secret:
            return True
        return bool(secret) and hmac.compare_digest(remote.secret, secret_digest(secret or ""))
