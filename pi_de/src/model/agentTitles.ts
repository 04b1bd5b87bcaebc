// What a card, the stage header and the tab call each agent: pi's session name, else its folder's name.
// Agents on one machine that would read the same (two unnamed pi in one folder) get " · 2", " · 3" in the
// order they started (then by id), so each title is unique and the same after a reload. Pure.
import type { NodeInfo } from "../protocol/types";
import { folderName } from "./rosterReducer";

type Titled = Pick<NodeInfo, "id" | "machine" | "cwd" | "session_name" | "started_at">;

/** The title before any suffix: the session name, else the folder's last part (never the raw id). */
export function baseTitle(n: Pick<NodeInfo, "session_name" | "cwd">): string {
  return n.session_name?.trim() || folderName(n.cwd);
}

/** Each agent's title by id; equal base titles on one machine are told apart by a start-order suffix. */
export function agentTitles(nodes: Iterable<Titled>): Record<string, string> {
  const same = new Map<string, Titled[]>();
  for (const n of nodes) {
    const key = `${n.machine}\u0000${baseTitle(n)}`;
    const list = same.get(key);
    if (list) list.push(n);
    else same.set(key, [n]);
  }
  const out: Record<string, string> = {};
  for (const list of same.values()) {
    list.sort((a, b) => (a.started_at ?? Infinity) - (b.started_at ?? Infinity) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    list.forEach((n, i) => (out[n.id] = i === 0 ? baseTitle(n) : `${baseTitle(n)} · ${i + 1}`));
  }
  return out;
}

/** Titles for the live agents plus one exited agent (the one open on the stage). The live ones keep exactly the
 * titles their cards show; the exited one keeps the title it had beside them ("app · 2" stays that), and when that
 * now reads like a live agent's (it started first, so the live one became plain "app") it says " · exited". */
export function titlesWithExited(live: Titled[], exited: Titled | undefined): Record<string, string> {
  const out = agentTitles(live);
  if (!exited || out[exited.id] !== undefined) return out;
  const had = agentTitles([...live, exited])[exited.id];
  const taken = live.some((n) => n.machine === exited.machine && out[n.id] === had);
  out[exited.id] = taken ? `${had} · exited` : had;
  return out;
}
