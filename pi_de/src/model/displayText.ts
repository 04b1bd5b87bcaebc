// Names that come from outside (folder names, cwd paths, session, machine and model names) are shown
// through displayText: a legal folder name may hold newlines, control characters or bidi overrides
// that would break a line or reorder the text around it ("evil\u202Egnp.exe" shows as "evilexe.png").
// Every such character becomes visible and inert; everything else is kept as it is.

/** Bidi embedding, override, isolate and mark characters (they reorder text without being seen). */
const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/;
/** C0 and C1 controls, DEL, the byte-order mark / zero-width no-break space. */
const CONTROL = /[\u0000-\u001F\u007F-\u009F\uFEFF]/;
/** Line breaks: CRLF, CR, LF, and the Unicode line and paragraph separators. */
const NEWLINE = /\r\n|[\r\n\u2028\u2029]/g;
const HIDDEN = new RegExp(`${BIDI.source}|${CONTROL.source}`, "g");

/** The visible mark a line break becomes. */
export const NEWLINE_MARK = "↵";

/** `\u202E`-style escape of one UTF-16 code unit. */
export function escapeChar(c: string): string {
  return "\\u" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
}

/** The text with line breaks shown as ↵ and controls / bidi characters as visible `\uXXXX` escapes. */
export function displayText(s: string | null | undefined): string {
  if (!s) return "";
  return s.replace(NEWLINE, NEWLINE_MARK).replace(HIDDEN, escapeChar);
}

/** True when displayText changes the text (the UI says so in a tooltip). */
export function hasHiddenChars(s: string | null | undefined): boolean {
  if (!s) return false;
  NEWLINE.lastIndex = 0;
  HIDDEN.lastIndex = 0;
  const found = NEWLINE.test(s) || HIDDEN.test(s);
  NEWLINE.lastIndex = 0;
  HIDDEN.lastIndex = 0;
  return found;
}

/** Code or a command a person must read before it runs (an approval's bash command, a diff): line
 *  breaks and tabs stay, every other control and bidi character becomes a visible `\uXXXX` escape,
 *  so text that looks harmless cannot hide what runs ("Trojan Source"). */
export function displayCode(s: string | null | undefined): string {
  if (!s) return "";
  return s.replace(/\r\n/g, "\n").replace(CODE_HIDDEN, escapeChar);
}
const CODE_HIDDEN = new RegExp(`${BIDI.source}|[\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F\\uFEFF\\u2028\\u2029]`, "g");
