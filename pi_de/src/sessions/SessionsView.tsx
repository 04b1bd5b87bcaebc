// The Sessions screen (#/sessions, specs/sessions.md): every past pi session of the machines, newest first, a
// page at a time ("Load more" with the cursor), a machine, folder, date and role filter, the index's progress while it
// is built, and a search whose results show as each machine answers. "All machines" lists every online machine
// (one list_sessions each, merged newest first; a cursor is one machine's) and searches every machine. Every text from a session file is shown inertly
// (SafeText; a snippet's matches as <mark> around plain text).
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { ListMachinesResult, ListSessionsResult, MachineInfo, SearchHit, SearchResult, SearchResultsEvent, SessionInfo } from "../protocol/types";
import type { SessionEvent } from "../connection/useHypivisor";
import { SafeText } from "../ui/SafeText";
import { displayText } from "../model/displayText";
import { folderName } from "../model/rosterReducer";
import { shortPath } from "../model/nodeMeta";
import { useMedia } from "../ui/useMedia";
import { activeFilters, addMachinePages, addPage, ago, cost, DATE_PRESETS, dateRange, emptyList, filtersLabel, folders, presetDays, presetOf, indexProgress, listableMachines, mergedHits, noSearch, progressText, searchDone, searchFrame, searchStarted, snippetPieces, type Indexing } from "./sessions";
import "./sessions.css";

type Request = <T>(method: string, params?: Record<string, unknown>, timeoutMs?: number) => Promise<T>;

interface Props {
  request: Request;
  connected: boolean;
  onSessionEvent(listener: (e: SessionEvent) => void): () => void;
  onOpen(s: { id: string; machine: string; entry?: string }): void;
  onBack?(): void;
}

const PAGE = 50;
const ROLES: [string, string][] = [
  ["", "Any role"],
  ["user", "User"],
  ["assistant", "Assistant"],
  ["tool", "Tool output"],
];
const EARLY_FRAMES = 100; // search_results frames kept until their search's answer names the query
const PHONE = "(max-width: 767px)"; // Pi-DE's phone layout: the filters fold behind a toggle

