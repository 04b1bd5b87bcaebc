// The machines the hypivisor knows (specs/machines.md): list_machines on every (re)connect, kept current by
// machine_joined / machine_updated / machine_left. Events that arrive before the snapshot answer are replayed
// over it, so a machine never flickers back to an older state.
import type { MachineInfo, MachineJoinedEvent, MachineLeftEvent, MachineUpdatedEvent } from "../protocol/types";

export type MachineEvent = MachineJoinedEvent | MachineUpdatedEvent | MachineLeftEvent;

export interface MachinesState {
  byName: Record<string, MachineInfo>;
  /** Events received since the last snapshot request, replayed over its answer (bounded). */
  pending: MachineEvent[] | null;
}

export type MachinesAction = MachineEvent | { event: "sync_started" } | { event: "snapshot"; machines: MachineInfo[] };

export const emptyMachines: MachinesState = { byName: {}, pending: null };

const EVENTS: ReadonlySet<string> = new Set(["machine_joined", "machine_updated", "machine_left"]);
const MAX_PENDING = 1000;

export function isMachineEvent(e: { event: string }): e is MachineEvent {
  return EVENTS.has(e.event);
}

function apply(byName: Record<string, MachineInfo>, e: MachineEvent): Record<string, MachineInfo> {
  if (e.event === "machine_left") {
    const next = { ...byName };
    if (e.machine) next[e.name] = e.machine;
    else delete next[e.name];
    return next;
  }
  return { ...byName, [e.machine.name]: e.machine };
}

export function machinesReducer(s: MachinesState, a: MachinesAction): MachinesState {
  if (a.event === "sync_started") return { ...s, pending: [] };
  if (a.event === "snapshot") {
    let byName: Record<string, MachineInfo> = {};
    for (const m of a.machines) byName[m.name] = m;
    for (const e of s.pending ?? []) byName = apply(byName, e);
    return { byName, pending: null };
  }
  const pending = s.pending === null ? null : s.pending.length < MAX_PENDING ? [...s.pending, a] : s.pending;
  return { byName: apply(s.byName, a), pending };
}

/** The hypivisor's own machine first, then by name. */
export function machineList(s: MachinesState): MachineInfo[] {
  return Object.values(s.byName).sort((a, b) => Number(!!b.own) - Number(!!a.own) || a.name.localeCompare(b.name));
}
