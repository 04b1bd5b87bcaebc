import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { NodeInfo } from "../protocol/types";
import { PushSettings } from "./PushSettings";
import type { PushControl } from "./usePush";

function control(over: Partial<PushControl> = {}): PushControl {
  return {
    unsupported: null,
    offered: true,
    device: null,
    allKinds: ["approval", "finished"],
    busy: false,
    error: null,
    enable: vi.fn(async () => undefined),
    disable: vi.fn(async () => undefined),
    setPrefs: vi.fn(async () => undefined),
    ...over,
  };
}

const nodes = { n1: { id: "n1", machine: "m", cwd: "/w/todo-api", port: 1, session_name: null } as unknown as NodeInfo };

afterEach(cleanup);

describe("PushSettings", () => {
  it("is absent when the hypivisor offers no push", () => {
    const { container } = render(<PushSettings push={control({ offered: false })} nodes={nodes} />);
    expect(container.textContent).toBe("");
  });

  it("offers to turn push on", () => {
    const push = control();
    render(<PushSettings push={push} nodes={nodes} />);
    fireEvent.click(screen.getByTestId("push-settings-toggle"));
    fireEvent.click(screen.getByTestId("push-enable"));
    expect(push.enable).toHaveBeenCalled();
  });

  it("explains what still works without a secure context", () => {
    render(<PushSettings push={control({ unsupported: "needs https (or localhost)" })} nodes={nodes} />);
    fireEvent.click(screen.getByTestId("push-settings-toggle"));
    expect(screen.getByText(/needs https/).textContent).toMatch(/inbox and in-page notices still work/);
  });

  it("switches kinds and mutes agents on this device", () => {
    const push = control({ device: { device_id: "d", subscribed: true, kinds: ["approval", "finished"], muted: [] } });
    render(<PushSettings push={push} nodes={nodes} />);
    fireEvent.click(screen.getByTestId("push-settings-toggle"));
    fireEvent.click(screen.getByTestId("push-kind-finished"));
    expect(push.setPrefs).toHaveBeenLastCalledWith(["approval"], []);
    fireEvent.click(screen.getByTestId("push-mute-n1"));
    expect(push.setPrefs).toHaveBeenLastCalledWith(["approval", "finished"], ["n1"]);
    expect(screen.getByText("todo-api")).toBeTruthy(); // no session name: the folder's name
    fireEvent.click(screen.getByTestId("push-disable"));
    expect(push.disable).toHaveBeenCalled();
  });
});
