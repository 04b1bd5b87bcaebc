/** The wire protocol this build speaks (specs/protocol.md). A peer with another value gets a banner. */
export const PROTOCOL_VERSION = "1";

export function versionWarning(who: string, version: unknown): string | null {
  if (version == null || String(version) === PROTOCOL_VERSION) return null;
  return `${who} speaks protocol version ${String(version)}; this Pi-DE speaks ${PROTOCOL_VERSION}. Some features may not work.`;
}