export function SessionsView({ request, connected, onSessionEvent, onOpen, onBack }: Props) {
  const [list, setList] = useState(emptyList);
  const [cwd, setCwd] = useState("");
  const [seenFolders, setSeenFolders] = useState<string[]>([]);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [indexing, setIndexing] = useState<Indexing>({});
  const [query, setQuery] = useState("");
  const [search, setSearch] = useState(noSearch);
  const [machines, setMachines] = useState<MachineInfo[]>([]);
  const [machine, setMachine] = useState("");
  const [role, setRole] = useState("");
  const [from, setFrom] = useState(""); // local days (yyyy-mm-dd), to included; empty: open
  const [to, setTo] = useState("");
  const phone = useMedia(PHONE);
  const [filtersOpen, setFiltersOpen] = useState(false);
  const range = useMemo(() => dateRange(from, to), [from, to]);
  const { since, until, error: rangeError } = range;
  const gen = useRef(0);
  const early = useRef<SearchResultsEvent[]>([]);

  useEffect(() => {
    if (!connected) return;
    let on = true;
    // A hypivisor without machines answers METHOD_NOT_FOUND: one machine, no choice.
    request<ListMachinesResult>("list_machines", {}, 30_000).then(
      (r) => on && setMachines(r.machines),
      () => on && setMachines([]),
    );
    return () => {
      on = false;
    };
  }, [connected, request]);
  const listable = listableMachines(machines);
  const listableKey = listable.join("\u0000");

  const load = useCallback(
    (first: boolean, list: typeof emptyList | null) => {
      const g = ++gen.current;
      setLoading(true);
      const ask = (m: string | null, before: string | null) => {
        const params: Record<string, unknown> = { limit: PAGE };
        if (m) params.machine = m;
        if (cwd) params.cwd = cwd;
        if (since !== undefined) params.since = since;
        if (until !== undefined) params.until = until;
        if (before) params.before = before;
        return request<ListSessionsResult>("list_sessions", params, 60_000);
      };
      const seen = (rs: ListSessionsResult[]) => {
        setSeenFolders((f) => folders(f, rs.flatMap((r) => r.sessions)));
        for (const r of rs) {
          if (!r.machine) continue;
          const m = r.machine;
          // a machine's answer says whether its build still runs (another machine's progress is not pushed when
          // the hypivisor is older than its service): no `indexing` means done
          setIndexing((i) => {
            if (r.indexing) return { ...i, [m]: r.indexing };
            if (!(m in i)) return i;
            const next = { ...i };
            delete next[m];
            return next;
          });
        }
      };
      const several = !machine && listableKey.includes("\u0000");
      if (!several) {
        ask(machine || null, first ? null : (list?.cursor ?? null)).then(
          (r) => {
            if (g !== gen.current) return;
            setList((l) => addPage(l, r, first));
            seen([r]);
            setError(null);
            setLoading(false);
          },
          (e: Error) => {
            if (g !== gen.current) return;
            setError(e.message);
            setLoading(false);
          },
        );
        return;
      }
      // every online machine: one page each (the next page: of each machine that has more), merged
      const names = listableKey.split("\u0000").filter((n) => first || list?.cursors?.[n]);
      Promise.allSettled(names.map((n) => ask(n, first ? null : (list?.cursors?.[n] ?? null)))).then((results) => {
        if (g !== gen.current) return;
        const pages = results.flatMap((r, i) => (r.status === "fulfilled" ? [{ ...r.value, machine: names[i] }] : []));
        const failed = results.flatMap((r, i) => (r.status === "rejected" ? [`${names[i]}: ${(r.reason as Error)?.message ?? r.reason}`] : []));
        setList((l) => addMachinePages(l, pages, first));
        seen(pages);
        setError(failed.length ? failed.join(" · ") : null);
        setLoading(false);
      });
    },
    [request, cwd, machine, listableKey, since, until],
  );

  useEffect(() => {
    if (connected && !rangeError) load(true, null);
  }, [connected, load, rangeError]);

  const searchRef = useRef(search);
  searchRef.current = search;
  useEffect(
    () =>
      onSessionEvent((e) => {
        if (e.event === "index_progress") {
          setIndexing((i) => indexProgress(i, e));
          // The build finished: what it found is listed now.
          if (e.done && !searchRef.current.queryId) load(true, null);
        } else {
          // a frame may come before its search's answer: kept (bounded) until the answer names the query
          if (searchRef.current.query && !searchRef.current.queryId) early.current = [...early.current, e].slice(-EARLY_FRAMES);
          setSearch((s) => searchFrame(s, e));
        }
      }),
    [onSessionEvent, load],
  );

  const runSearch = useCallback(
    (q: string) => {
      const text = q.trim();
      if (!text) {
        setSearch(noSearch);
        return;
      }
      if (rangeError) {
        setSearch({ ...noSearch, query: text, error: rangeError });
        return;
      }
      const params: Record<string, unknown> = { query: text, limit: 50 };
      if (cwd) params.cwd = cwd;
      if (machine) params.machine = machine;
      if (role) params.role = role;
      if (since !== undefined) params.since = since;
      if (until !== undefined) params.until = until;
      early.current = [];
      setSearch({ ...noSearch, query: text });
      request<SearchResult>("search", params, 30_000).then(
        (r) => {
          const before = early.current.filter((f) => f.query_id === r.query_id);
          early.current = [];
          setSearch((s) => (s.query === text && !s.queryId ? searchStarted(text, r.query_id, r.machines ?? [], before) : s));
        },
        (e: Error) => setSearch((s) => (s.query === text ? { ...s, error: e.message } : s)),
      );
    },
    [request, cwd, machine, role, since, until, rangeError],
  );
  // a filter changed while results are shown: the same search again, with it
  const shown = search.query;
  const rerun = useRef(runSearch);
  useEffect(() => {
    if (rerun.current !== runSearch && shown) runSearch(shown);
    rerun.current = runSearch;
  }, [runSearch, shown]);

  const progress = progressText(indexing);
  const searching = !!search.query;
  const hits = mergedHits(search);
  const now = Date.now();
  const preset = presetOf(from, to, now);
  const homes = new Map(machines.map((m) => [m.name, m.home]));
  // a filter changed: until its answer comes, the rows of the list before that it leaves out are not shown (the
  // same terms as the machines': machine and folder exact, last activity in [since, until)); an answer is shown as
  // it is
  const rows = useMemo(
    () =>
      loading && (machine || cwd || since !== undefined || until !== undefined)
        ? list.sessions.filter(
            (s) =>
              (!machine || s.machine === machine) &&
              (!cwd || s.cwd === cwd) &&
              (since === undefined || s.modified == null || s.modified >= since) &&
              (until === undefined || s.modified == null || s.modified < until),
          )
        : list.sessions,
    [list.sessions, loading, machine, cwd, since, until],
  );
  // on a phone the filters fold away (the search and the list first); while folded they still apply
  const active = activeFilters({ machine, role, cwd, from, to });
  const folded = phone && !filtersOpen;
  return (
    <section className="sessions-view" data-testid="sessions-view" aria-label="Sessions">
      <header className="sessions-head">
        {onBack && (
          <button type="button" className="btn" onClick={onBack} aria-label="Back to agents">
            ‹ Agents
          </button>
        )}
        <h2>Sessions</h2>
      </header>
      <form
        className="sessions-tools"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          runSearch(query);
        }}
      >
        <input type="search" aria-label="Search sessions" placeholder='Search: words, "a phrase", prefix*' value={query} onChange={(e) => setQuery(e.target.value)} data-testid="sessions-search" />
        <button type="submit" className="btn">
          Search
        </button>
        {searching && (
          <button
            type="button"
            className="btn"
            onClick={() => {
              setQuery("");
              setSearch(noSearch);
            }}
          >
            Clear
          </button>
        )}
        {phone && (
          <button
            type="button"
            className="btn sessions-filters-toggle"
            aria-expanded={!folded}
            aria-controls="sessions-filters"
            data-testid="sessions-filters-toggle"
            data-active={active}
            onClick={() => setFiltersOpen((o) => !o)}
          >
            {filtersLabel(active)}
          </button>
        )}
        <div className="sessions-filters" id="sessions-filters" hidden={folded} data-testid="sessions-filters">
          {listable.length > 1 && (
            <label className="field-inline">
              <span>Machine</span>
              <select aria-label="Machine" value={machine} onChange={(e) => setMachine(e.target.value)} data-testid="sessions-machine">
                <option value="">All machines</option>
                {listable.map((m) => (
                  <option key={m} value={m}>
                    {m}
                  </option>
                ))}
              </select>
            </label>
          )}
          <label className="field-inline">
            <span>Role</span>
            <select aria-label="Role" value={role} onChange={(e) => setRole(e.target.value)} data-testid="sessions-role">
              {ROLES.map(([v, label]) => (
                <option key={v} value={v}>
                  {label}
                </option>
              ))}
            </select>
          </label>
          <label className="field-inline">
            <span>Folder</span>
            <select aria-label="Folder" value={cwd} onChange={(e) => setCwd(e.target.value)} data-testid="sessions-folder">
              <option value="">All folders</option>
              {seenFolders.map((f) => (
                <option key={f} value={f}>
                  {f}
                </option>
              ))}
            </select>
          </label>
          <fieldset className="sessions-dates" data-testid="sessions-dates">
            <legend>Dates</legend>
            {DATE_PRESETS.map(([p, label]) => (
              <button
                key={p || "any"}
                type="button"
                className="btn sessions-date-choice"
                aria-pressed={preset === p}
                data-testid={`sessions-dates-${p || "any"}`}
                onClick={() => {
                  const r = presetDays(p, Date.now());
                  setFrom(r.from);
                  setTo(r.to);
                }}
              >
                {label}
              </button>
            ))}
            <label className="field-inline">
              <span>From</span>
              <input type="date" aria-label="From" value={from} max={to || undefined} onChange={(e) => setFrom(e.target.value)} data-testid="sessions-from" />
            </label>
            <label className="field-inline">
              <span>To</span>
              <input type="date" aria-label="To" value={to} min={from || undefined} onChange={(e) => setTo(e.target.value)} data-testid="sessions-to" />
            </label>
          </fieldset>
        </div>
      </form>
      {progress && (
        <div className="sessions-progress muted" role="status" data-testid="index-progress">
          Indexing sessions… {progress}
        </div>
      )}
      {(rangeError || error) && (
        <div className="sessions-error" role="alert" data-testid="sessions-error">
          {rangeError ?? error}
        </div>
      )}
      {searching ? (
        <SearchResults search={search} hits={hits} homes={homes} now={now} onOpen={onOpen} />
      ) : (
        <>
          <ul className="sessions-list" data-testid="sessions-list">
            {rows.map((s) => (
              <SessionRow key={`${s.machine}/${s.id}`} s={s} home={homes.get(s.machine)} now={now} onOpen={() => onOpen({ id: s.id, machine: s.machine })} showMachine={listable.length > 1} />
            ))}
          </ul>
          {list.loaded && !rows.length && !rangeError && !loading && <div className="muted sessions-empty">{cwd || since !== undefined || until !== undefined ? "No sessions match these filters." : "No sessions yet."}</div>}
          {(!list.loaded || !rows.length) && loading && <div className="muted sessions-empty">Loading sessions…</div>}
          {list.cursor && (
            <button type="button" className="btn sessions-more" onClick={() => load(false, list)} disabled={loading} data-testid="sessions-more">
              {loading ? "Loading…" : "Load more"}
            </button>
          )}
        </>
      )}
    </section>
  );
}

