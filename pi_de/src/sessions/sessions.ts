// Past sessions (specs/sessions.md), the pure parts: the list as pages arrive, one search's results as each
// machine answers, a snippet cut into plain and marked pieces, the index's progress. No I/O.
import type { IndexProgressEvent, MachineInfo, ReadSessionResult, SearchHit, SearchResultsEvent, SessionInfo } from "../protocol/types";
import type { ChatMessage } from "../protocol/pi";
import { initialAgentView, type AgentView } from "../model/agentReducer";
import { routeHash } from "../routing/route";

// ---- the list: pages of list_sessions, newest first -------------------------------------------------------

export interface SessionList {
  sessions: SessionInfo[];
  /** Pass as `before` for the next page; null once the last page is in (of every machine listed). */
  cursor: string | null;
  loaded: boolean;
  /** Each machine's own cursor when several machines are listed together (a cursor is one machine's). */
  cursors?: Record<string, string | null>;
}

export const emptyList: SessionList = { sessions: [], cursor: null, loaded: false };

/** The machines whose sessions can be listed: the hypivisor's own first, then every machine whose service is
 *  online (an offline machine cannot answer; a machine known only from its agents has no service). */
export function listableMachines(machines: MachineInfo[]): string[] {
  const own = machines.filter((m) => m.own).map((m) => m.name);
  const others = machines.filter((m) => !m.own && m.online && m.service).map((m) => m.name).sort();
  return [...own, ...others];
}

/** Pages of several machines listed together ("All machines"): merged newest first (last activity), each
 *  machine's cursor kept for its next page. A machine's failed page is left out (its error is shown apart). */
export function addMachinePages(list: SessionList, pages: { machine: string; sessions: SessionInfo[]; cursor: string | null }[], first: boolean): SessionList {
  let next = first ? { ...emptyList, cursors: {} as Record<string, string | null> } : { ...list, cursors: { ...(list.cursors ?? {}) } };
  for (const p of pages) {
    next = { ...addPage(next, p, false), cursors: { ...next.cursors, [p.machine]: p.cursor } };
  }
  const sessions = next.sessions.map((x, i) => [x, i] as const).sort((a, b) => (b[0].modified ?? 0) - (a[0].modified ?? 0) || a[1] - b[1]).map(([x]) => x);
  const more = Object.values(next.cursors ?? {}).find((c) => c) ?? null;
  return { sessions, cursor: more, loaded: true, cursors: next.cursors };
}

/** Appends a page; a session already listed (same machine and id) keeps its place, with the newer facts. */
export function addPage(list: SessionList, page: { sessions: SessionInfo[]; cursor: string | null }, first: boolean): SessionList {
  const base = first ? [] : list.sessions;
  const at = new Map(base.map((s, i) => [key(s), i]));
  const sessions = [...base];
  for (const s of page.sessions) {
    const i = at.get(key(s));
    if (i === undefined) {
      at.set(key(s), sessions.length);
      sessions.push(s);
    } else sessions[i] = s;
  }
  return { sessions, cursor: page.cursor, loaded: true };
}

function key(s: { machine: string; id: string }): string {
  return `${s.machine}\u0000${s.id}`;
}

/** The folders to filter by: every cwd seen so far, sorted, each once. */
export function folders(seen: Iterable<string>, sessions: SessionInfo[]): string[] {
  const all = new Set(seen);
  for (const s of sessions) if (s.cwd) all.add(s.cwd);
  return [...all].sort();
}

// ---- one search: a frame per machine ----------------------------------------------------------------------

export interface SearchState {
  queryId: string | null;
  query: string;
  /** The machines the answer named, each with its hits once it answered. */
  machines: Record<string, { done: boolean; hits: SearchHit[]; error: string | null }>;
  error: string | null;
}

export const noSearch: SearchState = { queryId: null, query: "", machines: {}, error: null };

/** The search answer: which machines will send a frame. Frames of this query that came before the answer
 *  (``early``) are taken now. */
export function searchStarted(query: string, queryId: string, machines: string[], early: SearchResultsEvent[] = []): SearchState {
  const m: SearchState["machines"] = {};
  for (const name of machines) m[name] = { done: false, hits: [], error: null };
  let s: SearchState = { queryId, query, machines: m, error: null };
  for (const f of early) s = searchFrame(s, f);
  return s;
}

