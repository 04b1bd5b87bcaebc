// One past session, read-only (#/session/<id>, specs/sessions.md): the conversation drawn by the live agent's
// components (MessageList, no composer), paged back like live history, opened at a search hit's entry when the
// URL names one. "Continue in a new pi" resumes it (resume_session); when a live agent writes the file already,
// the choice is to open that agent or fork the session into a new pi. Its tree is navigable: at each point where
// branches split (pi's /tree), every branch can be shown; a fork links to the session it was forked from, and a
// session to its forks.
import { useCallback, useEffect, useRef, useState } from "react";
import type { ReadSessionResult, ResumeSessionResult } from "../protocol/types";
import { MessageList } from "../chat/MessageList";
import { SafeText } from "../ui/SafeText";
import { folderName } from "../model/rosterReducer";
import { applyPage, branchLabel, sessionHref, type PastView } from "./sessions";
import "./sessions.css";

type Request = <T>(method: string, params?: Record<string, unknown>, timeoutMs?: number) => Promise<T>;

interface Props {
  request: Request;
  connected: boolean;
  id: string;
  machine?: string;
  entry?: string;
  onBack(): void;
  /** Open an agent (the one resumed, or the live one writing this session). */
  onAgent(nodeId: string): void;
}

const PAGE = 100;

export function SessionView({ request, connected, id, machine, entry, onBack, onAgent }: Props) {
  const [past, setPast] = useState<PastView | null>(null);
  const [meta, setMeta] = useState<ReadSessionResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [resuming, setResuming] = useState(false);
  const [live, setLive] = useState<string | null>(null);
  /** The branch chosen at a branch point (its leaf); null: the branch the URL opens (a hit's, else pi's). */
  const [leaf, setLeaf] = useState<string | null>(null);
  const pastRef = useRef(past);
  pastRef.current = past;
  const base = useCallback(() => {
    const p: Record<string, unknown> = { path: id, limit: PAGE };
    if (machine) p.machine = machine;
    return p;
  }, [id, machine]);

  useEffect(() => {
    if (!connected) return;
    let on = true;
    const params = base();
    if (leaf) params.leaf_id = leaf;
    else if (entry) params.entry_id = entry;
    request<ReadSessionResult>("read_session", params, 60_000).then(
      (r) => {
        if (!on) return;
        setMeta(r);
        setPast((p) => applyPage(p, r, "first"));
        setError(null);
      },
      (e: Error) => on && setError(e.message),
    );
    return () => {
      on = false;
    };
  }, [connected, base, entry, leaf, request]);

  const more = useCallback(
    (kind: "older" | "newer") => {
      const p = pastRef.current;
      if (!p || (kind === "older" ? p.view.loadingOlder || p.view.cursor <= 0 : p.loadingNewer || !p.hasNewer)) return;
      const params = base();
      if (p.leafId) params.leaf_id = p.leafId;
      if (kind === "older") params.before = p.view.cursor;
      else params.after = p.end;
      setPast((cur) => (cur ? (kind === "older" ? { ...cur, view: { ...cur.view, loadingOlder: true } } : { ...cur, loadingNewer: true }) : cur));
      request<ReadSessionResult>("read_session", params, 60_000).then(
        (r) => setPast((cur) => applyPage(cur, r, kind)),
        (e: Error) => {
          setError(e.message);
          setPast((cur) => (cur ? { ...cur, loadingNewer: false, view: { ...cur.view, loadingOlder: false } } : cur));
        },
      );
    },
    [base, request],
  );
  const loadOlder = useCallback(() => more("older"), [more]);

  const resume = useCallback(
    (fork: boolean) => {
      const params: Record<string, unknown> = { path: id };
      if (machine) params.machine = machine;
      if (fork) params.fork = true;
      setResuming(true);
      setError(null);
      request<ResumeSessionResult>("resume_session", params, 90_000).then(
        (r) => {
          setResuming(false);
          if (r.live) setLive(r.node_id);
          else onAgent(r.node_id);
        },
        (e: Error) => {
          setResuming(false);
          setError(e.message);
        },
      );
    },
    [id, machine, request, onAgent],
  );

  const title = meta?.name || folderName(meta?.cwd ?? "") || "Session";
  // A live writer known from the read (or from a resume's answer): open it or fork, never a second writer.
  const liveId = live ?? meta?.live_node_id ?? null;
  return (
    <div className="stage-wrap">
      <section className="stage past-session" data-testid="past-session" data-session-id={id}>
        <header className="stage-head">
          <button type="button" className="icon-btn back-btn" onClick={onBack} aria-label="Back to sessions">
            ←
          </button>
          <div className="stage-title">
            <div className="stage-title-row">
              <strong>
                <SafeText text={title} />
              </strong>
              <span className="past-tag">past session</span>
            </div>
            <div className="stage-sub muted">
              <SafeText text={meta ? `${meta.machine} · ${meta.cwd}` : ""} />
              {meta ? ` · ${meta.total_messages} message${meta.total_messages === 1 ? "" : "s"}` : ""}
            </div>
          </div>
          <button type="button" className="btn btn-primary" data-testid="resume-session" onClick={() => resume(false)} disabled={!connected || resuming || !meta}>
            {resuming ? "Starting pi…" : "Continue in a new pi"}
          </button>
        </header>
        {liveId && (
          <div className="banner warn past-live" role="alert" data-testid="session-live">
            <span>A running agent is writing this session: two writers would interleave it.</span>
            <button type="button" className="btn" data-testid="open-live" onClick={() => onAgent(liveId)}>
              Open the live agent
            </button>
            <button type="button" className="btn" data-testid="fork-session" onClick={() => resume(true)} disabled={resuming}>
              Fork into a new pi
            </button>
          </div>
        )}
        {meta && <SessionNav meta={meta} onBranch={setLeaf} />}
        {error && (
          <div className="banner error" role="alert">
            <SafeText text={error} />
          </div>
        )}
        {past ? (
          <MessageList key={past.view.initSeq} view={past.view} onLoadOlder={loadOlder} openAt={past.focus} />
        ) : (
          !error && <div className="stage-empty muted">Loading the session…</div>
        )}
        {past?.hasNewer && (
          <button type="button" className="btn past-newer" data-testid="load-newer" onClick={() => more("newer")} disabled={past.loadingNewer}>
            {past.loadingNewer ? "Loading…" : "Show newer messages"}
          </button>
        )}
      </section>
    </div>
  );
}

