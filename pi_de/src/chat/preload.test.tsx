// A page that can fail over fetches the conversation's on-demand parts while its origin is up: afterwards a
// message renders as markdown on its first render and every language highlights at once, with no fetch left.
import { render } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { LANGUAGES, highlight } from "./highlight";
import { Markdown } from "./Markdown";
import { preloadChat } from "./preload";

describe("preloadChat", () => {
  it("fetches the markdown renderer and every language", async () => {
    expect(highlight("x = 1", "python")).toBeNull();
    expect(await preloadChat()).toBe(true);
    expect(LANGUAGES.length).toBeGreaterThan(10);
    for (const lang of LANGUAGES) expect(highlight("x", lang), lang).not.toBeNull();
    const { container } = render(<Markdown text="**now**" />);
    expect(container.querySelector("strong")?.textContent).toBe("now");
  });
});
