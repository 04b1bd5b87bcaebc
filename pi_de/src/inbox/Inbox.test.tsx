import { act, cleanup, fireEvent, render, renderHook, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AttentionItem, NodeInfo } from "../protocol/types";
import { emptyInbox, inboxReducer, type InboxState } from "../model/inbox";
import { Inbox } from "./Inbox";
import type { InboxActions } from "./useInboxActions";
import { useMarkRead } from "./useMarkRead";
import { badgeText } from "./favicon";

const now = Date.now() / 1000;
const item = (id: string, node_id: string, kind: AttentionItem["kind"], extra: Partial<AttentionItem> = {}): AttentionItem => ({
  id,
  node_id,
  kind,
  created_at: now - 120,
  summary: `${kind} ${id}`,
  cwd: `/srv/${node_id}`,
  machine: "box",
  ...extra,
});
const node = (id: string, extra: Partial<NodeInfo> = {}): NodeInfo => ({ id, machine: "box", cwd: `/srv/${id}`, port: 1, status: "active", activity: "idle", ...extra });
const state = (items: AttentionItem[], unread: Record<string, number> = {}): InboxState =>
  inboxReducer(emptyInbox, { event: "snapshot", result: { items, unread } });

function actions(): InboxActions & { calls: unknown[][] } {
  const calls: unknown[][] = [];
  const rec =
    (name: string) =>
    (...a: unknown[]) => {
      calls.push([name, ...a]);
      return Promise.resolve();
    };
  return { calls, decide: rec("decide"), reply: rec("reply"), abort: rec("abort"), dismiss: rec("dismiss"), markRead: rec("markRead") } as InboxActions & { calls: unknown[][] };
}

afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
});

describe("Inbox", () => {
  it("says what will appear when there is nothing", () => {
    render(<Inbox inbox={state([])} nodes={{}} several={false} actions={actions()} onOpen={() => {}} />);
    expect(screen.getByTestId("inbox-empty").textContent).toMatch(/waiting for your decision/);
    expect((screen.getByTestId("inbox-mark-all-read") as HTMLButtonElement).disabled).toBe(true);
  });

  it("lists items urgent first with name, folder and plain summary; markup stays text", () => {
    const items = [
      item("f1", "n1", "finished", { session_name: "fix login", summary: "<b>done</b> **bold**" }),
      item("ap", "n2", "approval", { approval_id: "a-1", tool_name: "bash", summary: "touch x" }),
    ];
    const { container } = render(<Inbox inbox={state(items)} nodes={{ n1: node("n1"), n2: node("n2") }} several={false} actions={actions()} onOpen={() => {}} />);
    const rows = screen.getAllByTestId("inbox-item");
    expect(rows.map((r) => r.dataset.itemId)).toEqual(["ap", "f1"]);
    expect(rows[1].textContent).toContain("fix login");
    expect(rows[1].textContent).toContain("/srv/n1");
    expect(rows[1].textContent).toContain("<b>done</b> **bold**");
    expect(container.querySelector("b")).toBeNull();
    expect(rows[0].textContent).toContain("n2"); // no session name: the folder's name
    expect(rows[0].textContent).toContain("2m ago");
    expect(rows[0].textContent).not.toContain("box"); // one machine: not named
  });

  it("allow, deny with a reason, reply, dismiss and open call their actions", async () => {
    const a = actions();
    const opened: string[] = [];
    const items = [item("ap", "n2", "approval", { approval_id: "a-1" }), item("f1", "n1", "finished")];
    render(<Inbox inbox={state(items)} nodes={{ n1: node("n1"), n2: node("n2") }} several actions={a} onOpen={(id) => opened.push(id)} />);
    await act(async () => fireEvent.click(screen.getByTestId("inbox-allow")));
    expect(a.calls[0][0]).toBe("decide");
    expect((a.calls[0][1] as AttentionItem).id).toBe("ap");
    expect(a.calls[0][2]).toBe("allow");
    expect(screen.getByTestId("inbox-done").textContent).toBe("Allowed");

    await act(async () => fireEvent.click(screen.getByTestId("inbox-reply")));
    fireEvent.change(screen.getByTestId("inbox-reply-text"), { target: { value: "carry on" } });
    await act(async () => fireEvent.click(screen.getByTestId("inbox-reply-send")));
    expect(a.calls[1].slice(0, 1).concat(a.calls[1].slice(2))).toEqual(["reply", "carry on"]);

    fireEvent.click(screen.getAllByTestId("inbox-open")[1]);
    expect(opened).toEqual(["n1"]);
    await act(async () => fireEvent.click(screen.getAllByTestId("inbox-dismiss")[1]));
    expect(a.calls[2][0]).toBe("dismiss");
    expect(screen.getAllByTestId("inbox-item")[0].textContent).toContain("box"); // several machines: named
  });

  it("deny asks for an optional reason first", async () => {
    const a = actions();
    render(<Inbox inbox={state([item("ap", "n2", "approval", { approval_id: "a-1" })])} nodes={{ n2: node("n2") }} several={false} actions={a} onOpen={() => {}} />);
    fireEvent.click(screen.getByTestId("inbox-deny"));
    fireEvent.change(screen.getByTestId("inbox-deny-reason"), { target: { value: "not here" } });
    await act(async () => fireEvent.click(screen.getByTestId("inbox-deny-confirm")));
    expect(a.calls[0].slice(2)).toEqual(["deny", "not here"]);
  });

  it("no decide/reply/abort for an agent that is not live; abort while it works", () => {
    const items = [item("ap", "gone", "approval", { approval_id: "a-1" }), item("s", "busy", "finished")];
    render(<Inbox inbox={state(items)} nodes={{ busy: node("busy", { activity: "working" }) }} several={false} actions={actions()} onOpen={() => {}} />);
    const [gone, busy] = screen.getAllByTestId("inbox-item");
    expect(gone.querySelector("[data-testid=inbox-allow]")).toBeNull();
    expect(gone.querySelector("[data-testid=inbox-open]")).toBeNull();
    expect(busy.querySelector("[data-testid=inbox-abort]")).not.toBeNull();
  });

  it("an action's failure is shown on its item", async () => {
    const a = actions();
    a.decide = () => Promise.reject(new Error("already decided elsewhere"));
    render(<Inbox inbox={state([item("ap", "n2", "approval", { approval_id: "a-1" })])} nodes={{ n2: node("n2") }} several={false} actions={a} onOpen={() => {}} />);
    await act(async () => fireEvent.click(screen.getByTestId("inbox-allow")));
    expect(screen.getByTestId("inbox-error").textContent).toBe("already decided elsewhere");
  });

  it("mark all read marks every agent with unread output or a run item", async () => {
    const a = actions();
    render(<Inbox inbox={state([item("f1", "n1", "finished"), item("ap", "n2", "approval")], { n3: 2 })} nodes={{}} several={false} actions={a} onOpen={() => {}} />);
    await act(async () => fireEvent.click(screen.getByTestId("inbox-mark-all-read")));
    expect(a.calls).toEqual([["markRead", ["n1", "n3"]]]);
  });

  it("the phone's first screen shows the top few and a way to all", () => {
    const items = Array.from({ length: 8 }, (_, i) => item(`f${i}`, `n${i}`, "finished"));
    const all: number[] = [];
    render(<Inbox inbox={state(items)} nodes={{}} several={false} actions={actions()} onOpen={() => {}} limit={5} onShowAll={() => all.push(1)} />);
    expect(screen.getAllByTestId("inbox-item")).toHaveLength(5);
    fireEvent.click(screen.getByTestId("inbox-show-all"));
    expect(all).toEqual([1]);
  });
});

