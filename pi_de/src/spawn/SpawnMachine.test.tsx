import { act, cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import type { ListDirectoriesResult, MachineInfo } from "../protocol/types";
import { SpawnModal } from "./SpawnModal";

afterEach(cleanup);

const machine = (name: string, extra: Partial<MachineInfo> = {}): MachineInfo => ({ name, online: true, agents: 0, own: false, service: true, pi_versions: [], ...extra });

function fakeRegistry() {
  const calls: { method: string; params: Record<string, unknown> }[] = [];
  const request = (async (method: string, params: Record<string, unknown> = {}) => {
    calls.push({ method, params });
    if (method === "list_directories") {
      const home = params.machine ? `/home/${params.machine as string}` : "/home/hub";
      return { home, path: home, parent: null, directories: [{ name: `on-${(params.machine as string) ?? "hub"}`, path: `${home}/x` }] } satisfies ListDirectoriesResult;
    }
    return { node_id: "n1", tmux_session: "s", path: "/p", node: {} };
  }) as <T>(method: string, params?: Record<string, unknown>) => Promise<T>;
  return { calls, request };
}

describe("SpawnModal with several machines", () => {
  it("asks for the machine first, browses that machine's folders and spawns there", async () => {
    const { calls, request } = fakeRegistry();
    render(<SpawnModal request={request} onClose={() => {}} onSpawned={() => {}} machines={[machine("hub", { own: true, service: false }), machine("beta"), machine("gamma", { online: false })]} />);
    await screen.findByText("on-hub");
    expect(calls[0]).toEqual({ method: "list_directories", params: {} }); // the own machine: no machine param
    const select = screen.getByTestId("spawn-machine") as HTMLSelectElement;
    expect([...select.options].map((o) => [o.value, o.disabled])).toEqual([["hub", false], ["beta", false], ["gamma", true]]);
    fireEvent.change(select, { target: { value: "beta" } });
    await screen.findByText("on-beta");
    expect(calls.at(-1)).toEqual({ method: "list_directories", params: { machine: "beta" } });
    fireEvent.click(screen.getByText("Deploy agent here"));
    await waitFor(() => expect(calls.at(-1)?.method).toBe("spawn_agent"));
    expect(calls.at(-1)?.params).toEqual({ path: "/home/beta", machine: "beta" });
  });

  it("never deploys to a folder of the machine chosen before: nothing to deploy to until the new listing, a late answer dropped", async () => {
    const calls: { method: string; params: Record<string, unknown> }[] = [];
    const pending: { params: Record<string, unknown>; answer: (r: ListDirectoriesResult) => void }[] = [];
    const listing = (m: string, path: string): ListDirectoriesResult => ({ home: `/home/${m}`, path, parent: null, directories: [{ name: `in-${m}-${path.split("/").at(-1)}`, path: `${path}/x` }] });
    const request = ((method: string, params: Record<string, unknown> = {}) => {
      calls.push({ method, params });
      if (method === "list_directories") return new Promise((answer) => pending.push({ params, answer: answer as (r: ListDirectoriesResult) => void }));
      return Promise.resolve({ node_id: "n1", tmux_session: "s", path: "/p", node: {} });
    }) as <T>(method: string, params?: Record<string, unknown>) => Promise<T>;
    render(<SpawnModal request={request} onClose={() => {}} onSpawned={() => {}} machines={[machine("hub", { own: true, service: false }), machine("beta")]} />);
    await waitFor(() => expect(pending).toHaveLength(1));
    await act(async () => pending[0].answer(listing("hub", "/home/hub")));
    await screen.findByText("in-hub-hub");
    // a folder of hub asked, then beta chosen before that answer came
    fireEvent.click(screen.getByText("in-hub-hub"));
    fireEvent.change(screen.getByTestId("spawn-machine"), { target: { value: "beta" } });
    const deploy = screen.getByRole("button", { name: "Deploy agent here" }) as HTMLButtonElement;
    expect(deploy.disabled).toBe(true);
    expect(screen.queryByText("in-hub-hub")).toBeNull();
    await waitFor(() => expect(pending).toHaveLength(3));
    await act(async () => pending[2].answer(listing("beta", "/home/beta")));
    await act(async () => pending[1].answer(listing("hub", "/home/hub/x"))); // hub's late answer
    expect(screen.getByText("in-beta-beta")).toBeTruthy();
    expect(screen.queryByText("in-hub-x")).toBeNull();
    fireEvent.click(deploy);
    await waitFor(() => expect(calls.at(-1)?.method).toBe("spawn_agent"));
    expect(calls.at(-1)?.params).toEqual({ path: "/home/beta", machine: "beta" });
  });

  it("shows no machine choice with one machine", async () => {
    const { request } = fakeRegistry();
    render(<SpawnModal request={request} onClose={() => {}} onSpawned={() => {}} machines={[machine("hub", { own: true })]} />);
    await screen.findByText("on-hub");
    expect(screen.queryByTestId("spawn-machine")).toBeNull();
  });
});
