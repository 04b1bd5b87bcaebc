import { useCallback, useEffect, useState } from "react";
import { applyTheme, DEFAULT_THEME, findTheme } from "./piTheme";

export const THEME_KEY = "pi-de-theme";

function stored(): string {
  try {
    return findTheme(localStorage.getItem(THEME_KEY)).name;
  } catch {
    return DEFAULT_THEME;
  }
}

export function useTheme(): [string, (name: string) => void] {
  const [name, setName] = useState(stored);
  useEffect(() => applyTheme(name), [name]);
  const choose = useCallback((n: string) => {
    setName(findTheme(n).name);
    try {
      localStorage.setItem(THEME_KEY, n);
    } catch {
      /* not persisted in private mode */
    }
  }, []);
  return [name, choose];
}
