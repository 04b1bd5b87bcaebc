// Prompt ids must be unique per client; crypto.randomUUID exists only in secure contexts, and
// Pi-DE is often opened over plain http on a LAN address.
export function newId(prefix = "p"): string {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return prefix + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
