#!/usr/bin/env bash
# Installs what internal/webhook's tests need: the npm package
# standardwebhooks (the Standard Webhooks reference verifier) from the
# committed package-lock.json of internal/webhook/testdata/node.
# Idempotent and quiet; fails loudly when node or the install is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=internal/webhook/testdata/node
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "webhook setup: node and npm are required (Node 20)" >&2
  exit 1
fi
if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
