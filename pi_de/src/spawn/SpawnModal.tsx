// "Spawn agent": with several machines, choose the machine first (offline ones cannot be chosen); browse its
// folders under its $HOME (list_directories), optionally name a new folder, and deploy (spawn_agent) there.
// When the folder is in a git repository, a new worktree on a new branch is offered (off by default; the
// machine puts it beside the repository). Errors stay inside the modal; the new agent shows up through node_joined.
import { useCallback, useEffect, useRef, useState } from "react";
import type { ListDirectoriesResult, MachineInfo, SpawnAgentResult } from "../protocol/types";
import { displayText } from "../model/displayText";
import { SafeText } from "../ui/SafeText";

type Request = <T>(method: string, params?: Record<string, unknown>, timeoutMs?: number) => Promise<T>;

interface Props {
  request: Request;
  onClose(): void;
  onSpawned(id: string): void;
  /** The hypivisor's machines; with more than one the dialog asks which first. */
  machines?: MachineInfo[];
}

export function SpawnModal({ request, onClose, onSpawned, machines = [] }: Props) {
  const several = machines.length > 1;
  const own = machines.find((m) => m.own)?.name ?? null;
  // null: the hypivisor's own machine (no `machine` param, as before machines existed)
  const [machine, setMachine] = useState<string | null>(own);
  const target = machine && machine !== own ? { machine } : {};
  const targetKey = machine && machine !== own ? machine : "";
  const [dir, setDir] = useState<ListDirectoriesResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [newFolder, setNewFolder] = useState("");
  const [useWorktree, setUseWorktree] = useState(false);
  const [branch, setBranch] = useState("");
  const worktree = useWorktree && !!dir?.git;

  // the latest listing asked wins: an answer for another machine or folder that comes later is dropped, so the
  // folder shown (and deployed to) is always one of the chosen machine
  const asked = useRef(0);
  const open = useCallback(
    async (path?: string) => {
      const n = ++asked.current;
      setError(null);
      try {
        const where = targetKey ? { machine: targetKey } : {};
        const listing = await request<ListDirectoriesResult>("list_directories", path ? { path, ...where } : where);
        if (n === asked.current) setDir(listing);
      } catch (e) {
        if (n !== asked.current) return;
        setDir(null);
        setError((e as Error).message);
      }
    },
    [request, targetKey],
  );
  const chooseMachine = (name: string) => {
    setDir(null); // the other machine's folder is not this one's: nothing to deploy to until its listing comes
    setUseWorktree(false);
    setMachine(name);
  };
  useEffect(() => void open(), [open]);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && !busy && onClose();
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [busy, onClose]);

  const deploy = async () => {
    if (!dir) return;
    setBusy(true);
    setError(null);
    try {
      const params: Record<string, unknown> = { path: dir.path, ...target };
      if (worktree) params.worktree = { branch: branch.trim() };
      else if (newFolder.trim()) params.new_folder = newFolder.trim();
      const r = await request<SpawnAgentResult>("spawn_agent", params, 90_000);
      onSpawned(r.node_id);
      onClose();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const rel = dir ? (dir.path === dir.home ? "~" : dir.path.startsWith(dir.home + "/") ? "~" + dir.path.slice(dir.home.length) : dir.path) : "";
  return (
    <div className="modal-backdrop" onMouseDown={(e) => e.target === e.currentTarget && !busy && onClose()}>
      <div className="modal" role="dialog" aria-modal="true" aria-labelledby="spawn-title" data-testid="spawn-modal">
        <h2 id="spawn-title">Spawn a pi agent</h2>
        {several && (
          <label className="field">
            <span>Machine</span>
            <select data-testid="spawn-machine" aria-label="Machine" value={machine ?? own ?? ""} disabled={busy} onChange={(e) => chooseMachine(e.target.value)}>
              {machines.map((m) => (
                <option key={m.name} value={m.name} disabled={!m.online}>
                  {displayText(m.name)}
                  {m.own ? " (this hypivisor)" : ""}
                  {m.online ? "" : " (offline)"}
                </option>
              ))}
            </select>
          </label>
        )}
        <div className="spawn-where">
          <span className="muted">Start pi in</span> <span className="spawn-path mono" data-testid="spawn-path">{rel ? <SafeText text={rel} /> : "…"}</span>
          <div className="muted spawn-help">Open a folder below, or name a new one inside it.</div>
        </div>
        <ul className="dir-list" data-testid="dir-list">
          {dir?.parent && (
            <li>
              <button type="button" className="dir-item" onClick={() => open(dir.parent!)}>
                ↑ parent folder
              </button>
            </li>
          )}
          {dir?.directories.map((d) => (
            <li key={d.path}>
              <button type="button" className="dir-item" onClick={() => open(d.path)}>
                <span className="dir-icon" aria-hidden="true">▸</span> <SafeText text={d.name} />
              </button>
            </li>
          ))}
          {dir && dir.directories.length === 0 && <li className="muted dir-none">no sub-folders</li>}
        </ul>
        {dir?.git && (
          <div className="field" data-testid="spawn-worktree">
            <label className="field-inline">
              <input type="checkbox" checked={useWorktree} disabled={busy} onChange={(e) => setUseWorktree(e.target.checked)} aria-label="New worktree on a new branch" />
              <span>New git worktree on a new branch (optional)</span>
            </label>
            {useWorktree && (
              <input value={branch} onChange={(e) => setBranch(e.target.value)} placeholder="feat/my-change" maxLength={100} aria-label="Branch name" />
            )}
          </div>
        )}
        {!worktree && (
          <label className="field">
            <span>New folder (optional)</span>
            <input value={newFolder} onChange={(e) => setNewFolder(e.target.value)} placeholder="my-new-project" maxLength={200} aria-label="New folder name" />
          </label>
        )}
        {error && (
          <div className="banner error" role="alert" data-testid="spawn-error">
            {displayText(error)}
          </div>
        )}
        <div className="modal-actions">
          <button type="button" className="btn" onClick={onClose} disabled={busy}>
            Cancel
          </button>
          <button type="button" className="btn btn-primary" onClick={deploy} disabled={busy || !dir || (worktree && !branch.trim())}>
            {busy ? "Starting pi…" : "Deploy agent here"}
          </button>
        </div>
      </div>
    </div>
  );
}
