import { act, cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { SessionInfo } from "../protocol/types";
import type { SessionEvent } from "../connection/useHypivisor";
import { SessionsView, Snippet } from "./SessionsView";

const s = (id: string, prompt: string): SessionInfo => ({ id, machine: "box", path: `/p/${id}.jsonl`, cwd: `/w/${id}`, first_prompt: prompt, message_count: 2, modified: 1 });

/** A fake registry: answers from a script, records every call. */
function registry(answers: Record<string, (params: Record<string, unknown>) => unknown>) {
  const calls: [string, Record<string, unknown>][] = [];
  const listeners = new Set<(e: SessionEvent) => void>();
  const request = <T,>(method: string, params: Record<string, unknown> = {}) => {
    calls.push([method, params]);
    return Promise.resolve(answers[method](params) as T);
  };
  const onSessionEvent = (l: (e: SessionEvent) => void) => {
    listeners.add(l);
    return () => void listeners.delete(l);
  };
  const push = (e: SessionEvent) => act(() => listeners.forEach((l) => l(e)));
  return { calls, request, onSessionEvent, push };
}

afterEach(cleanup);

describe("the Sessions screen", () => {
  it("loads more with the cursor, and shows the index's progress until the build is done", async () => {
    const reg = registry({
      list_sessions: (p) => (p.before ? { sessions: [s("c", "third")], cursor: null } : { sessions: [s("a", "first"), s("b", "second")], cursor: "CUR", machine: "box", indexing: { files_done: 1, files_total: 4 } }),
      list_machines: () => ({ machines: [] }),
    });
    render(<SessionsView request={reg.request} connected onSessionEvent={reg.onSessionEvent} onOpen={() => undefined} />);
    await screen.findByText("second");
    expect(screen.getByTestId("index-progress").textContent).toContain("box: 1 of 4 files");
    fireEvent.click(screen.getByTestId("sessions-more"));
    await screen.findByText("third");
    expect(reg.calls.filter(([m]) => m === "list_sessions").at(-1)).toEqual(["list_sessions", { limit: 50, before: "CUR" }]);
    expect(screen.getAllByTestId("session-row")).toHaveLength(3);
    expect(screen.queryByTestId("sessions-more")).toBeNull();
    reg.push({ event: "index_progress", machine: "box", files_done: 4, files_total: 4, done: true });
    expect(screen.queryByTestId("index-progress")).toBeNull();
  });

  it("shows a search's hits as each machine answers and opens a hit at its entry", async () => {
    const reg = registry({
      list_sessions: () => ({ sessions: [], cursor: null }),
      list_machines: () => ({ machines: [] }),
      search: () => ({ query_id: "q7", machines: ["a", "b"] }),
    });
    const opened: unknown[] = [];
    render(<SessionsView request={reg.request} connected onSessionEvent={reg.onSessionEvent} onOpen={(x) => opened.push(x)} />);
    fireEvent.change(screen.getByTestId("sessions-search"), { target: { value: "narwhal" } });
    fireEvent.submit(screen.getByRole("search"));
    await screen.findByText(/waiting for a, b/);
    reg.push({ event: "search_results", query_id: "q7", machine: "b", done: true, hits: [{ id: "s9", machine: "b", path: "/x", entry_id: "e5", snippet: "the narwhal", highlights: [[4, 11]], score: 1 }] });
    expect(screen.getByText(/waiting for a$/)).toBeTruthy();
    expect(screen.getByText("narwhal").tagName).toBe("MARK");
    reg.push({ event: "search_results", query_id: "q7", machine: "a", done: true, hits: [] });
    expect(screen.getByTestId("search-results").dataset.done).toBe("true");
    fireEvent.click(screen.getByTestId("search-hit").querySelector("button")!);
    expect(opened).toEqual([{ id: "s9", machine: "b", entry: "e5" }]);
  });
});

describe("the date filter", () => {
  const local = (y: number, m: number, d: number) => new Date(y, m - 1, d).getTime() / 1000;

  it("lists and searches within the chosen days, refuses from after to, and re-runs a shown search", async () => {
    const reg = registry({
      list_sessions: () => ({ sessions: [s("a", "first")], cursor: null }),
      list_machines: () => ({ machines: [] }),
      search: () => ({ query_id: "q1", machines: ["box"] }),
    });
    render(<SessionsView request={reg.request} connected onSessionEvent={reg.onSessionEvent} onOpen={() => undefined} />);
    await screen.findByText("first");
    const lists = () => reg.calls.filter(([m]) => m === "list_sessions").map(([, p]) => p);
    expect(screen.getByTestId("sessions-dates-any").getAttribute("aria-pressed")).toBe("true");
    fireEvent.change(screen.getByTestId("sessions-from"), { target: { value: "2026-03-01" } });
    fireEvent.change(screen.getByTestId("sessions-to"), { target: { value: "2026-03-05" } });
    await act(async () => undefined);
    expect(lists().at(-1)).toEqual({ limit: 50, since: local(2026, 3, 1), until: local(2026, 3, 6) });
    expect(screen.getByTestId("sessions-dates-any").getAttribute("aria-pressed")).toBe("false");
    // from after to: said, and nothing asked
    const asked = lists().length;
    fireEvent.change(screen.getByTestId("sessions-from"), { target: { value: "2026-03-09" } });
    await act(async () => undefined);
    expect(screen.getByTestId("sessions-error").textContent).toBe("From is after To");
    expect(lists()).toHaveLength(asked);
    // a quick choice: the last 7 days, today included, open-ended
    fireEvent.click(screen.getByTestId("sessions-dates-7d"));
    await act(async () => undefined);
    const d = new Date();
    expect(lists().at(-1)).toEqual({ limit: 50, since: local(d.getFullYear(), d.getMonth() + 1, d.getDate() - 6) });
    expect(screen.queryByTestId("sessions-error")).toBeNull();
    expect(screen.getByTestId("sessions-dates-7d").getAttribute("aria-pressed")).toBe("true");
    // a search carries the dates; choosing other dates asks again
    fireEvent.change(screen.getByTestId("sessions-search"), { target: { value: "narwhal" } });
    fireEvent.submit(screen.getByRole("search"));
    await act(async () => undefined);
    const searches = () => reg.calls.filter(([m]) => m === "search").map(([, p]) => p);
    expect(searches()).toEqual([{ query: "narwhal", limit: 50, since: lists().at(-1)!.since }]);
    fireEvent.click(screen.getByTestId("sessions-dates-any"));
    await act(async () => undefined);
    expect(searches().at(-1)).toEqual({ query: "narwhal", limit: 50 });
  });
});

describe("several machines", () => {
  const machines = [
    { name: "hub", online: true, agents: 0, own: true },
    { name: "alpha", online: true, agents: 0, service: true },
    { name: "beta", online: false, agents: 0, service: true },
  ];
  const on = (machine: string, id: string, prompt: string, modified: number): SessionInfo => ({ ...s(id, prompt), machine, modified });

  it("lists every online machine merged newest first, and pages each machine with its own cursor", async () => {
    const reg = registry({
      list_machines: () => ({ machines }),
      list_sessions: (p) =>
        p.machine === "alpha"
          ? p.before
            ? { sessions: [on("alpha", "a2", "alpha older", 1)], cursor: null, machine: "alpha" }
            : { sessions: [on("alpha", "a1", "alpha newest", 30)], cursor: "ACUR", machine: "alpha" }
          : { sessions: [on("hub", "h1", "hub middle", 20)], cursor: null, machine: "hub" },
    });
    render(<SessionsView request={reg.request} connected onSessionEvent={reg.onSessionEvent} onOpen={() => undefined} />);
    await screen.findByText("alpha newest");
    await screen.findByText("hub middle");
    expect(screen.getAllByTestId("session-row").map((r) => r.dataset.machine)).toEqual(["alpha", "hub"]);
    expect(reg.calls.filter(([m, p]) => m === "list_sessions" && p.machine === "beta")).toEqual([]); // offline
    fireEvent.click(screen.getByTestId("sessions-more"));
    await screen.findByText("alpha older");
    const last = reg.calls.filter(([m]) => m === "list_sessions").slice(-1);
    expect(last).toEqual([["list_sessions", { limit: 50, machine: "alpha", before: "ACUR" }]]); // hub had no more
    // one machine chosen: only its sessions, and the search asks it alone with the role filter
    fireEvent.change(screen.getByTestId("sessions-machine"), { target: { value: "hub" } });
    // at once, before hub's own answer: the other machines' rows of the merged list are not shown
    expect(screen.queryByText("alpha newest")).toBeNull();
    expect(screen.getAllByTestId("session-row").map((r) => r.dataset.machine)).toEqual(["hub"]);
    await waitFor(() => expect(reg.calls.filter(([m]) => m === "list_sessions").at(-1)).toEqual(["list_sessions", { limit: 50, machine: "hub" }]));
    await act(async () => undefined);
    expect(screen.getAllByTestId("session-row").map((r) => r.dataset.machine)).toEqual(["hub"]);
  });

  it("searches with the role and machine filters; a frame before the answer counts; an unreachable machine says so", async () => {
    let answer: (v: unknown) => void = () => undefined;
    const reg = registry({
      list_machines: () => ({ machines }),
      list_sessions: () => ({ sessions: [], cursor: null }),
      search: () => new Promise((r) => (answer = r)),
    });
    render(<SessionsView request={reg.request} connected onSessionEvent={reg.onSessionEvent} onOpen={() => undefined} />);
    await screen.findByTestId("sessions-machine");
    fireEvent.change(screen.getByTestId("sessions-role"), { target: { value: "tool" } });
    fireEvent.change(screen.getByTestId("sessions-search"), { target: { value: "fixture" } });
    fireEvent.submit(screen.getByRole("search"));
    expect(reg.calls.find(([m]) => m === "search")).toEqual(["search", { query: "fixture", limit: 50, role: "tool" }]);
    reg.push({ event: "search_results", query_id: "q1", machine: "hub", done: true, hits: [{ id: "s1", machine: "hub", path: "/x", entry_id: "e1", snippet: "fixture output", highlights: [[0, 7]], score: 1, role: "tool" }] });
    await act(async () => answer({ query_id: "q1", machines: ["hub", "alpha", "beta"] }));
    expect(screen.getAllByTestId("search-hit").map((h) => h.dataset.role)).toEqual(["tool"]);
    reg.push({ event: "search_results", query_id: "q1", machine: "beta", done: true, hits: [], error: "machine 'beta' is offline", unavailable: true });
    expect(screen.getByText(/beta: not reachable: machine 'beta' is offline/)).toBeTruthy();
    expect(screen.getByText(/waiting for alpha/)).toBeTruthy();
  });
});

describe("a snippet", () => {
  it("is text, never markup from the server", () => {
    const { container } = render(<Snippet text={'<img src=x onerror="alert(1)"> whale'} highlights={[[31, 36]]} />);
    expect(container.querySelector("img")).toBeNull();
    expect(container.querySelector("mark")?.textContent).toBe("whale");
    expect(container.textContent).toBe('<img src=x onerror="alert(1)"> whale');
  });
});

describe("on a phone", () => {
  const phone = (matches: boolean) =>
    vi.stubGlobal("matchMedia", (q: string) => ({ matches: matches && q.includes("max-width"), media: q, addEventListener() {}, removeEventListener() {} }));
  afterEach(() => vi.unstubAllGlobals());

  it("folds the filters behind a toggle that counts the active ones, and they still apply while folded", async () => {
    phone(true);
    const reg = registry({
      list_sessions: () => ({ sessions: [s("a", "first")], cursor: null }),
      list_machines: () => ({ machines: [] }),
    });
    render(<SessionsView request={reg.request} connected onSessionEvent={reg.onSessionEvent} onOpen={() => undefined} />);
    await screen.findByText("first");
    const toggle = screen.getByTestId("sessions-filters-toggle");
    expect(toggle.textContent).toBe("Filters");
    expect(toggle.getAttribute("aria-expanded")).toBe("false");
    expect(screen.getByTestId("sessions-filters").hidden).toBe(true);
    expect(screen.getByTestId("sessions-search")).toBeTruthy();
    fireEvent.click(toggle);
    expect(toggle.getAttribute("aria-expanded")).toBe("true");
    expect(screen.getByTestId("sessions-filters").hidden).toBe(false);
    fireEvent.change(screen.getByTestId("sessions-role"), { target: { value: "user" } });
    fireEvent.change(screen.getByTestId("sessions-from"), { target: { value: "2026-03-01" } });
    fireEvent.change(screen.getByTestId("sessions-to"), { target: { value: "2026-03-05" } });
    expect(toggle.textContent).toBe("Filters · 2");
    fireEvent.click(toggle);
    expect(screen.getByTestId("sessions-filters").hidden).toBe(true);
    expect(toggle.textContent).toBe("Filters · 2");
    const lists = reg.calls.filter(([m]) => m === "list_sessions").map(([, p]) => p);
    expect(lists.at(-1)).toMatchObject({ since: expect.any(Number), until: expect.any(Number) });
  });

  it("shows the filters as they are on a wide screen, with no toggle", async () => {
    phone(false);
    const reg = registry({ list_sessions: () => ({ sessions: [s("a", "first")], cursor: null }), list_machines: () => ({ machines: [] }) });
    render(<SessionsView request={reg.request} connected onSessionEvent={reg.onSessionEvent} onOpen={() => undefined} />);
    await screen.findByText("first");
    expect(screen.queryByTestId("sessions-filters-toggle")).toBeNull();
    expect(screen.getByTestId("sessions-filters").hidden).toBe(false);
  });
});

describe("a session's folder", () => {
  it("shows ~ for the machine's home and a deep path as its last two parts, the whole path in the tooltip", async () => {
    const reg = registry({
      list_sessions: () => ({
        sessions: [
          { ...s("a", "first"), cwd: "/home/u/work/site" },
          { ...s("b", "second"), cwd: "/tmp/pytest-of-root/x/pi/work/website" },
        ],
        cursor: null,
      }),
      list_machines: () => ({ machines: [{ name: "box", own: true, online: true, service: true, agents: 0, home: "/home/u" }] }),
    });
    render(<SessionsView request={reg.request} connected onSessionEvent={reg.onSessionEvent} onOpen={() => undefined} />);
    await screen.findByText("~/work/site");
    const folders = screen.getAllByTestId("session-folder");
    expect(folders.map((f) => f.textContent)).toEqual(["~/work/site", "…/work/website"]);
    expect(folders[1].getAttribute("title")).toBe("/tmp/pytest-of-root/x/pi/work/website");
  });
});
