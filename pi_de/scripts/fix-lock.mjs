// `npm ci` refuses a lock that lacks any optional dependency of a locked package. The registry this
// project's machines reach only carries the linux builds of packages like @rollup/rollup-* and
// @esbuild/*, so `npm install` silently leaves the other platforms out of package-lock.json and a
// fresh `npm ci` fails ("Missing: @rollup/rollup-darwin-arm64 from lock file"). This adds a bare
// `{version, optional}` entry for each missing one; npm ci then accepts the lock and, on install,
// skips (or, on that platform, fetches) them as usual optional packages.
// Run after every `npm install`: `npm run lock:fix`.
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const path = fileURLToPath(new URL("../package-lock.json", import.meta.url));
const lock = JSON.parse(readFileSync(path, "utf8"));
const pk = lock.packages;
let added = 0;
for (const [key, entry] of Object.entries(pk)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const nested = key ? `${key}/node_modules/${name}` : `node_modules/${name}`;
    const top = `node_modules/${name}`;
    if (pk[nested] || pk[top]) continue;
    pk[top] = { version, optional: true };
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(pk).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : a > b ? 1 : 0)));
writeFileSync(path, JSON.stringify(lock, null, 2) + "\n");
console.log(`fix-lock: added ${added} optional platform entries`);
