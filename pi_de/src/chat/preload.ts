// What a conversation fetches on first use beyond its own chunk: the markdown renderer and highlight.js with
// its languages. A page that can fail over to another hypivisor (specs/cluster.md §8) fetches them while its
// origin is up, since no peer serves this page's chunks: after a fail-over its messages still render as
// markdown with highlighted code.
import { LANGUAGES, loadLanguage } from "./highlight";
import { loadMarkdown } from "./Markdown";

/** Fetch the renderer and every language; true when all of them arrived. */
export async function preloadChat(): Promise<boolean> {
  const got = await Promise.all([
    loadMarkdown().then(
      () => true,
      () => false,
    ),
    ...LANGUAGES.map((lang) => loadLanguage(lang)),
  ]);
  return got.every(Boolean);
}
