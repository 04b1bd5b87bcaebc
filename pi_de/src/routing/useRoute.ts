// The current Route from location.hash. navigate() pushes a history entry (Back and Forward move
// between screens, the phone's Back gesture included) or replaces the current one; back() returns to
// the previous screen of this app, or replaces the current one with `fallback` when the page was opened
// directly on it (Back must never leave the app from an in-app "back" button).
import { useCallback, useEffect, useState } from "react";
import { parseRoute, routeHash, sameRoute, type Route } from "./route";

interface Entry {
  piDeDepth: number;
}

const depth = (): number => {
  const s = history.state as Partial<Entry> | null;
  return typeof s?.piDeDepth === "number" ? s.piDeDepth : 0;
};

export interface RouteControl {
  route: Route;
  navigate(to: Route, opts?: { replace?: boolean }): void;
  back(fallback: Route): void;
}

export function useRoute(): RouteControl {
  const [route, setRoute] = useState<Route>(() => parseRoute(location.hash));

  useEffect(() => {
    const sync = () => setRoute(parseRoute(location.hash));
    window.addEventListener("popstate", sync);
    window.addEventListener("hashchange", sync);
    return () => {
      window.removeEventListener("popstate", sync);
      window.removeEventListener("hashchange", sync);
    };
  }, []);

  const navigate = useCallback((to: Route, opts: { replace?: boolean } = {}) => {
    const here = parseRoute(location.hash);
    if (sameRoute(here, to) && !opts.replace) return;
    const url = routeHash(to);
    if (opts.replace) history.replaceState({ piDeDepth: depth() } satisfies Entry, "", url);
    else history.pushState({ piDeDepth: depth() + 1 } satisfies Entry, "", url);
    setRoute(to);
  }, []);

  const back = useCallback(
    (fallback: Route) => {
      if (depth() > 0) history.back();
      else navigate(fallback, { replace: true });
    },
    [navigate],
  );

  return { route, navigate, back };
}
