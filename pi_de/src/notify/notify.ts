import { ON_KEY } from "../push/pushCore";
import { readFlag } from "../ui/storedFlag";

// Desktop notifications when a run finishes or fails, only if the user allowed them and the tab
// is hidden (a visible tab already shows it).
export function canNotify(): boolean {
  return typeof Notification !== "undefined" && Notification.permission === "granted";
}

export function notifyRun(title: string, body: string, tag: string) {
  // A device with Web Push on gets these as pushes (specs/push.md): one notice, not two.
  if (!canNotify() || document.visibilityState !== "hidden" || readFlag(ON_KEY)) return;
  try {
    new Notification(title, { body: body || " ", tag });
  } catch {
    /* some platforms only allow notifications from a service worker */
  }
}

export async function askPermission(): Promise<NotificationPermission | "unsupported"> {
  if (typeof Notification === "undefined") return "unsupported";
  return Notification.requestPermission();
}
