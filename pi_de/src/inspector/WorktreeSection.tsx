// The git worktree an agent runs in (NodeInfo.worktree / worktree_of, reported by its bridge), listed with the
// agent. It is removed only on request: a Remove button once the agent is gone or stopped, with a confirmation;
// a worktree with uncommitted changes is refused by its machine (1013) and then offered "Remove anyway".
import { useState } from "react";
import { displayText } from "../model/displayText";
import { SafeText } from "../ui/SafeText";

export interface WorktreeInfo {
  path: string;
  repo: string | null;
  branch: string | null;
  /** The agent no longer runs there (exited or offline): removal may be offered. */
  removable: boolean;
}

interface Props {
  worktree: WorktreeInfo;
  onRemove?(path: string, force: boolean): Promise<unknown>;
}

type Step = "idle" | "confirm" | "busy" | "dirty" | "removed";

export function WorktreeSection({ worktree, onRemove }: Props) {
  const [step, setStep] = useState<Step>("idle");
  const [error, setError] = useState<string | null>(null);
  const remove = async (force: boolean) => {
    if (!onRemove) return;
    setStep("busy");
    setError(null);
    try {
      await onRemove(worktree.path, force);
      setStep("removed");
    } catch (e) {
      const err = e as Error & { code?: number };
      setError(err.message);
      setStep(err.code === 1013 && !force ? "dirty" : "confirm");
    }
  };
  return (
    <section className="worktree" data-testid="worktree">
      <h3>Worktree</h3>
      <div className="mono worktree-path" data-testid="worktree-path">
        <SafeText text={worktree.path} />
      </div>
      {worktree.branch && (
        <div className="muted">
          branch <span className="mono">⎇ <SafeText text={worktree.branch} /></span>
        </div>
      )}
      {worktree.repo && (
        <div className="muted">
          of <span className="mono"><SafeText text={worktree.repo} /></span>
        </div>
      )}
      {step === "removed" ? (
        <div className="muted" role="status" data-testid="worktree-removed">removed</div>
      ) : !worktree.removable ? (
        <div className="muted">can be removed once the agent is stopped</div>
      ) : onRemove && step === "idle" ? (
        <button type="button" className="btn" onClick={() => setStep("confirm")}>
          Remove worktree…
        </button>
      ) : onRemove ? (
        <div className="worktree-confirm" role="group" aria-label="Confirm removal">
          <div>{step === "dirty" ? "It has uncommitted changes. Remove it anyway and lose them?" : "Remove this worktree folder? Its branch stays."}</div>
          {error && (
            <div className="banner error" role="alert" data-testid="worktree-error">
              {displayText(error)}
            </div>
          )}
          <div className="modal-actions">
            <button type="button" className="btn" disabled={step === "busy"} onClick={() => { setStep("idle"); setError(null); }}>
              Cancel
            </button>
            <button type="button" className="btn btn-primary" disabled={step === "busy"} onClick={() => void remove(step === "dirty")}>
              {step === "dirty" ? "Remove anyway" : "Remove"}
            </button>
          </div>
        </div>
      ) : null}
    </section>
  );
}
