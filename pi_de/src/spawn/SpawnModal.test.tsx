import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import type { ListDirectoriesResult } from "../protocol/types";
import { SpawnModal } from "./SpawnModal";

afterEach(cleanup);

describe("SpawnModal directory browser with hostile folder names", () => {
  it("shows newlines and bidi overrides in folder names and the path visibly", async () => {
    const listing: ListDirectoriesResult = {
      home: "/home/u",
      path: "/home/u/evil\u202Egnp.exe",
      parent: "/home/u",
      directories: [
        { name: "-rf\nx", path: "/home/u/evil\u202Egnp.exe/-rf\nx" },
        { name: "a\u2066b\u0007", path: "/home/u/evil\u202Egnp.exe/a\u2066b\u0007" },
      ],
    };
    const request = (async () => listing) as <T>() => Promise<T>;
    const { container } = render(<SpawnModal request={request} onClose={() => {}} onSpawned={() => {}} />);
    await screen.findByText("-rf↵x");
    const text = container.textContent ?? "";
    expect(text).not.toMatch(/[\u202E\u2066\u0007\n]/);
    expect(screen.getByTestId("spawn-path").textContent).toBe("~/evil\\u202Egnp.exe");
    expect(text).toContain("a\\u2066b\\u0007");
  });
});
