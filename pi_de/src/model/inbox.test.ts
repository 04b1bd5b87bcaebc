import { describe, expect, it } from "vitest";
import type { AttentionItem } from "../protocol/types";
import {
  agentsToRead,
  ago,
  emptyInbox,
  hasSomethingToRead,
  inboxCount,
  inboxReducer,
  isInboxEvent,
  itemAgentName,
  itemsByAgent,
  orderedItems,
  readKey,
  titleWithCount,
  type InboxAction,
  type InboxState,
} from "./inbox";

const item = (id: string, node_id: string, kind: AttentionItem["kind"], created_at: number, extra: Partial<AttentionItem> = {}): AttentionItem => ({
  id,
  node_id,
  kind,
  created_at,
  summary: `${kind} ${id}`,
  ...extra,
});

const run = (actions: InboxAction[], s: InboxState = emptyInbox) => actions.reduce(inboxReducer, s);

describe("inbox reducer", () => {
  it("loads a snapshot, then adds, resolves and counts unread from events", () => {
    let s = run([{ event: "sync_started" }, { event: "snapshot", result: { items: [item("a1", "n1", "finished", 10)], unread: { n1: 2, n2: 0 } } }]);
    expect(s.loaded).toBe(true);
    expect(Object.keys(s.items)).toEqual(["a1"]);
    expect(s.unread).toEqual({ n1: 2 });
    s = run(
      [
        { event: "attention_added", item: item("a2", "n2", "approval", 11, { approval_id: "ap" }) },
        { event: "unread_changed", node_id: "n2", unread: 3 },
        { event: "attention_resolved", id: "a1", by: "read" },
        { event: "unread_changed", node_id: "n1", unread: 0 },
      ],
      s,
    );
    expect(Object.keys(s.items)).toEqual(["a2"]);
    expect(s.unread).toEqual({ n2: 3 });
    expect(inboxCount(s)).toBe(1);
  });

  it("never lists an item twice: an add repeats as an upsert, and a reconnect replaces the list", () => {
    let s = run([{ event: "sync_started" }, { event: "snapshot", result: { items: [item("a1", "n1", "finished", 10)], unread: {} } }]);
    s = inboxReducer(s, { event: "attention_added", item: item("a1", "n1", "finished", 10, { summary: "again" }) });
    expect(orderedItems(s).map((i) => [i.id, i.summary])).toEqual([["a1", "again"]]);
    // the connection dropped; meanwhile a1 was resolved and a3 added: the new snapshot replaces everything
    s = run([{ event: "sync_started" }, { event: "snapshot", result: { items: [item("a3", "n1", "error", 12)], unread: { n1: 1 } } }], s);
    expect(Object.keys(s.items)).toEqual(["a3"]);
    expect(s.unread).toEqual({ n1: 1 });
  });

  it("keeps showing the old list until the snapshot arrives, and replays events that raced it", () => {
    let s = run([{ event: "sync_started" }, { event: "snapshot", result: { items: [item("old", "n1", "finished", 1)], unread: {} } }]);
    s = inboxReducer(s, { event: "sync_started" });
    expect(Object.keys(s.items)).toEqual(["old"]);
    // an item added and another resolved before the snapshot's answer, which was taken before both
    s = run(
      [
        { event: "attention_added", item: item("new", "n2", "approval", 5) },
        { event: "attention_resolved", id: "gone", by: "cause" },
        { event: "unread_changed", node_id: "n2", unread: 4 },
      ],
      s,
    );
    expect(Object.keys(s.items).sort()).toEqual(["new", "old"]);
    s = inboxReducer(s, { event: "snapshot", result: { items: [item("gone", "n1", "question", 2)], unread: {} } });
    expect(Object.keys(s.items)).toEqual(["new"]);
    expect(s.unread).toEqual({ n2: 4 });
    expect(s.buffer).toBeNull();
    // after the sync, events are not kept any more
    s = inboxReducer(s, { event: "attention_added", item: item("x", "n2", "finished", 6) });
    expect(s.buffer).toBeNull();
  });

  it("ignores a resolve of an unknown id and odd unread values", () => {
    const s = run([{ event: "attention_resolved", id: "nope", by: "cause" }]);
    expect(s).toBe(emptyInbox);
    const t = run([{ event: "unread_changed", node_id: "n", unread: -5 }]);
    expect(t.unread).toEqual({});
  });

  it("knows its own events", () => {
    expect(isInboxEvent({ event: "attention_added" })).toBe(true);
    expect(isInboxEvent({ event: "unread_changed" })).toBe(true);
    expect(isInboxEvent({ event: "node_updated" })).toBe(false);
  });
});

describe("inbox selectors", () => {
  const s = run([
    { event: "sync_started" },
    {
      event: "snapshot",
      result: {
        items: [
          item("f-old", "n1", "finished", 100),
          item("f-new", "n2", "finished", 300),
          item("ap", "n1", "approval", 50),
          item("err", "n3", "error", 200),
          item("q", "n2", "question", 250),
          item("ex", "n4", "exited", 400),
        ],
        unread: { n5: 2 },
      },
    },
  ]);

  it("orders approvals, questions and errors first, then the rest, newest first within each", () => {
    expect(orderedItems(s).map((i) => i.id)).toEqual(["q", "err", "ap", "ex", "f-new", "f-old"]);
  });

  it("groups by agent in that order", () => {
    const by = itemsByAgent(s);
    expect(by.n1.map((i) => i.id)).toEqual(["ap", "f-old"]);
    expect(by.n2.map((i) => i.id)).toEqual(["q", "f-new"]);
  });

  it("lists the agents that reading clears: unread output or a finished/error/exited item", () => {
    expect(agentsToRead(s)).toEqual(["n1", "n2", "n3", "n4", "n5"]);
    const onlyApproval = run([{ event: "sync_started" }, { event: "snapshot", result: { items: [item("ap", "n1", "approval", 1)], unread: {} } }]);
    expect(agentsToRead(onlyApproval)).toEqual([]);
    expect(hasSomethingToRead(onlyApproval, "n1")).toBe(false);
    expect(readKey(onlyApproval, "n1")).toBeNull();
  });

  it("a read key changes with new output, not with nothing new", () => {
    const k1 = readKey(s, "n5");
    expect(k1).toBe("n5|2|");
    const more = inboxReducer(s, { event: "unread_changed", node_id: "n5", unread: 3 });
    expect(readKey(more, "n5")).not.toBe(k1);
    expect(readKey(inboxReducer(s, { event: "attention_resolved", id: "nope", by: "read" }), "n5")).toBe(k1);
    expect(readKey(s, "n1")).toBe("n1|0|f-old");
  });

  it("names the agent and says when", () => {
    expect(itemAgentName({ node_id: "n", session_name: "fix it", cwd: "/h/app" })).toBe("fix it");
    expect(itemAgentName({ node_id: "n", session_name: null, cwd: "/h/app/" })).toBe("app");
    expect(itemAgentName({ node_id: "n" })).toBe("n");
    expect(ago(100, 130)).toBe("just now");
    expect(ago(100, 100 + 5 * 60)).toBe("5m ago");
    expect(ago(0, 3 * 3600)).toBe("3h ago");
    expect(ago(0, 2 * 86400)).toBe("2d ago");
  });

  it("puts the count in the title", () => {
    expect(titleWithCount("Pi-DE", 0)).toBe("Pi-DE");
    expect(titleWithCount("Pi-DE", 3)).toBe("(3) Pi-DE");
    expect(titleWithCount("Pi-DE", 1000)).toBe("(99+) Pi-DE");
  });
});
