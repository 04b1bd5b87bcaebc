import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
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
    });
    render(<SessionsView request={reg.request} connected onSessionEvent={reg.onSessionEvent} onOpen={() => undefined} />);
    await screen.findByText("second");
    expect(screen.getByTestId("index-progress").textContent).toContain("box: 1 of 4 files");
    fireEvent.click(screen.getByTestId("sessions-more"));
    await screen.findByText("third");
    expect(reg.calls[1]).toEqual(["list_sessions", { limit: 50, before: "CUR" }]);
    expect(screen.getAllByTestId("session-row")).toHaveLength(3);
    expect(screen.queryByTestId("sessions-more")).toBeNull();
    reg.push({ event: "index_progress", machine: "box", files_done: 4, files_total: 4, done: true });
    expect(screen.queryByTestId("index-progress")).toBeNull();
  });

  it("shows a search's hits as each machine answers and opens a hit at its entry", async () => {
    const reg = registry({
      list_sessions: () => ({ sessions: [], cursor: null }),
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

describe("a snippet", () => {
  it("is text, never markup from the server", () => {
    const { container } = render(<Snippet text={'<img src=x onerror="alert(1)"> whale'} highlights={[[31, 36]]} />);
    expect(container.querySelector("img")).toBeNull();
    expect(container.querySelector("mark")?.textContent).toBe("whale");
    expect(container.textContent).toBe('<img src=x onerror="alert(1)"> whale');
  });
});