/** A search_results frame: a frame of another query (an older search) is ignored. */
export function searchFrame(s: SearchState, f: SearchResultsEvent): SearchState {
  if (!s.queryId || f.query_id !== s.queryId) return s;
  const prev = s.machines[f.machine];
  const hits = prev && !prev.done ? [...prev.hits, ...f.hits] : f.hits;
  const error = f.error ? (f.unavailable ? `not reachable: ${f.error}` : f.error) : null;
  return { ...s, machines: { ...s.machines, [f.machine]: { done: !!f.done, hits, error } } };
}

export function searchDone(s: SearchState): boolean {
  return Object.values(s.machines).every((m) => m.done);
}

/** Every machine's hits, best first (a machine's own order is kept among equal scores). */
export function mergedHits(s: SearchState): SearchHit[] {
  const all: SearchHit[] = [];
  for (const name of Object.keys(s.machines).sort()) all.push(...s.machines[name].hits);
  return all.map((h, i) => [h, i] as const).sort((a, b) => b[0].score - a[0].score || a[1] - b[1]).map(([h]) => h);
}

// ---- snippets ---------------------------------------------------------------------------------------------

export interface Piece {
  text: string;
  mark: boolean;
}

/** The snippet cut at its highlight ranges ([start, end) in characters). Ranges out of bounds, empty,
 *  reversed or overlapping an earlier one are clipped or dropped: the text is always shown whole, once. */
export function snippetPieces(snippet: string, highlights: number[][] | undefined): Piece[] {
  const chars = Array.from(snippet); // ranges count characters; a surrogate pair is one
  const ranges = (highlights ?? [])
    .filter((r) => Array.isArray(r) && r.length >= 2 && Number.isFinite(r[0]) && Number.isFinite(r[1]))
    .map(([a, b]) => [Math.max(0, Math.floor(a)), Math.min(chars.length, Math.floor(b))] as const)
    .filter(([a, b]) => a < b)
    .sort((x, y) => x[0] - y[0]);
  const out: Piece[] = [];
  let pos = 0;
  for (const [a0, b] of ranges) {
    const a = Math.max(a0, pos);
    if (a >= b) continue;
    if (a > pos) out.push({ text: chars.slice(pos, a).join(""), mark: false });
    out.push({ text: chars.slice(a, b).join(""), mark: true });
    pos = b;
  }
  if (pos < chars.length) out.push({ text: chars.slice(pos).join(""), mark: false });
  return out;
}

// ---- the index's progress ---------------------------------------------------------------------------------

export type Indexing = Record<string, { files_done: number; files_total: number }>;

export function indexProgress(s: Indexing, e: IndexProgressEvent): Indexing {
  const next = { ...s };
  if (e.done) delete next[e.machine];
  else next[e.machine] = { files_done: e.files_done, files_total: e.files_total };
  return next;
}

export function progressText(i: Indexing): string | null {
  const names = Object.keys(i).sort();
  if (!names.length) return null;
  return names.map((n) => `${n}: ${i[n].files_done} of ${i[n].files_total} files`).join(" · ");
}

// ---- the date filter: local days, sent as [since, until) unix seconds --------------------------------------

/** A quick choice of dates: any, today, or the last 7 or 30 days (today included). */
export type DatePreset = "" | "today" | "7d" | "30d";

export const DATE_PRESETS: [DatePreset, string][] = [
  ["", "Any time"],
  ["today", "Today"],
  ["7d", "7 days"],
  ["30d", "30 days"],
];

const DAYS: Record<DatePreset, number> = { "": 0, today: 1, "7d": 7, "30d": 30 };

/** A local day as <input type="date"> writes it (yyyy-mm-dd). */
export function localDay(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** The from/to days (to included, open when empty) of a quick choice, counted back from today. */
export function presetDays(preset: DatePreset, nowMs: number): { from: string; to: string } {
  if (!preset) return { from: "", to: "" };
  const d = new Date(nowMs);
  return { from: localDay(new Date(d.getFullYear(), d.getMonth(), d.getDate() - (DAYS[preset] - 1)).getTime()), to: "" };
}

/** The quick choice these from/to days are (null: a range of the person's own). */
export function presetOf(from: string, to: string, nowMs: number): DatePreset | null {
  return DATE_PRESETS.map(([p]) => p).find((p) => { const r = presetDays(p, nowMs); return r.from === from && r.to === to; }) ?? null; // prettier-ignore
}

function dayStart(day: string, plus = 0): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  if (!m) return null;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + plus);
  return Number.isNaN(d.getTime()) || d.getFullYear() < 1970 ? null : d.getTime() / 1000;
}

/** from/to local days (to included; empty: open) → the wire's half-open [since, until) in unix seconds: since is
 *  the start of `from`, until the start of the day after `to`. A day that is not one, or from after to, is an
 *  error (nothing is asked). */
