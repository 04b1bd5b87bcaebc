// A yes/no preference kept in localStorage (the inspector's collapsed state). Storage may be missing or
// refuse writes (private windows, quotas): then the flag just lives for the page.
import { useCallback, useState } from "react";

export function readFlag(key: string, storage: Pick<Storage, "getItem"> | undefined = globalThis.localStorage): boolean {
  try {
    return storage?.getItem(key) === "1";
  } catch {
    return false;
  }
}

export function writeFlag(key: string, on: boolean, storage: Pick<Storage, "setItem" | "removeItem"> | undefined = globalThis.localStorage): void {
  try {
    if (on) storage?.setItem(key, "1");
    else storage?.removeItem(key);
  } catch {
    /* not remembered, still applied */
  }
}

export function useStoredFlag(key: string): [boolean, (on: boolean) => void] {
  const [on, setOn] = useState(() => readFlag(key));
  const set = useCallback(
    (v: boolean) => {
      setOn(v);
      writeFlag(key, v);
    },
    [key],
  );
  return [on, set];
}
