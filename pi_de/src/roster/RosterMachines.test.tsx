import { cleanup, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { emptyRoster, rosterReducer } from "../model/rosterReducer";
import type { MachineInfo, NodeInfo } from "../protocol/types";
import { Roster } from "./Roster";

afterEach(cleanup);

const machine = (name: string, extra: Partial<MachineInfo> = {}): MachineInfo => ({ name, online: true, agents: 0, own: false, service: true, pi_versions: [], ...extra });

function renderWith(nodes: NodeInfo[], machines: MachineInfo[]) {
  const roster = rosterReducer(emptyRoster, { event: "init", nodes });
  return render(<Roster roster={roster} selected={null} onSelect={() => {}} machines={machines} />);
}

describe("the roster by machine", () => {
  it("groups by machine, then folder, and shows machines with no agents and offline ones", () => {
    renderWith(
      [
        { id: "a", machine: "hub", cwd: "/h/api", port: 1 },
        { id: "b", machine: "beta", cwd: "/h/api", port: 2 },
        { id: "c", machine: "beta", cwd: "/h/web", port: 3 },
      ],
      [machine("hub", { own: true }), machine("beta"), machine("gamma", { online: false })],
    );
    const groups = screen.getAllByTestId("machine-group");
    expect(groups.map((g) => [g.dataset.machine, g.dataset.online])).toEqual([["hub", "true"], ["beta", "true"], ["gamma", "false"]]);
    expect(within(groups[1]).getAllByTestId("roster-group")).toHaveLength(2); // beta's two folders
    expect(within(groups[0]).getAllByTestId("node-card").map((n) => n.dataset.nodeId)).toEqual(["a"]);
    expect(within(groups[2]).getByTestId("machine-state").textContent).toBe("offline");
    expect(groups[2].textContent).toContain("no agents");
  });

  it("stays flat with one machine", () => {
    renderWith([{ id: "a", machine: "hub", cwd: "/h/api", port: 1 }], [machine("hub", { own: true })]);
    expect(screen.queryByTestId("machine-group")).toBeNull();
    expect(screen.getAllByTestId("roster-group")).toHaveLength(1);
  });

  it("shows every machine even when no agent runs anywhere", () => {
    renderWith([], [machine("hub", { own: true }), machine("beta")]);
    expect(screen.getAllByTestId("machine-group")).toHaveLength(2);
  });
});
