// A link straight to #/spawn: the dialog lists folders as soon as the registry socket opens, and never sends
// on a socket that is still connecting (a browser throws InvalidStateError there, and the dialog showed it).
import { act, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { App } from "./App";

class FakeWS {
  static all: FakeWS[] = [];
  readyState = 0;
  sent: string[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; wasClean: boolean }) => void) | null = null;
  constructor(public url: string) {
    FakeWS.all.push(this);
  }
  send(f: string) {
    if (this.readyState !== 1) throw new DOMException("Failed to execute 'send' on 'WebSocket': Still in CONNECTING state.", "InvalidStateError");
    this.sent.push(f);
  }
  close() {}
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  recv(f: object) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
}

beforeEach(() => {
  FakeWS.all = [];
  vi.stubGlobal("WebSocket", FakeWS);
  vi.stubGlobal("matchMedia", (q: string) => ({ matches: false, media: q, addEventListener() {}, removeEventListener() {}, addListener() {}, removeListener() {} }));
  location.hash = "#/spawn";
});
afterEach(() => {
  vi.unstubAllGlobals();
  location.hash = "";
});

describe("#/spawn opened directly", () => {
  it("waits for the registry, then lists the folders", async () => {
    render(<App />);
    const ws = FakeWS.all.find((w) => w.url.includes("/ws"))!;
    await new Promise((r) => setTimeout(r, 200)); // the dialog's chunk has had time to load
    expect(screen.queryByText(/CONNECTING|not connected/)).toBeNull();
    act(() => ws.open());
    let ask: { id: number | string; method: string } | undefined;
    await waitFor(() => {
      ask = ws.sent.map((f) => JSON.parse(f)).find((f) => f.method === "list_directories");
      expect(ask).toBeDefined();
    });
    act(() => ws.recv({ jsonrpc: "2.0", id: ask!.id, result: { path: "/home/u", home: "/home/u", parent: null, directories: [{ name: "todo-api", path: "/home/u/todo-api" }] } }));
    expect(await screen.findByText("todo-api")).toBeTruthy();
    expect(screen.queryByText(/CONNECTING|not connected/)).toBeNull();
  });
});
