// Screens loaded on first use: the fallback while the chunk loads, the screen once it has, and a notice
// with a reload button (not a blank dashboard) when the chunk cannot be fetched.
import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { onDemand } from "./screens";

describe("onDemand", () => {
  it("shows the fallback, then the loaded screen with its props", async () => {
    let resolve!: (c: (p: { name: string }) => React.ReactNode) => void;
    const Screen = onDemand<{ name: string }>(() => new Promise((r) => (resolve = r)), <p>waiting</p>);
    render(<Screen name="budget" />);
    expect(screen.getByText("waiting")).toBeTruthy();
    resolve(({ name }) => <p>screen {name}</p>);
    expect(await screen.findByText("screen budget")).toBeTruthy();
  });

  it("a chunk that cannot be fetched shows a reload notice; opening the screen again tries again", async () => {
    let calls = 0;
    const Screen = onDemand<object>(() =>
      ++calls === 1 ? Promise.reject(new TypeError("Failed to fetch dynamically imported module")) : Promise.resolve(() => <p>back online</p>),
    );
    const first = render(<Screen />);
    expect((await screen.findByTestId("load-failed")).textContent).toContain("could not be loaded");
    expect(screen.getByRole("button", { name: "Reload the page" })).toBeTruthy();
    first.unmount();
    render(<Screen />);
    expect(await screen.findByText("back online")).toBeTruthy();
    expect(calls).toBe(2);
  });
});