/** A session's folder as the inbox and the budget show it: `~` for the machine's home, a deep one as its last two
 *  parts; the whole path in the tooltip. */
function Folder({ cwd, home }: { cwd: string | null | undefined; home: string | null | undefined }) {
  if (!cwd) return null;
  return (
    <span className="session-folder mono" title={displayText(cwd)} data-testid="session-folder">
      <SafeText text={shortPath(cwd, home)} />
    </span>
  );
}

function SessionRow({ s, home, now, onOpen, showMachine }: { s: SessionInfo; home: string | null | undefined; now: number; onOpen(): void; showMachine: boolean }) {
  return (
    <li className="session-row" data-testid="session-row" data-session-id={s.id} data-machine={s.machine}>
      <button type="button" className="session-open" onClick={onOpen}>
        <span className="session-title">
          <SafeText text={s.name || folderName(s.cwd ?? "")} />
          {s.live_node_id && <span className="session-live">live</span>}
        </span>
        <span className="session-prompt">
          <SafeText text={s.first_prompt || "(no prompt)"} />
        </span>
        <span className="session-meta muted">
          {showMachine && <SafeText text={`${s.machine} · `} />}
          <Folder cwd={s.cwd} home={home} />
          {s.cwd ? " · " : ""}
          {s.message_count ?? 0} message{s.message_count === 1 ? "" : "s"}
          {s.model && (
            <>
              {" · "}
              <SafeText text={s.model} />
            </>
          )}
          {cost(s.cost) && ` · ${cost(s.cost)}`}
          {s.modified ? ` · ${ago(s.modified, now)}` : ""}
        </span>
      </button>
    </li>
  );
}

