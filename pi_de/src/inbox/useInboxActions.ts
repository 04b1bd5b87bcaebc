// What a person can do from an inbox item. A decision is a hypivisor request (decide.ts: any hypivisor of a
// cluster takes it; an agent link only for older parts); replies and aborts go to that agent over a short-lived
// link through the hypivisor (agentAction.ts), never by opening its conversation; dismiss and mark read are
// hypivisor requests, so every device sees them.
import { useMemo } from "react";
import { agentUrl, type Endpoints } from "../connection/endpoints";
import { newId } from "../connection/ids";
import { subprotocols } from "../connection/token";
import type { LinkSocket } from "../connection/agentLink";
import type { AttentionItem } from "../protocol/types";
import { agentAction, ActionError, type ActionFrame } from "./agentAction";
import { decideApproval } from "./decide";

export interface InboxActions {
  decide(item: AttentionItem, decision: "allow" | "deny", reason?: string): Promise<void>;
  reply(item: AttentionItem, text: string): Promise<void>;
  abort(item: AttentionItem): Promise<void>;
  dismiss(item: AttentionItem): Promise<void>;
  markRead(nodeIds: string[]): Promise<void>;
}

type Request = <T>(method: string, params?: Record<string, unknown>, timeoutMs?: number) => Promise<T>;

export function useInboxActions(endpoints: Endpoints, token: string | null, request: Request): InboxActions {
  return useMemo(() => {
    const send = (item: AttentionItem, frame: ActionFrame) =>
      agentAction(frame, { open: (url) => new WebSocket(url, subprotocols(token)) as unknown as LinkSocket, url: agentUrl(endpoints, item.node_id) });
    const markRead = async (nodeIds: string[]) => {
      await Promise.all(nodeIds.map((node_id) => request("mark_read", { node_id })));
    };
    return {
      decide: (item, decision, reason) => {
        if (!item.approval_id) return Promise.reject(new ActionError("this item has no approval to decide"));
        const r = reason?.trim();
        const why = decision === "deny" && r ? { reason: r } : {};
        const approval_id = item.approval_id;
        return decideApproval(request, { node_id: item.node_id, approval_id, decision, ...why }, () =>
          send(item, { type: "approval_decision", id: approval_id, decision, ...why }),
        );
      },
      // A reply is an answer to what the person read: the agent counts as read afterwards.
      reply: async (item, text) => {
        await send(item, { type: "prompt", id: newId(), text });
        await markRead([item.node_id]).catch(() => undefined);
      },
      abort: (item) => send(item, { type: "abort" }),
      dismiss: async (item) => {
        await request("dismiss_attention", { id: item.id });
      },
      markRead,
    };
  }, [endpoints, token, request]);
}