export function dateRange(from: string, to: string): { since?: number; until?: number; error?: string } {
  const since = from ? dayStart(from) : undefined;
  const until = to ? dayStart(to, 1) : undefined;
  if (since === null) return { error: "From is not a date" };
  if (until === null) return { error: "To is not a date" };
  if (since !== undefined && until !== undefined && since >= until) return { error: "From is after To" };
  return { ...(since !== undefined && { since }), ...(until !== undefined && { until }) };
}

/** The filters that narrow the list and the search: a machine, a role, a folder, the days. */
export interface Filters {
  machine: string;
  role: string;
  cwd: string;
  from: string;
  to: string;
}

/** How many filters narrow the list now (the phone's collapsed "Filters · n"): the machine, the role, the folder,
 *  and the days once (a From/To pair or a quick choice is one filter). */
export function activeFilters(f: Filters): number {
  return [f.machine, f.role, f.cwd, f.from || f.to].filter(Boolean).length;
}

/** The phone's toggle for the filters: "Filters", or "Filters · 2" while two narrow the list. */
export function filtersLabel(active: number): string {
  return active > 0 ? `Filters · ${active}` : "Filters";
}

// ---- formatting -------------------------------------------------------------------------------------------

export function ago(unixSeconds: number | null | undefined, nowMs: number): string {
  if (!unixSeconds) return "";
  const s = Math.max(0, Math.round(nowMs / 1000 - unixSeconds));
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  if (s < 86400 * 30) return `${Math.floor(s / 86400)} d ago`;
  return new Date(unixSeconds * 1000).toISOString().slice(0, 10);
}

export function cost(c: number | undefined): string {
  if (!c) return "";
  return c < 0.01 ? "<$0.01" : `$${c.toFixed(2)}`;
}

// ---- a past session, read-only: read_session pages as the live conversation's view ------------------------

export interface PastView {
  view: AgentView;
  /** Absolute index after the last loaded message; newer messages exist (a page opened at a search hit). */
  end: number;
  hasNewer: boolean;
  loadingNewer: boolean;
  /** The absolute index of the search hit's message, on the first page opened at one. */
  focus: number | null;
  /** The branch shown (a hit on an older branch shows that branch): every later page asks for it. */
  leafId: string | null;
}

/** A read_session page into the view the live components render: "first" replaces, "older" prepends,
 *  "newer" appends. A page that does not fit the loaded range (a stale answer) is ignored. */
export function applyPage(prev: PastView | null, page: ReadSessionResult, kind: "first" | "older" | "newer"): PastView {
  const msgs = page.messages as unknown as ChatMessage[];
  if (kind === "first" || !prev) {
    const i = page.focus_entry_id ? page.entry_ids.indexOf(page.focus_entry_id) : -1;
    return {
      view: { ...initialAgentView, status: "open", initialized: true, initSeq: (prev?.view.initSeq ?? 0) + 1, messages: msgs, cursor: page.cursor, total: page.total_messages, sessionName: page.name ?? null, sessionFile: page.path },
      end: page.end,
      hasNewer: !!page.has_newer,
      loadingNewer: false,
      focus: i >= 0 ? page.cursor + i : null,
      leafId: page.leaf_id,
    };
  }
  const v = prev.view;
  // a page of another branch (asked before a branch was chosen) is stale too: it changes nothing but the flag
  const otherBranch = page.leaf_id !== prev.leafId;
  if (kind === "older") {
    if (otherBranch || page.end !== v.cursor) return { ...prev, view: { ...v, loadingOlder: false } };
    return { ...prev, view: { ...v, messages: [...msgs, ...v.messages], cursor: page.cursor, total: page.total_messages, loadingOlder: false } };
  }
  if (otherBranch || page.cursor !== prev.end) return { ...prev, loadingNewer: false };
  return { ...prev, view: { ...v, messages: [...v.messages, ...msgs], total: page.total_messages }, end: page.end, hasNewer: !!page.has_newer, loadingNewer: false };
}

// ---- branches and forks of a past session -----------------------------------------------------------------

/** Where a session view links to another session: the hash route of that session on the same machine. */
export function sessionHref(id: string, machine: string | null | undefined): string {
  return routeHash({ screen: "session", id, ...(machine ? { machine } : {}) });
}

/** One line per branch point of the shown branch: "after message N", and each branch with its preview. */
export function branchLabel(at: number): string {
  return at === 0 ? "At the start" : `After message ${at}`;
}