/** The session's place in its tree: the session it was forked from, its forks, and at each branch point of the
 *  shown branch every branch (the shown one marked). Choosing a branch shows it from its end. */
function SessionNav({ meta, onBranch }: { meta: ReadSessionResult; onBranch(leafId: string): void }) {
  const forks = meta.forks ?? [];
  const branches = meta.branches ?? [];
  if (!meta.parent && !forks.length && !branches.length) return null;
  return (
    <nav className="session-nav" aria-label="Session tree" data-testid="session-nav">
      {meta.parent && (
        <div className="session-nav-row" data-testid="session-parent">
          <span className="muted">Forked from </span>
          {meta.parent.id ? (
            <a href={sessionHref(String(meta.parent.id), meta.machine)}>the parent session</a>
          ) : (
            <span className="muted">a session not found on this machine</span>
          )}
        </div>
      )}
      {forks.length > 0 && (
        <div className="session-nav-row" data-testid="session-forks">
          <span className="muted">Forks: </span>
          {forks.map((f, i) => (
            <a key={String(f.id)} href={sessionHref(String(f.id), meta.machine)} className="session-fork-link">
              <SafeText text={typeof f.name === "string" && f.name ? f.name : `fork ${i + 1}`} />
            </a>
          ))}
        </div>
      )}
      {branches.map((p) => (
        <div key={p.entry_id} className="session-nav-row branch-point" data-testid="branch-point" data-at={p.at}>
          <span className="muted">{branchLabel(p.at)}, {p.options.length} branches: </span>
          {p.options.map((o, i) => (
            <button
              key={o.entry_id}
              type="button"
              className={`btn branch-option${o.current ? " current" : ""}`}
              aria-pressed={o.current}
              data-testid="branch-option"
              data-leaf-id={o.leaf_id}
              onClick={() => !o.current && onBranch(o.leaf_id)}
              title={o.preview ?? undefined}
            >
              <SafeText text={`${i + 1}. ${(o.preview ?? "(no text)").slice(0, 60)}`} />
            </button>
          ))}
        </div>
      ))}
    </nav>
  );
}
