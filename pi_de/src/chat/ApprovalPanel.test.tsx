import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { initialApprovals, type ApprovalsView } from "../model/approvals";
import type { ApprovalRequestMsg } from "../protocol/types";
import { ApprovalPanel } from "./ApprovalPanel";

afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

const bash = (id: string, command: string): ApprovalRequestMsg => ({
  type: "approval_request",
  id,
  tool_call_id: `c-${id}`,
  tool_name: "bash",
  input: { command },
  policy: "writes",
  queued_at: Date.now() / 1000 - 12,
  preview: { kind: "command", command },
  why: "bash",
});

function panel(over: Partial<ApprovalsView>, onDecide = vi.fn(), connected = true) {
  const approvals = { ...initialApprovals, ...over };
  const r = render(<ApprovalPanel approvals={approvals} agent="my session" cwd="/home/u/proj" connected={connected} onDecide={onDecide} />);
  return { ...r, onDecide, rerender: (o: Partial<ApprovalsView>) => r.rerender(<ApprovalPanel approvals={{ ...approvals, ...o }} agent="my session" cwd="/home/u/proj" connected={connected} onDecide={onDecide} />) };
}

describe("ApprovalPanel", () => {
  it("shows nothing when no call waits", () => {
    const { container } = panel({});
    expect(container.textContent).toBe("");
  });

  it("shows the oldest question in full with the queue, the agent, its folder and how long it waited", () => {
    panel({ pending: [bash("a1", "touch made.txt"), bash("a2", "rm -rf build")] });
    expect(screen.getByTestId("approval-queue").textContent).toBe("1 of 2 waiting");
    expect(screen.getByTestId("approval-command-text").textContent).toBe("touch made.txt");
    expect(screen.getByTestId("approval-card").textContent).toContain("my session · ~/proj");
    expect(screen.getByTestId("approval-waited").textContent).toMatch(/^waiting 1[23] s$/);
    expect(screen.getByTestId("approval-next").textContent).toContain("rm -rf build");
  });

  it("Allow, Allow and don't ask again: send the decision", () => {
    const { onDecide } = panel({ pending: [bash("a1", "ls")] });
    fireEvent.click(screen.getByTestId("approval-allow"));
    expect(onDecide).toHaveBeenLastCalledWith("a1", { decision: "allow" });
    fireEvent.click(screen.getByTestId("approval-remember"));
    expect(onDecide).toHaveBeenLastCalledWith("a1", { decision: "allow", remember: true });
  });

  it("Deny takes an optional reason that the model is told", () => {
    const { onDecide } = panel({ pending: [bash("a1", "ls")] });
    fireEvent.click(screen.getByTestId("approval-deny"));
    fireEvent.change(screen.getByTestId("approval-reason"), { target: { value: "  use git clean  " } });
    fireEvent.click(screen.getByTestId("approval-deny-confirm"));
    expect(onDecide).toHaveBeenLastCalledWith("a1", { decision: "deny", reason: "use git clean" });
  });

  it("Deny without a reason sends none; Escape goes back to the choices", () => {
    const { onDecide } = panel({ pending: [bash("a1", "ls")] });
    fireEvent.click(screen.getByTestId("approval-deny"));
    fireEvent.keyDown(screen.getByTestId("approval-reason"), { key: "Escape" });
    expect(screen.queryByTestId("approval-reason")).toBeNull();
    fireEvent.click(screen.getByTestId("approval-deny"));
    fireEvent.keyDown(screen.getByTestId("approval-reason"), { key: "Enter", ctrlKey: true });
    expect(onDecide).toHaveBeenLastCalledWith("a1", { decision: "deny" });
  });

  it("Edit and allow runs the edited bash command, never an empty one", () => {
    const { onDecide } = panel({ pending: [bash("a1", "rm -rf build")] });
    fireEvent.click(screen.getByTestId("approval-edit"));
    const box = screen.getByTestId("approval-command") as HTMLTextAreaElement;
    expect(box.value).toBe("rm -rf build");
    fireEvent.change(box, { target: { value: "   " } });
    expect((screen.getByTestId("approval-edit-confirm") as HTMLButtonElement).disabled).toBe(true);
    fireEvent.change(box, { target: { value: "rm -rf build/tmp" } });
    fireEvent.click(screen.getByTestId("approval-edit-confirm"));
    expect(onDecide).toHaveBeenLastCalledWith("a1", { decision: "allow", input: { command: "rm -rf build/tmp" } });
  });

  it("offers Edit and allow only for bash-like calls", () => {
    const edit: ApprovalRequestMsg = { ...bash("e1", ""), tool_name: "edit", input: { path: "/etc/x", edits: [] }, preview: { kind: "diff", path: "/etc/x", diff: "" } };
    panel({ pending: [edit] });
    expect(screen.queryByTestId("approval-edit")).toBeNull();
    expect(screen.getByTestId("approval-allow")).toBeTruthy();
  });

  it("disables every button once answered, until the outcome arrives", () => {
    const { onDecide } = panel({ pending: [bash("a1", "ls")], answering: ["a1"] });
    for (const id of ["approval-allow", "approval-remember", "approval-edit", "approval-deny"]) expect((screen.getByTestId(id) as HTMLButtonElement).disabled).toBe(true);
    fireEvent.click(screen.getByTestId("approval-allow"));
    expect(onDecide).not.toHaveBeenCalled();
  });

  it("disables the buttons while the link is down", () => {
    panel({ pending: [bash("a1", "ls")] }, vi.fn(), false);
    expect((screen.getByTestId("approval-allow") as HTMLButtonElement).disabled).toBe(true);
  });

  it("renders an edit's diff with added and removed lines, the new-file and truncated flags, and the preview's error", () => {
    const req: ApprovalRequestMsg = {
      ...bash("e1", ""),
      tool_name: "write",
      input: { path: "/tmp/out/a.txt", content: "y\n" },
      why: "write outside the folder",
      preview: { kind: "diff", path: "/tmp/out/a.txt", diff: "--- a.txt\n+++ a.txt\n@@ -1 +1 @@\n-x\n+y\n", new_file: true, truncated: true, error: "could not read the file" },
    };
    const { container } = panel({ pending: [req] });
    expect(screen.getByTestId("approval-diff").textContent).toContain("/tmp/out/a.txt");
    expect(container.querySelector(".diff-add")?.textContent).toBe("+y");
    expect(container.querySelector(".diff-del")?.textContent).toBe("-x");
    expect(container.querySelector(".diff-hunk")?.textContent).toBe("@@ -1 +1 @@");
    expect(screen.getByText("new file")).toBeTruthy();
    expect(screen.getByText("diff truncated")).toBeTruthy();
    expect(screen.getByRole("note").textContent).toBe("could not read the file");
  });

  it("shows a command's hidden characters instead of letting them reorder what runs", () => {
    panel({ pending: [bash("a1", "echo ok #\u202E ~ fr- mr\u202C")] });
    const text = screen.getByTestId("approval-command-text").textContent!;
    expect(text).not.toContain("\u202E");
    expect(text).toContain("\\u202E");
  });

  it("shows other tools' input as JSON", () => {
    panel({ pending: [{ ...bash("m1", ""), tool_name: "fetch_url", input: { url: "https://x" }, preview: { kind: "none" } }] });
    expect(screen.getByTestId("approval-card").textContent).toContain('"url": "https://x"');
  });

  it("when a question closes elsewhere, says how for a few seconds", () => {
    vi.useFakeTimers();
    const { rerender } = panel({ pending: [bash("a1", "ls")] });
    const record = { id: "a1", tool_call_id: "c", tool_name: "bash", summary: "ls", decision: "allow" as const, by: "terminal" as const, decided_at: 0, latency_ms: 5 };
    rerender({ pending: [], lastResolved: { record, seq: 1 } });
    expect(screen.queryByTestId("approval-card")).toBeNull();
    expect(screen.getByTestId("approval-resolved").textContent).toBe("bash ls: allowed in pi's terminal");
    act(() => void vi.advanceTimersByTime(7000));
    expect(screen.queryByTestId("approval-resolved")).toBeNull();
  });
});
