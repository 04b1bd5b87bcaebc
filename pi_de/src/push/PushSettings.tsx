// The "Notifications" panel in the sidebar: push on this device, which kinds notify, muted agents.
import { useState } from "react";
import type { NodeInfo } from "../protocol/types";
import { folderName } from "../model/rosterReducer";
import { displayText } from "../model/displayText";
import { KIND_LABELS } from "./pushCore";
import "./push.css";
import type { PushControl } from "./usePush";

export function PushSettings({ push, nodes }: { push: PushControl; nodes: Record<string, NodeInfo> }) {
  const [open, setOpen] = useState(false);
  if (!push.offered) return null;
  const dev = push.device;
  const toggleKind = (k: string, on: boolean) => dev && void push.setPrefs(on ? [...dev.kinds, k] : dev.kinds.filter((x) => x !== k), dev.muted);
  const toggleMute = (id: string, muted: boolean) => dev && void push.setPrefs(dev.kinds, muted ? [...dev.muted, id] : dev.muted.filter((x) => x !== id));
  const agents = Object.values(nodes);
  return (
    <div className="push-settings" data-testid="push-settings">
      <button type="button" className="link-btn" aria-expanded={open} onClick={() => setOpen(!open)} data-testid="push-settings-toggle">
        Notifications{dev ? " · on" : ""}
      </button>
      {open && (
        <div className="push-panel" role="group" aria-label="Push notifications">
          {push.unsupported ? (
            <p className="muted">Push: {push.unsupported}. The inbox and in-page notices still work.</p>
          ) : dev ? (
            <>
              <button type="button" className="btn" disabled={push.busy} onClick={() => void push.disable()} data-testid="push-disable">
                Turn off push on this device
              </button>
              <fieldset>
                <legend>Notify me about</legend>
                {push.allKinds.map((k) => (
                  <label key={k} className="field-inline">
                    <input type="checkbox" checked={dev.kinds.includes(k)} disabled={push.busy} onChange={(e) => toggleKind(k, e.target.checked)} data-testid={`push-kind-${k}`} />
                    <span>{KIND_LABELS[k] ?? k}</span>
                  </label>
                ))}
              </fieldset>
              {agents.length > 0 && (
                <fieldset>
                  <legend>Mute agents</legend>
                  {agents.map((n) => (
                    <label key={n.id} className="field-inline">
                      <input type="checkbox" checked={dev.muted.includes(n.id)} disabled={push.busy} onChange={(e) => toggleMute(n.id, e.target.checked)} data-testid={`push-mute-${n.id}`} />
                      <span>{displayText(n.session_name || folderName(n.cwd))}</span>
                    </label>
                  ))}
                </fieldset>
              )}
            </>
          ) : (
            <button type="button" className="btn btn-primary" disabled={push.busy} onClick={() => void push.enable()} data-testid="push-enable">
              Push notifications to this device
            </button>
          )}
          {push.error && (
            <p className="error" role="alert">
              {push.error}
            </p>
          )}
        </div>
      )}
    </div>
  );
}
