// `make test` runs `npm run build && npm test` in a fresh clone, where node_modules does not exist
// yet; npm's pre-scripts only need node, so this installs the locked dependencies first
// (`npm ci`), and again when package-lock.json is newer than the installed tree.
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const installed = `${root}node_modules/.package-lock.json`;
const lock = `${root}package-lock.json`;
const stale = !existsSync(installed) || statSync(lock).mtimeMs > statSync(installed).mtimeMs + 1000;
if (stale) {
  console.log("pi_de: installing locked dependencies (npm ci)");
  const r = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  process.exit(r.status ?? 1);
}
