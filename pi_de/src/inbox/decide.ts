// An inbox decision on an approval. First through the registry (`decide_approval`): it works on any hypivisor of
// a cluster, even while the agent's own hypivisor is down (the decision waits in NATS for the agent's bridge), and
// the first decision anywhere wins. Only when that path is not there (an older hypivisor: method not found; an
// older bridge that cannot take decisions from the registry: unsupported) does it fall back to a short-lived
// agent link. Pure: the request and the fallback are passed in.
import { ActionError } from "./agentAction";

type Request = <T>(method: string, params?: Record<string, unknown>, timeoutMs?: number) => Promise<T>;

const METHOD_NOT_FOUND = -32601;
const UNSUPPORTED = 1014;
const CONFLICT = 1013;

export interface Decision {
  node_id: string;
  approval_id: string;
  decision: "allow" | "deny";
  reason?: string;
}

export async function decideApproval(request: Request, d: Decision, viaLink: () => Promise<void>): Promise<void> {
  try {
    await request("decide_approval", { ...d }, 15_000);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === METHOD_NOT_FOUND || code === UNSUPPORTED) return viaLink();
    if (code === CONFLICT) throw new ActionError((err as Error).message || "already decided elsewhere", CONFLICT);
    throw err;
  }
}
