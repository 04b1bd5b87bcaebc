/**
 * The wire protocol this build speaks (specs/protocol.md §0): `major.minor`. Peers of the same major work together
 * (each ignores what it does not know); another major gets a banner saying what to upgrade.
 */
export const PROTOCOL_VERSION = "1.1";

function major(v: string): number | null {
  const head = v.trim().split(".", 1)[0];
  return /^\d{1,4}$/.test(head) ? Number(head) : null;
}

export function versionWarning(who: string, version: unknown): string | null {
  if (version == null) return null;
  const theirs = major(String(version));
  const ours = major(PROTOCOL_VERSION);
  if (theirs === null || theirs === ours) return null;
  const upgrade = theirs > (ours ?? 0) ? "this Pi-DE (reload after upgrading Hyper-Pi)" : who.replace(/^This|^The/, "the");
  return `${who} speaks protocol ${String(version)}; this Pi-DE speaks ${PROTOCOL_VERSION}. Upgrade ${upgrade} so both speak the same major version.`;
}