function SearchResults({ search, hits, homes, now, onOpen }: { search: typeof noSearch; hits: SearchHit[]; homes: Map<string, string | null | undefined>; now: number; onOpen: Props["onOpen"] }) {
  const done = searchDone(search) && !!search.queryId;
  const failed = Object.entries(search.machines).filter(([, m]) => m.error);
  return (
    <div className="search-results" data-testid="search-results" data-done={done ? "true" : "false"}>
      <div className="muted search-status" role="status">
        {search.error
          ? null
          : !search.queryId
            ? "Searching…"
            : done
              ? `${hits.length} match${hits.length === 1 ? "" : "es"}`
              : `${hits.length} so far · waiting for ${Object.entries(search.machines)
                  .filter(([, m]) => !m.done)
                  .map(([n]) => n)
                  .join(", ")}`}
      </div>
      {search.error && (
        <div className="sessions-error" role="alert">
          {search.error}
        </div>
      )}
      {failed.map(([name, m]) => (
        <div key={name} className="sessions-error" role="alert">
          <SafeText text={`${name}: ${m.error}`} />
        </div>
      ))}
      <ul className="sessions-list">
        {hits.map((h) => (
          <li key={`${h.machine}/${h.id}/${h.entry_id}`} className="session-row search-hit" data-testid="search-hit" data-machine={h.machine} data-role={h.role ?? ""}>
            <button type="button" className="session-open" onClick={() => onOpen({ id: h.id, machine: h.machine, entry: h.entry_id })}>
              <span className="session-title">
                <SafeText text={h.name || folderName(h.cwd ?? "")} />
                {h.role && <span className="hit-role">{h.role}</span>}
              </span>
              <Snippet text={h.snippet} highlights={h.highlights} />
              <span className="session-meta muted">
                <SafeText text={h.machine} />
                {h.cwd && " · "}
                <Folder cwd={h.cwd} home={homes.get(h.machine)} />
                {h.ts ? ` · ${ago(h.ts, now)}` : ""}
              </span>
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

/** Plain text with the matching words in <mark>: the server's snippet is never read as markup. */
export function Snippet({ text, highlights }: { text: string; highlights?: number[][] }) {
  return (
    <span className="session-snippet" data-testid="snippet">
      {snippetPieces(text, highlights).map((p, i) => (p.mark ? <mark key={i}>{displayText(p.text)}</mark> : <span key={i}>{displayText(p.text)}</span>))}
    </span>
  );
}
