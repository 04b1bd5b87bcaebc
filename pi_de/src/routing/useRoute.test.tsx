import { act, renderHook, waitFor } from "@testing-library/react";
import { beforeEach, describe, expect, it } from "vitest";
import { HOME } from "./route";
import { useRoute } from "./useRoute";

beforeEach(() => history.replaceState(null, "", "#/"));

describe("useRoute", () => {
  it("reads the hash, pushes screens and follows Back", async () => {
    history.replaceState(null, "", "#/agent/a");
    const { result } = renderHook(() => useRoute());
    expect(result.current.route).toEqual({ screen: "agent", id: "a" });
    const before = history.length;
    act(() => result.current.navigate({ screen: "agent", id: "b" }));
    expect(location.hash).toBe("#/agent/b");
    expect(history.length).toBe(before + 1);
    act(() => result.current.navigate({ screen: "agent", id: "b" })); // the same screen: no new entry
    expect(history.length).toBe(before + 1);
    act(() => result.current.back(HOME)); // an entry of ours before this one: really go back
    await waitFor(() => expect(result.current.route).toEqual({ screen: "agent", id: "a" }));
  });

  it("back() from a page opened directly stays in the app and replaces the URL", () => {
    history.replaceState(null, "", "#/spawn");
    const { result } = renderHook(() => useRoute());
    const before = history.length;
    act(() => result.current.back(HOME));
    expect(location.hash).toBe("#/");
    expect(result.current.route).toEqual(HOME);
    expect(history.length).toBe(before);
  });

  it("replace swaps the current entry", () => {
    const { result } = renderHook(() => useRoute());
    act(() => result.current.navigate({ screen: "spawn" }));
    const before = history.length;
    act(() => result.current.navigate({ screen: "agent", id: "new" }, { replace: true }));
    expect(location.hash).toBe("#/agent/new");
    expect(history.length).toBe(before);
  });
});
