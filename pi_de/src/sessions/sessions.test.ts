import { describe, expect, it } from "vitest";
import type { ReadSessionResult, SearchHit, SessionInfo } from "../protocol/types";
import { activeFilters, addMachinePages, addPage, ago, applyPage, dateRange, emptyList, filtersLabel, folders, localDay, presetDays, presetOf, indexProgress, listableMachines, mergedHits, noSearch, progressText, searchDone, searchFrame, searchStarted, sessionHref, snippetPieces } from "./sessions";

const s = (id: string, extra: Partial<SessionInfo> = {}): SessionInfo => ({ id, machine: "box", path: `/p/${id}.jsonl`, ...extra });
const hit = (id: string, score: number, machine = "box"): SearchHit => ({ id, machine, path: `/p/${id}`, entry_id: `e-${id}`, snippet: id, score });

describe("the session list", () => {
  it("appends pages in order, keeps one row per session, and replaces on a first page", () => {
    let l = addPage(emptyList, { sessions: [s("a"), s("b")], cursor: "c1" }, true);
    expect(l.loaded).toBe(true);
    l = addPage(l, { sessions: [s("b", { name: "renamed" }), s("c")], cursor: null }, false);
    expect(l.sessions.map((x) => x.id)).toEqual(["a", "b", "c"]);
    expect(l.sessions[1].name).toBe("renamed");
    expect(l.cursor).toBeNull();
    // the same id on another machine is another session
    l = addPage(l, { sessions: [s("a", { machine: "other" })], cursor: null }, false);
    expect(l.sessions).toHaveLength(4);
    expect(addPage(l, { sessions: [s("z")], cursor: "c9" }, true).sessions.map((x) => x.id)).toEqual(["z"]);
  });

  it("offers every folder seen, once, sorted, also after filtering to one", () => {
    expect(folders(["/b"], [s("1", { cwd: "/a" }), s("2", { cwd: "/b" }), s("3", { cwd: null })])).toEqual(["/a", "/b"]);
  });
});

describe("search results", () => {
  it("shows each machine's hits as they arrive, best first, and ignores another query's frames", () => {
    let st = searchStarted("narwhal", "q1", ["a", "b"]);
    expect(searchDone(st)).toBe(false);
    st = searchFrame(st, { event: "search_results", query_id: "q0", machine: "a", hits: [hit("old", 99)], done: true });
    expect(mergedHits(st)).toEqual([]);
    st = searchFrame(st, { event: "search_results", query_id: "q1", machine: "b", hits: [hit("b1", 2, "b"), hit("b2", 1, "b")], done: true });
    expect(mergedHits(st).map((h) => h.id)).toEqual(["b1", "b2"]);
    expect(searchDone(st)).toBe(false);
    st = searchFrame(st, { event: "search_results", query_id: "q1", machine: "a", hits: [hit("a1", 1.5, "a")], done: true, error: null });
    expect(mergedHits(st).map((h) => h.id)).toEqual(["b1", "a1", "b2"]);
    expect(searchDone(st)).toBe(true);
    // a frame before the answer named the query is not taken
    expect(searchFrame(noSearch, { event: "search_results", query_id: "q1", machine: "a", hits: [hit("x", 1)], done: true })).toBe(noSearch);
  });

  it("keeps a machine's error beside the others' hits", () => {
    let st = searchStarted("x", "q", ["a", "b"]);
    st = searchFrame(st, { event: "search_results", query_id: "q", machine: "a", hits: [], done: true, error: "machine a is not connected" });
    expect(st.machines.a.error).toBe("machine a is not connected");
  });
});

describe("snippet highlights", () => {
  it("cuts the text at the ranges, whole and once", () => {
    expect(snippetPieces("the narwhal migration", [[4, 11]])).toEqual([
      { text: "the ", mark: false },
      { text: "narwhal", mark: true },
      { text: " migration", mark: false },
    ]);
    expect(snippetPieces("ab", [])).toEqual([{ text: "ab", mark: false }]);
    expect(snippetPieces("", [[0, 3]])).toEqual([]);
  });

  it("clips out-of-range, reversed, overlapping and unsorted ranges", () => {
    const pieces = snippetPieces("abcdefgh", [[6, 99], [-3, 2], [1, 4], [5, 5], [7, 3]]);
    expect(pieces.map((p) => p.text).join("")).toBe("abcdefgh");
    expect(pieces.filter((p) => p.mark).map((p) => p.text)).toEqual(["ab", "cd", "gh"]);
  });

  it("counts characters as the server does (code points), so an emoji does not shift the mark", () => {
    expect(snippetPieces("🐋 whale", [[2, 7]]).find((p) => p.mark)?.text).toBe("whale");
  });

  it("never reads the text as markup", () => {
    expect(snippetPieces("<b>x</b>", [[3, 4]])).toEqual([
      { text: "<b>", mark: false },
      { text: "x", mark: true },
      { text: "</b>", mark: false },
    ]);
  });
});

