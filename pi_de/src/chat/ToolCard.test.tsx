import { cleanup, render } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { ToolCard } from "./ToolCard";

afterEach(cleanup);

describe("ToolCard while its call waits for a decision", () => {
  it("says it waits for you instead of spinning as if it ran", () => {
    const { container } = render(<ToolCard name="bash" args={{ command: "touch made.txt" }} done={false} waiting />);
    const card = container.querySelector(".tool-card")!;
    expect(card.getAttribute("data-state")).toBe("waiting");
    expect(card.querySelector(".spinner")).toBeNull();
    expect(card.textContent).toContain("waiting for your decision");
    expect(card.textContent).not.toContain("waiting for output");
  });

  it("a call that is decided and running spins again", () => {
    const { container } = render(<ToolCard name="bash" args={{ command: "ls" }} done={false} />);
    expect(container.querySelector(".tool-card")!.getAttribute("data-state")).toBe("pending");
    expect(container.querySelector(".spinner")).not.toBeNull();
  });
});