describe("mark read while a person looks", () => {
  it("one mark_read per moment: when looking starts with something to read, and again only for new output", async () => {
    vi.spyOn(document, "hasFocus").mockReturnValue(true);
    const marks: string[][] = [];
    const markRead = (ids: string[]) => (marks.push(ids), Promise.resolve());
    let inbox = state([item("f1", "n1", "finished")], { n1: 2 });
    const hook = renderHook(({ at, ib }) => useMarkRead("n1", at, ib, markRead), { initialProps: { at: false, ib: inbox } });
    expect(marks).toEqual([]); // not at the latest message: not read
    hook.rerender({ at: true, ib: inbox });
    expect(marks).toEqual([["n1"]]);
    hook.rerender({ at: true, ib: inbox });
    hook.rerender({ at: true, ib: { ...inbox } });
    expect(marks).toHaveLength(1); // re-renders are not new moments
    inbox = inboxReducer(inbox, { event: "unread_changed", node_id: "n1", unread: 3 });
    hook.rerender({ at: true, ib: inbox });
    expect(marks).toHaveLength(2); // new output while looking
    // cleared: nothing to read, nothing sent
    inbox = inboxReducer(inboxReducer(inbox, { event: "unread_changed", node_id: "n1", unread: 0 }), { event: "attention_resolved", id: "f1", by: "read" });
    hook.rerender({ at: true, ib: inbox });
    expect(marks).toHaveLength(2);
  });

  it("a page without focus does not read", () => {
    vi.spyOn(document, "hasFocus").mockReturnValue(false);
    const marks: string[][] = [];
    renderHook(() => useMarkRead("n1", true, state([], { n1: 1 }), (ids) => (marks.push(ids), Promise.resolve())));
    expect(marks).toEqual([]);
  });

  it("the favicon says up to 9, then 9+", () => {
    expect([badgeText(1), badgeText(9), badgeText(10)]).toEqual(["1", "9", "9+"]);
  });
});

describe("Inbox folder", () => {
  it("shows a deep folder as its last two parts, the whole path in the tooltip", () => {
    const deep = "/tmp/pytest-of-u/pytest-1/test_x/pi/work/website";
    render(<Inbox inbox={state([item("f1", "n1", "finished", { cwd: deep })])} nodes={{ n1: node("n1", { cwd: deep }) }} several={false} actions={actions()} onOpen={() => {}} />);
    const folder = document.querySelector(".inbox-folder")!;
    expect(folder.textContent).toBe("…/work/website");
    expect(folder.getAttribute("title")).toBe(deep);
  });
});
