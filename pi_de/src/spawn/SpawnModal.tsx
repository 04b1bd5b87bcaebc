// "Spawn agent": browse folders under $HOME (list_directories), optionally name a new folder, and
// deploy (spawn_agent). Errors stay inside the modal; the new agent shows up through node_joined.
import { useCallback, useEffect, useState } from "react";
import type { ListDirectoriesResult, SpawnAgentResult } from "../protocol/types";
import { displayText } from "../model/displayText";
import { SafeText } from "../ui/SafeText";

type Request = <T>(method: string, params?: Record<string, unknown>, timeoutMs?: number) => Promise<T>;

export function SpawnModal({ request, onClose, onSpawned }: { request: Request; onClose(): void; onSpawned(id: string): void }) {
  const [dir, setDir] = useState<ListDirectoriesResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [newFolder, setNewFolder] = useState("");

  const open = useCallback(
    async (path?: string) => {
      setError(null);
      try {
        setDir(await request<ListDirectoriesResult>("list_directories", path ? { path } : {}));
      } catch (e) {
        setError((e as Error).message);
      }
    },
    [request],
  );
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
      const params: Record<string, unknown> = { path: dir.path };
      if (newFolder.trim()) params.new_folder = newFolder.trim();
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
        <div className="spawn-path mono" data-testid="spawn-path">{rel ? <SafeText text={rel} /> : "…"}</div>
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
        <label className="field">
          <span>New folder (optional)</span>
          <input value={newFolder} onChange={(e) => setNewFolder(e.target.value)} placeholder="my-new-project" maxLength={200} aria-label="New folder name" />
        </label>
        {error && (
          <div className="banner error" role="alert" data-testid="spawn-error">
            {displayText(error)}
          </div>
        )}
        <div className="modal-actions">
          <button type="button" className="btn" onClick={onClose} disabled={busy}>
            Cancel
          </button>
          <button type="button" className="btn btn-primary" onClick={deploy} disabled={busy || !dir}>
            {busy ? "Starting pi…" : "Deploy agent here"}
          </button>
        </div>
      </div>
    </div>
  );
}
