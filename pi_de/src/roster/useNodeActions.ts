// Stop and rename from the roster, without opening the conversation: one short-lived agent link per action
// (inbox/agentAction.ts), authenticated like every link. Stop is pi's own clean exit (`run_command quit`: the
// shim aborts a run, then `ctx.shutdown()`); the node then deregisters and shows as exited.
import { useMemo } from "react";
import { agentUrl, type Endpoints } from "../connection/endpoints";
import { newId } from "../connection/ids";
import { subprotocols } from "../connection/token";
import type { LinkSocket } from "../connection/agentLink";
import { agentAction, type ActionFrame } from "../inbox/agentAction";

export interface NodeActions {
  stop(nodeId: string): Promise<void>;
  rename(nodeId: string, name: string): Promise<void>;
}

export function useNodeActions(endpoints: Endpoints, token: string | null): NodeActions {
  return useMemo(() => {
    const send = (nodeId: string, frame: ActionFrame) =>
      agentAction(frame, { open: (url) => new WebSocket(url, subprotocols(token)) as unknown as LinkSocket, url: agentUrl(endpoints, nodeId) });
    return {
      stop: (nodeId) => send(nodeId, { type: "run_command", id: newId(), name: "quit" }),
      rename: (nodeId, name) => send(nodeId, { type: "set_session_name", name: name.trim() }),
    };
  }, [endpoints, token]);
}
