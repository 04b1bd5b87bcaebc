import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
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

describe("SpawnModal worktree choice", () => {
  const listing = (git: boolean): ListDirectoriesResult => ({ home: "/h", path: "/h/app", parent: "/h", directories: [], git });

  it("offers a new worktree only in a git repository, off by default, and sends its branch", async () => {
    const calls: [string, Record<string, unknown> | undefined][] = [];
    const request = (async (method: string, params?: Record<string, unknown>) => {
      calls.push([method, params]);
      return method === "list_directories" ? listing(true) : { node_id: "n1" };
    }) as unknown as <T>(method: string, params?: Record<string, unknown>) => Promise<T>;
    render(<SpawnModal request={request} onClose={() => {}} onSpawned={() => {}} />);
    const box = await screen.findByLabelText("New worktree on a new branch");
    expect((box as HTMLInputElement).checked).toBe(false);
    fireEvent.click(box);
    const deploy = screen.getByRole("button", { name: "Deploy agent here" });
    expect((deploy as HTMLButtonElement).disabled).toBe(true); // a branch name is needed
    expect(screen.queryByLabelText("New folder name")).toBeNull();
    fireEvent.change(screen.getByLabelText("Branch name"), { target: { value: " feat/x " } });
    fireEvent.click(deploy);
    await waitFor(() => expect(calls.at(-1)?.[0]).toBe("spawn_agent"));
    expect(calls.at(-1)?.[1]).toEqual({ path: "/h/app", worktree: { branch: "feat/x" } });
  });

  it("shows no worktree choice outside a repository", async () => {
    const request = (async () => listing(false)) as <T>() => Promise<T>;
    render(<SpawnModal request={request} onClose={() => {}} onSpawned={() => {}} />);
    await screen.findByLabelText("New folder name");
    expect(screen.queryByTestId("spawn-worktree")).toBeNull();
  });
});

describe("SpawnModal says where pi starts", () => {
  it("names the folder in words and how to pick another", async () => {
    const listing: ListDirectoriesResult = { home: "/h", path: "/h", parent: null, directories: [{ name: "app", path: "/h/app" }] };
    const request = (async () => listing) as <T>() => Promise<T>;
    const { container } = render(<SpawnModal request={request} onClose={() => {}} onSpawned={() => {}} />);
    await screen.findByText("app");
    expect(container.querySelector(".spawn-where")?.textContent).toMatch(/^Start pi in ~Open a folder below/);
  });
});
