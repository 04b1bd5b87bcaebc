// Reconnect delays: 1 s, doubling, capped at 10 s (a restarted hypivisor is picked up within 10 s,
// while a dead one costs one attempt per 10 s, not a tight loop).
export const BACKOFF_START_MS = 1000;
export const BACKOFF_MAX_MS = 10_000;

export function backoffDelay(attempt: number): number {
  if (attempt < 0) return 0;
  return Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** Math.min(attempt, 20));
}
