import { describe, expect, it } from "vitest";
import type { MachineInfo } from "../protocol/types";
import { emptyMachines, isMachineEvent, machineList, machinesReducer } from "./machines";

const m = (name: string, extra: Partial<MachineInfo> = {}): MachineInfo => ({ name, online: true, agents: 0, own: false, service: true, pi_versions: [], ...extra });

describe("machines", () => {
  it("takes the snapshot, then follows the events", () => {
    let s = machinesReducer(emptyMachines, { event: "sync_started" });
    s = machinesReducer(s, { event: "snapshot", machines: [m("hub", { own: true }), m("beta")] });
    expect(machineList(s).map((x) => x.name)).toEqual(["hub", "beta"]);
    s = machinesReducer(s, { event: "machine_joined", machine: m("alpha") });
    s = machinesReducer(s, { event: "machine_updated", machine: m("beta", { agents: 2 }) });
    expect(machineList(s).map((x) => [x.name, x.agents])).toEqual([["hub", 0], ["alpha", 0], ["beta", 2]]);
    s = machinesReducer(s, { event: "machine_left", name: "alpha", machine: m("alpha", { online: false }) });
    expect(s.byName.alpha.online).toBe(false); // offline, still listed
    s = machinesReducer(s, { event: "machine_left", name: "beta", machine: null });
    expect(s.byName.beta).toBeUndefined(); // known only from agents: gone with them
  });

  it("replays events that raced the snapshot over it", () => {
    let s = machinesReducer(emptyMachines, { event: "sync_started" });
    s = machinesReducer(s, { event: "machine_left", name: "beta", machine: m("beta", { online: false }) });
    s = machinesReducer(s, { event: "snapshot", machines: [m("hub", { own: true }), m("beta")] });
    expect(s.byName.beta.online).toBe(false);
    expect(s.pending).toBeNull();
  });

  it("knows its events", () => {
    expect(isMachineEvent({ event: "machine_left" })).toBe(true);
    expect(isMachineEvent({ event: "node_joined" })).toBe(false);
  });
});
