import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { ApprovalRecord } from "../protocol/types";
import { ApprovalSettings } from "./ApprovalSettings";

afterEach(cleanup);

const rec = (id: string, extra: Partial<ApprovalRecord> = {}): ApprovalRecord => ({
  id,
  tool_call_id: `c-${id}`,
  tool_name: "bash",
  summary: `cmd ${id}`,
  decision: "allow",
  by: "dashboard",
  decided_at: 1_800_000_000,
  latency_ms: 2500,
  ...extra,
});

function settings(over: any = {}, connected = true) {
  const onSetPolicy = vi.fn();
  const approvals = { policy: "writes" as const, rules: [{ tool: "bash", prefix: "git status" }, { tool: "read" }], recent: [], ...over };
  render(<ApprovalSettings approvals={approvals} toolNames={["bash", "read"]} connected={connected} onSetPolicy={onSetPolicy} />);
  return onSetPolicy;
}

describe("ApprovalSettings", () => {
  it("changes the policy and keeps the rules", () => {
    const onSetPolicy = settings();
    expect((screen.getByTestId("policy-select") as HTMLSelectElement).value).toBe("writes");
    fireEvent.change(screen.getByTestId("policy-select"), { target: { value: "all" } });
    expect(onSetPolicy).toHaveBeenLastCalledWith("all");
  });

  it("removes one rule, sending the others", () => {
    const onSetPolicy = settings();
    fireEvent.click(screen.getByRole("button", { name: "Remove rule bash: git status" }));
    expect(onSetPolicy).toHaveBeenLastCalledWith("writes", [{ tool: "read" }]);
  });

  it("adds a rule (tool and optional prefix) and refuses a bad one with a clear message", () => {
    const onSetPolicy = settings();
    fireEvent.change(screen.getByLabelText("Rule tool"), { target: { value: "bash" } });
    fireEvent.change(screen.getByLabelText("Rule command prefix"), { target: { value: "npm test" } });
    fireEvent.click(screen.getByRole("button", { name: "Add rule" }));
    expect(onSetPolicy).toHaveBeenLastCalledWith("writes", [{ tool: "bash", prefix: "git status" }, { tool: "read" }, { tool: "bash", prefix: "npm test" }]);
    onSetPolicy.mockClear();
    fireEvent.change(screen.getByLabelText("Rule tool"), { target: { value: "edit" } });
    fireEvent.change(screen.getByLabelText("Rule command prefix"), { target: { value: "src/" } });
    fireEvent.click(screen.getByRole("button", { name: "Add rule" }));
    expect(onSetPolicy).not.toHaveBeenCalled();
    expect(screen.getByRole("alert").textContent).toBe("only bash and powershell rules take a command prefix");
  });

  it("lists recent decisions newest first: call, decision, who, latency, reason", () => {
    settings({ recent: [rec("1"), rec("2", { decision: "deny", by: "terminal", reason: "no", latency_ms: 340 })] });
    const items = screen.getByTestId("recent-approvals").querySelectorAll("li");
    expect(items[0].textContent).toContain("bash cmd 2");
    expect(items[0].textContent).toMatch(/denied in pi's terminal · .* · after 340 ms · no/);
    expect(items[1].textContent).toMatch(/allowed from a dashboard · .* · after 2\.5 s/);
  });

  it("nothing can be changed while the link is down", () => {
    settings({}, false);
    expect((screen.getByTestId("policy-select") as HTMLSelectElement).disabled).toBe(true);
    expect((screen.getByRole("button", { name: "Add rule" }) as HTMLButtonElement).disabled).toBe(true);
  });
});
