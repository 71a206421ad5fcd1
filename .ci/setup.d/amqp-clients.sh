#!/usr/bin/env bash
# Installs what internal/amqp's TestClients needs: amqplib for Node (npm ci
# in testdata/node from the committed package-lock.json) and pika for Python
# (Debian's python3-pika; there is no PyPI here). Idempotent and fast when
# everything is installed; fails loudly when an install fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=internal/amqp/testdata/node
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "amqp-clients setup: node and npm are required (Node 18+)" >&2
  exit 1
fi
if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if ! /usr/bin/python3 -c 'import pika' 2>/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq python3-pika >/dev/null
fi
