// Reading an agent clears its unread count and its finished/error items on every device: a mark_read is
// sent when a person is looking at the agent — its conversation is open and scrolled to the latest
// message, and the page is visible and focused — and there is something to clear. One request per such
// moment (per read key, model/inbox.ts): new output while the person keeps looking is a new moment.
import { useEffect, useRef, useState } from "react";
import { readKey, type InboxState } from "../model/inbox";

/** The page is visible and has the focus (a person can be reading it). */
export function usePageAttended(): boolean {
  const get = () => typeof document !== "undefined" && document.visibilityState === "visible" && document.hasFocus();
  const [on, setOn] = useState(get);
  useEffect(() => {
    const update = () => setOn(get());
    document.addEventListener("visibilitychange", update);
    window.addEventListener("focus", update);
    window.addEventListener("blur", update);
    return () => {
      document.removeEventListener("visibilitychange", update);
      window.removeEventListener("focus", update);
      window.removeEventListener("blur", update);
    };
  }, []);
  return on;
}

export function useMarkRead(nodeId: string | null, atLatest: boolean, inbox: InboxState, markRead: (ids: string[]) => Promise<void>): void {
  const attended = usePageAttended();
  const key = nodeId && atLatest && attended ? readKey(inbox, nodeId) : null;
  const sent = useRef<string | null>(null);
  useEffect(() => {
    if (!key || !nodeId || key === sent.current) return;
    sent.current = key;
    markRead([nodeId]).catch(() => {
      if (sent.current === key) sent.current = null; // not connected: try again at the next change
    });
  }, [key, nodeId, markRead]);
}
