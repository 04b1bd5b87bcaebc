import { useEffect, useState } from "react";

/** The time in unix seconds, refreshed every `everyMs` (for "idle 5m"-style labels). */
export function useNow(everyMs = 30_000): number {
  const [now, setNow] = useState(() => Date.now() / 1000);
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now() / 1000), everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return now;
}
