// One action on an agent from the inbox, without opening its conversation: a short-lived link to
// `/ws/agent/<id>` through the hypivisor (authenticated like every link: the token as a subprotocol),
// which waits for the bridge's init_state, sends one frame, waits for its outcome and closes.
//   approval_decision → approval_resolved with that id (whoever decided: the question is closed), or an error
//   prompt            → ack with that id, or an error
//   abort             → no answer on success: a short quiet time without an error, or the run's end
//   run_command       → ack with that id, or an error; for `quit` the link closing after it was sent also
//                       counts as done (pi exited, its bridge went with it)
//   set_session_name  → session_info_changed, or a short quiet time without an error (an unchanged name
//                       has no answer)
// Bounded in time: every action settles within `timeoutMs`.
import type { AgentServerFrame, ClientMessage } from "../protocol/frames";
import type { LinkSocket } from "../connection/agentLink";

export type ActionFrame = Extract<
  ClientMessage,
  { type: "approval_decision" } | { type: "prompt" } | { type: "abort" } | { type: "run_command" } | { type: "set_session_name" }
>;

/** Frames whose success may have no answer: a quiet time without an error counts as done. */
const quietDone = (f: ActionFrame) => f.type === "abort" || f.type === "set_session_name";

export class ActionError extends Error {
  constructor(
    message: string,
    public code = 0,
  ) {
    super(message);
  }
}

export interface ActionDeps {
  open(url: string): LinkSocket;
  url: string;
  timeoutMs?: number;
  /** Abort has no answer: this long without an error counts as done. */
  quietMs?: number;
}

/** The frame's outcome on the link: "done", an error, or undefined (not about this frame). */
export function outcomeOf(sent: ActionFrame, f: AgentServerFrame): "done" | ActionError | undefined {
  const t = f.type;
  const id = "id" in sent ? sent.id : undefined;
  if (t === "error") {
    const e = f as { id?: string | null; code?: number; message?: string };
    if (e.id != null && id !== undefined && e.id !== id) return undefined;
    if (e.id == null && !quietDone(sent) && id !== undefined) return undefined;
    if (e.code === 1013) return new ActionError("already decided elsewhere", e.code);
    return new ActionError(String(e.message ?? "the agent refused"), e.code ?? 0);
  }
  if (sent.type === "approval_decision" && t === "approval_resolved" && (f as { id?: string }).id === sent.id) return "done";
  if ((sent.type === "prompt" || sent.type === "run_command") && t === "ack" && (f as { id?: string }).id === sent.id) return "done";
  if (sent.type === "set_session_name" && t === "session_info_changed") return "done";
  if (sent.type === "abort" && (t === "agent_end" || t === "turn_end")) return "done";
  return undefined;
}

/** Opens the link, sends `frame` after init_state, resolves when it is done; always closes the socket. */
export function agentAction(frame: ActionFrame, deps: ActionDeps): Promise<void> {
  const timeoutMs = deps.timeoutMs ?? 15_000;
  const quietMs = deps.quietMs ?? 1_500;
  return new Promise<void>((resolve, reject) => {
    let ws: LinkSocket | null = null;
    let settled = false;
    let quiet: ReturnType<typeof setTimeout> | undefined;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(quiet);
      if (ws) {
        ws.onopen = ws.onmessage = ws.onclose = null;
        try {
          ws.close();
        } catch {
          /* already closed */
        }
      }
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => finish(new ActionError(`no answer from the agent in ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    try {
      ws = deps.open(deps.url);
    } catch (e) {
      finish(new ActionError(`cannot reach the agent: ${String(e)}`));
      return;
    }
    let sent = false;
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") return;
      let f: AgentServerFrame;
      try {
        f = JSON.parse(ev.data) as AgentServerFrame;
      } catch {
        return;
      }
      if (!f || typeof f !== "object" || typeof f.type !== "string") return;
      if (!sent) {
        if (f.type !== "init_state") return;
        // A decision on a question the agent no longer has: it was decided or withdrawn already.
        if (frame.type === "approval_decision") {
          const pending = (f as { pending_approvals?: { id: string }[] }).pending_approvals ?? [];
          if (!pending.some((p) => p.id === frame.id)) return finish(new ActionError("already decided elsewhere", 1013));
        }
        sent = true;
        ws!.send(JSON.stringify(frame));
        if (quietDone(frame)) quiet = setTimeout(() => finish(), quietMs);
        return;
      }
      const out = outcomeOf(frame, f);
      if (out === "done") finish();
      else if (out) finish(out);
    };
    ws.onclose = () => {
      if (sent && frame.type === "run_command" && frame.name === "quit") return finish(); // pi is gone: what was asked
      finish(new ActionError(sent ? "the link to the agent closed before it answered" : "cannot reach the agent (offline?)"));
    };
  });
}
