#!/usr/bin/env bash
# Installs what internal/realtime's tests need: the npm packages of
# testdata/node (pusher-js, pusher, eventsource, from the committed
# package-lock.json) and Debian's chromium for the headless browser test.
# Idempotent and quiet; fails loudly when an install fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=internal/realtime/testdata/node
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "realtime setup: node and npm are required (Node 20)" >&2
  exit 1
fi
if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if ! command -v chromium >/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq chromium >/dev/null
fi