describe("index progress", () => {
  it("shows a machine while it builds and drops it when done", () => {
    let i = indexProgress({}, { event: "index_progress", machine: "box", files_done: 3, files_total: 10 });
    expect(progressText(i)).toBe("box: 3 of 10 files");
    i = indexProgress(i, { event: "index_progress", machine: "box", files_done: 10, files_total: 10, done: true });
    expect(progressText(i)).toBeNull();
  });
});

const page = (cursor: number, n: number, total: number, extra: Partial<ReadSessionResult> = {}): ReadSessionResult => ({
  machine: "box",
  id: "s1",
  path: "/p/s1.jsonl",
  session_id: "x",
  cwd: "/w",
  messages: Array.from({ length: n }, (_, k) => ({ role: "user", content: `m${cursor + k}`, timestamp: 0 })),
  entry_ids: Array.from({ length: n }, (_, k) => `e${cursor + k}`),
  cursor,
  before: cursor,
  end: cursor + n,
  has_more: cursor > 0,
  has_newer: cursor + n < total,
  total_messages: total,
  leaf_id: "leaf",
  ...extra,
});

describe("a past session's pages", () => {
  it("opens at the newest page and prepends older pages like live history", () => {
    let p = applyPage(null, page(100, 100, 200), "first");
    expect(p.view.initialized).toBe(true);
    expect(p.view.cursor).toBe(100);
    expect(p.focus).toBeNull();
    expect(p.leafId).toBe("leaf");
    p = applyPage({ ...p, view: { ...p.view, loadingOlder: true } }, page(0, 100, 200), "older");
    expect(p.view.cursor).toBe(0);
    expect(p.view.messages).toHaveLength(200);
    expect(p.view.loadingOlder).toBe(false);
    // a stale page that does not end where the loaded range starts changes nothing
    expect(applyPage(p, page(50, 10, 200), "older").view.messages).toHaveLength(200);
  });

  it("drops a page of another branch that comes after a branch was chosen", () => {
    const a = applyPage(null, page(100, 100, 200, { leaf_id: "a" }), "first");
    const b = applyPage(a, page(100, 100, 200, { leaf_id: "b" }), "first");
    const olderOfA = page(0, 100, 200, { leaf_id: "a" });
    const p = applyPage({ ...b, view: { ...b.view, loadingOlder: true } }, olderOfA, "older");
    expect(p.view.messages).toBe(b.view.messages);
    expect(p.view.cursor).toBe(100);
    expect(p.view.loadingOlder).toBe(false);
    const q = applyPage({ ...b, hasNewer: true, loadingNewer: true }, page(200, 10, 300, { leaf_id: "a" }), "newer");
    expect(q.end).toBe(200);
    expect(q.loadingNewer).toBe(false);
    // the same page of the branch shown is applied
    expect(applyPage(b, page(0, 100, 200, { leaf_id: "b" }), "older").view.messages).toHaveLength(200);
  });

  it("opens at a search hit's entry and appends newer pages", () => {
    let p = applyPage(null, page(10, 100, 300, { focus_entry_id: "e35" }), "first");
    expect(p.focus).toBe(35);
    expect(p.hasNewer).toBe(true);
    p = applyPage(p, page(110, 100, 300), "newer");
    expect(p.view.messages).toHaveLength(200);
    expect(p.end).toBe(210);
  });
});

describe("ago", () => {
  it("says how long ago in words", () => {
    expect(ago(1000, 1000_000 + 30_000)).toBe("just now");
    expect(ago(0, 5)).toBe("");
    expect(ago(1000, (1000 + 7200) * 1000)).toBe("2 h ago");
  });
});

