import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ExitedBanner, exitedAt } from "./ExitedBanner";

afterEach(cleanup);

describe("ExitedBanner", () => {
  it("says when pi exited, in local HH:MM", () => {
    const at = new Date(2026, 0, 2, 9, 5).getTime();
    expect(exitedAt(at)).toBe("09:05");
    render(<ExitedBanner at={at} sessionFile="/h/s.jsonl" onResume={async () => {}} />);
    expect(screen.getByTestId("exited-banner").textContent).toContain("pi exited at 09:05");
  });

  it("offers a resume only with a session file, and shows why one failed", async () => {
    const { rerender } = render(<ExitedBanner at={0} sessionFile={null} onResume={null} />);
    expect((screen.getByRole("button", { name: "Resume in a new pi" }) as HTMLButtonElement).disabled).toBe(true);
    const onResume = vi.fn().mockRejectedValue(new Error("session_file belongs to another folder\u202E"));
    rerender(<ExitedBanner at={0} sessionFile="/h/s.jsonl" onResume={onResume} />);
    fireEvent.click(screen.getByRole("button", { name: "Resume in a new pi" }));
    await waitFor(() => expect(screen.getByTestId("resume-error").textContent).toBe("session_file belongs to another folder\\u202E"));
    expect(onResume).toHaveBeenCalledOnce();
    expect((screen.getByRole("button", { name: "Resume in a new pi" }) as HTMLButtonElement).disabled).toBe(false); // try again
  });
});
