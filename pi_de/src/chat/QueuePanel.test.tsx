import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { QueuePanel } from "./QueuePanel";
import { MessageView } from "./MessageView";

afterEach(cleanup);

describe("queue above the composer", () => {
  it("a held follow-up can be edited and cancelled; a steer in pi's queue says it cannot be withdrawn", () => {
    const onEdit = vi.fn();
    const onCancel = vi.fn();
    render(
      <QueuePanel
        pending={[
          { id: "s", text: "steer me", attachments: [], deliverAs: "steer", state: "acked" },
          { id: "h", text: "later please", attachments: [{ name: "a.txt", mime_type: "text/plain", data: "aGk=" }], deliverAs: "followUp", state: "held" },
          { id: "x", text: "to an idle pi", attachments: [], state: "sending" },
        ]}
        onEdit={onEdit}
        onCancel={onCancel}
      />,
    );
    const items = screen.getAllByText(/steer me|later please/);
    expect(items).toHaveLength(2);
    expect(screen.queryByText("to an idle pi")).toBeNull(); // not queued: shown in the conversation
    expect(screen.getByText(/pi has no way to withdraw it/)).toBeTruthy();
    expect(screen.getByTestId("file-chip").textContent).toContain("a.txt");
    fireEvent.click(screen.getByRole("button", { name: /Edit queued prompt later/ }));
    const box = screen.getByLabelText("Edit queued prompt");
    fireEvent.change(box, { target: { value: "later, edited" } });
    fireEvent.keyDown(box, { key: "Enter" });
    expect(onEdit).toHaveBeenCalledWith("h", "later, edited");
    fireEvent.click(screen.getByRole("button", { name: /Cancel queued prompt later/ }));
    expect(onCancel).toHaveBeenCalledWith("h");
    expect(screen.getAllByRole("button")).toHaveLength(2); // the steer has none
  });
});

describe("user message attachments", () => {
  const tools = { results: new Map(), live: {}, running: false, waiting: new Set<string>() };
  it("text files are chips and images thumbnails, not <file> markup", () => {
    const m = {
      role: "user",
      content: [
        { type: "text", text: 'see these\n\n<file name="notes.md">\n# hi\n</file>' },
        { type: "image", data: "iVBORw0KGgo=", mimeType: "image/png" },
      ],
    };
    const { container } = render(<MessageView m={m as any} tools={tools} />);
    expect(container.textContent).not.toContain("<file");
    expect(container.querySelector(".user-text")?.textContent).toBe("see these");
    expect(screen.getByTestId("file-chip").textContent).toContain("notes.md");
    expect((screen.getByTestId("image-thumb") as HTMLImageElement).src).toBe("data:image/png;base64,iVBORw0KGgo=");
  });
});
