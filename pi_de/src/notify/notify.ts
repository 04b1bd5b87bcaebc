// Desktop notifications when a run finishes or fails, only if the user allowed them and the tab
// is hidden (a visible tab already shows it).
export function canNotify(): boolean {
  return typeof Notification !== "undefined" && Notification.permission === "granted";
}

export function notifyRun(title: string, body: string, tag: string) {
  if (!canNotify() || document.visibilityState !== "hidden") return;
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
