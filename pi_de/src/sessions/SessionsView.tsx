// The Sessions screen (#/sessions, specs/sessions.md): every past pi session of the machines, newest first, a
// page at a time ("Load more" with the cursor), a folder filter, the index's progress while it is built, and a
// search whose results show as each machine answers. Every text from a session file is shown inertly
// (SafeText; a snippet's matches as <mark> around plain text).
import { useCallback, useEffect, useRef, useState } from "react";
import type { ListSessionsResult, SearchHit, SearchResult, SessionInfo } from "../protocol/types";
import type { SessionEvent } from "../connection/useHypivisor";
import { SafeText } from "../ui/SafeText";
import { displayText } from "../model/displayText";
import { folderName } from "../model/rosterReducer";
import { addPage, ago, cost, emptyList, folders, indexProgress, mergedHits, noSearch, progressText, searchDone, searchFrame, searchStarted, snippetPieces, type Indexing } from "./sessions";
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

export function SessionsView({ request, connected, onSessionEvent, onOpen, onBack }: Props) {
  const [list, setList] = useState(emptyList);
  const [cwd, setCwd] = useState("");
  const [seenFolders, setSeenFolders] = useState<string[]>([]);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [indexing, setIndexing] = useState<Indexing>({});
  const [query, setQuery] = useState("");
  const [search, setSearch] = useState(noSearch);
  const gen = useRef(0);

  const load = useCallback(
    (first: boolean, before: string | null) => {
      const g = ++gen.current;
      setLoading(true);
      const params: Record<string, unknown> = { limit: PAGE };
      if (cwd) params.cwd = cwd;
      if (before) params.before = before;
      request<ListSessionsResult>("list_sessions", params, 60_000).then(
        (r) => {
          if (g !== gen.current) return;
          setList((l) => addPage(l, r, first));
          setSeenFolders((f) => folders(f, r.sessions));
          if (r.indexing && r.machine) setIndexing((i) => ({ ...i, [r.machine!]: r.indexing! }));
          setError(null);
          setLoading(false);
        },
        (e: Error) => {
          if (g !== gen.current) return;
          setError(e.message);
          setLoading(false);
        },
      );
    },
    [request, cwd],
  );

  useEffect(() => {
    if (connected) load(true, null);
  }, [connected, load]);

  const searchRef = useRef(search);
  searchRef.current = search;
  useEffect(
    () =>
      onSessionEvent((e) => {
        if (e.event === "index_progress") {
          setIndexing((i) => indexProgress(i, e));
          // The build finished: what it found is listed now.
          if (e.done && !searchRef.current.queryId) load(true, null);
        } else setSearch((s) => searchFrame(s, e));
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
      const params: Record<string, unknown> = { query: text, limit: 50 };
      if (cwd) params.cwd = cwd;
      setSearch({ ...noSearch, query: text });
      request<SearchResult>("search", params, 30_000).then(
        (r) => setSearch((s) => (s.query === text && !s.queryId ? searchStarted(text, r.query_id, r.machines ?? []) : s)),
        (e: Error) => setSearch((s) => (s.query === text ? { ...s, error: e.message } : s)),
      );
    },
    [request, cwd],
  );

  const progress = progressText(indexing);
  const searching = !!search.query;
  const hits = mergedHits(search);
  const now = Date.now();
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
      </form>
      {progress && (
        <div className="sessions-progress muted" role="status" data-testid="index-progress">
          Indexing sessions… {progress}
        </div>
      )}
      {error && (
        <div className="sessions-error" role="alert">
          {error}
        </div>
      )}
      {searching ? (
        <SearchResults search={search} hits={hits} now={now} onOpen={onOpen} />
      ) : (
        <>
          <ul className="sessions-list" data-testid="sessions-list">
            {list.sessions.map((s) => (
              <SessionRow key={`${s.machine}/${s.id}`} s={s} now={now} onOpen={() => onOpen({ id: s.id, machine: s.machine })} />
            ))}
          </ul>
          {list.loaded && !list.sessions.length && <div className="muted sessions-empty">No sessions{cwd ? " in this folder" : ""} yet.</div>}
          {!list.loaded && loading && <div className="muted sessions-empty">Loading sessions…</div>}
          {list.cursor && (
            <button type="button" className="btn sessions-more" onClick={() => load(false, list.cursor)} disabled={loading} data-testid="sessions-more">
              {loading ? "Loading…" : "Load more"}
            </button>
          )}
        </>
      )}
    </section>
  );
}

function SessionRow({ s, now, onOpen }: { s: SessionInfo; now: number; onOpen(): void }) {
  return (
    <li className="session-row" data-testid="session-row" data-session-id={s.id}>
      <button type="button" className="session-open" onClick={onOpen}>
        <span className="session-title">
          <SafeText text={s.name || folderName(s.cwd ?? "")} />
          {s.live_node_id && <span className="session-live">live</span>}
        </span>
        <span className="session-prompt">
          <SafeText text={s.first_prompt || "(no prompt)"} />
        </span>
        <span className="session-meta muted">
          <SafeText text={s.cwd ?? ""} />
          {" · "}
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

function SearchResults({ search, hits, now, onOpen }: { search: typeof noSearch; hits: SearchHit[]; now: number; onOpen: Props["onOpen"] }) {
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
          <li key={`${h.machine}/${h.id}/${h.entry_id}`} className="session-row search-hit" data-testid="search-hit">
            <button type="button" className="session-open" onClick={() => onOpen({ id: h.id, machine: h.machine, entry: h.entry_id })}>
              <span className="session-title">
                <SafeText text={h.name || folderName(h.cwd ?? "")} />
                {h.role && <span className="hit-role">{h.role}</span>}
              </span>
              <Snippet text={h.snippet} highlights={h.highlights} />
              <span className="session-meta muted">
                <SafeText text={`${h.machine} · ${h.cwd ?? ""}`} />
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