describe("several machines", () => {
  it("lists the own machine first, then online machine services (not offline ones, not agent-only ones)", () => {
    expect(
      listableMachines([
        { name: "zed", online: true, agents: 0, service: true },
        { name: "beta", online: false, agents: 0, service: false },
        { name: "agents-only", online: true, agents: 2, service: false },
        { name: "hub", online: true, agents: 0, own: true },
        { name: "alpha", online: true, agents: 0, service: true },
      ]),
    ).toEqual(["hub", "alpha", "zed"]);
  });

  it("merges machines' pages newest first and keeps each machine's cursor", () => {
    const at = (machine: string, id: string, modified: number) => s(id, { machine, modified });
    let l = addMachinePages(emptyList, [
      { machine: "a", sessions: [at("a", "a1", 5), at("a", "a2", 1)], cursor: "A" },
      { machine: "b", sessions: [at("b", "b1", 3)], cursor: null },
    ], true);
    expect(l.sessions.map((x) => x.id)).toEqual(["a1", "b1", "a2"]);
    expect(l.cursors).toEqual({ a: "A", b: null });
    expect(l.cursor).toBe("A");
    l = addMachinePages(l, [{ machine: "a", sessions: [at("a", "a3", 0)], cursor: null }], false);
    expect(l.sessions.map((x) => x.id)).toEqual(["a1", "b1", "a2", "a3"]);
    expect(l.cursor).toBeNull();
  });

  it("takes frames that came before the search's answer, and marks an unreachable machine", () => {
    const early = [
      { event: "search_results" as const, query_id: "q1", machine: "a", hits: [hit("a1", 1, "a")], done: true },
      { event: "search_results" as const, query_id: "q0", machine: "a", hits: [hit("old", 9, "a")], done: true },
    ];
    let st = searchStarted("x", "q1", ["a", "b"], early);
    expect(mergedHits(st).map((h) => h.id)).toEqual(["a1"]);
    st = searchFrame(st, { event: "search_results", query_id: "q1", machine: "b", hits: [], done: true, error: "machine 'b' is offline", unavailable: true });
    expect(st.machines.b.error).toBe("not reachable: machine 'b' is offline");
    expect(searchDone(st)).toBe(true);
  });

  it("links a session on its machine", () => {
    expect(sessionHref("abc", "alpha beta")).toBe("#/session/abc?machine=alpha+beta");
    expect(sessionHref("abc", null)).toBe("#/session/abc");
  });
});

describe("the date filter", () => {
  const local = (y: number, m: number, d: number) => new Date(y, m - 1, d).getTime() / 1000;

  it("sends local days as [since, until): from's start to the start of the day after to", () => {
    expect(dateRange("", "")).toEqual({});
    expect(dateRange("2026-03-05", "")).toEqual({ since: local(2026, 3, 5) });
    expect(dateRange("", "2026-03-05")).toEqual({ until: local(2026, 3, 6) });
    expect(dateRange("2026-03-05", "2026-03-05")).toEqual({ since: local(2026, 3, 5), until: local(2026, 3, 6) }); // one whole day
    expect(dateRange("2026-12-31", "2026-12-31").until).toBe(local(2027, 1, 1));
  });

  it("refuses from after to, and what is not a day, instead of asking", () => {
    expect(dateRange("2026-03-06", "2026-03-05").error).toBe("From is after To");
    expect(dateRange("yesterday", "").error).toBe("From is not a date");
    expect(dateRange("", "1960-01-01").error).toBe("To is not a date");
  });

  it("has quick choices counted back from today, today included", () => {
    const now = new Date(2026, 2, 5, 15, 30).getTime();
    expect(localDay(now)).toBe("2026-03-05");
    expect(presetDays("", now)).toEqual({ from: "", to: "" });
    expect(presetDays("today", now)).toEqual({ from: "2026-03-05", to: "" });
    expect(presetDays("7d", now)).toEqual({ from: "2026-02-27", to: "" });
    expect(presetDays("30d", now)).toEqual({ from: "2026-02-04", to: "" });
    expect(presetOf("2026-02-27", "", now)).toBe("7d");
    expect(presetOf("", "", now)).toBe("");
    expect(presetOf("2026-02-27", "2026-03-01", now)).toBeNull();
  });
});

describe("the active filters", () => {
  const none = { machine: "", role: "", cwd: "", from: "", to: "" };
  it("counts the machine, the role, the folder and the days once", () => {
    expect(activeFilters(none)).toBe(0);
    expect(activeFilters({ ...none, role: "user" })).toBe(1);
    expect(activeFilters({ ...none, from: "2026-03-01", to: "2026-03-05" })).toBe(1);
    expect(activeFilters({ ...none, to: "2026-03-05" })).toBe(1);
    expect(activeFilters({ machine: "b", role: "tool", cwd: "/w", from: "2026-03-01", to: "" })).toBe(4);
  });
  it("labels the toggle with the count only when some are active", () => {
    expect(filtersLabel(0)).toBe("Filters");
    expect(filtersLabel(2)).toBe("Filters · 2");
  });
});
