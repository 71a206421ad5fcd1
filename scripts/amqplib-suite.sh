#!/usr/bin/env bash
# Runs amqplib's own test suite (the tests of the npm package's repository,
# `node --test` as its package.json says) against a freshly built Herald on
# port 5672, and prints a summary.
#
#   scripts/amqplib-suite.sh                  # the whole suite (~1 min)
#   KEEP=1 scripts/amqplib-suite.sh           # keep the work dir (logs)
#   AMQPLIB_SUITE_VERSION=1.0.7 scripts/...   # another amqplib release's suite
#
# Which tests: only npm is reachable from here (no GitHub). amqplib's npm
# tarballs shipped the repository's test/ directory up to 2.2.0; 2.2.1
# replaced .npmignore with a `files` allowlist, and the tarballs since then
# (2.3.1, which testdata/node/package-lock.json pins, included) hold no tests.
# So the script packs the pinned version, uses its test/ if it has one, and
# otherwise the newest release that ships tests (2.2.0), run against that
# release's own library as published. The changes from 2.2.0 to 2.3.1 are
# client-side (waitForConfirms after a close, cancel's return value, frame
# size checks, a RangeError for oversized header tables).
#
# What it does: npm-packs amqplib, installs the one package its tests need
# besides Node (claire, at the version its devDependencies pin), builds
# herald, starts it on a fresh data dir with AMQP on port 5672 (the suite
# connects to amqp://localhost and amqp://[::1] on the default port) and the
# management API on a free loopback port, runs the suite with its own
# per-test timeout, prints the counts and the failures, and stops herald.
# As root, herald and the suite run in a private network namespace
# (scripts/lib/suite.sh): port 5672 is free there whatever runs on the host
# (a RabbitMQ, say), and Herald listens on IPv4 and IPv6 loopback. Otherwise
# Herald listens on 127.0.0.1:5672 only, and the script stops if that port
# is taken.
#
# Tests skipped by name (--test-name-pattern excludes them), and why
# (internal/amqp/README.md says the same):
#   "serverProperties" asserts serverProperties.product === 'RabbitMQ';
#     Herald says "Herald".
#   "ipv6" connects to amqp://[::1]; skipped only when Herald listens on
#     IPv4 only (no private network namespace, or no IPv6 loopback).
#
# Exit status: 0 when every test that ran passed. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/suite.sh
source scripts/lib/suite.sh

port=5672
# Per test, and on Node 20 per test file too. The suite's own CI runs
# `make test` (node --test, no timeout); its package.json's `npm test` says
# 1000 ms, which on Node 20 bounds each whole file and fails the files that
# talk to a broker however fast it is.
TEST_TIMEOUT=${TEST_TIMEOUT:-30000}
lock_version=$(node -p 'require("./internal/amqp/testdata/node/package-lock.json").packages["node_modules/amqplib"].version')
fallback_version=2.2.0 # the newest amqplib tarball that ships test/

# The run phase: this script again, in the private network namespace when
# there is one. It starts herald, runs the suite, stops herald.
if [ "${SUITE_PHASE:-}" = run ]; then
  trap stop_herald EXIT
  http_port=$(free_port)
  echo "== starting herald: AMQP $listen, management 127.0.0.1:$http_port"
  start_herald "$work/herald" "$work/data" "$listen" "$http_port" "$work/herald.log"
  echo "== amqplib@$version: node --test --test-timeout=$TEST_TIMEOUT (skipping by name: $skip)"
  # Node 22 has --test-skip-pattern. Node 20 has only --test-name-pattern,
  # under which a suite whose name matches runs all its tests, and the root
  # is named <root>: so the pattern matches every name but the skipped
  # tests', their suites' and the root's, and the other tests of those
  # suites match by their own names.
  IFS='|' read -r -a names <<<"${skip//; /|}"
  if node --help | grep -q -- --test-skip-pattern; then
    leaves=()
    for n in "${names[@]}"; do leaves+=("${n##* > }"); done
    filter=(--test-skip-pattern="^($(IFS='|'; echo "${leaves[*]}"))\$")
  else
    parts=('<root>')
    for n in "${names[@]}"; do
      IFS='>' read -r -a path <<<"${n// > />}"
      parts+=("${path[@]}")
    done
    filter=(--test-name-pattern="^(?!($(IFS='|'; echo "${parts[*]}"))\$)")
  fi
  cd "$suite"
  URL="amqp://guest:guest@localhost:$port" timeout 600 node --test --test-timeout="$TEST_TIMEOUT" \
    --test-reporter=tap "${filter[@]}" >"$work/test.log" 2>&1
  exit $?
fi

# Tests skipped by name, "suite > suite > test" as in test/connect.test.js,
# separated by "; " (the header says why).
skip="Connect > Connect API > serverProperties"
listen="127.0.0.1:$port"
if ! can_netns; then
  require_free_port 127.0.0.1 "$port" "amqplib's tests connect to amqp://localhost on the default port $port"
  skip+="; Connect > Connect API > ipv6"
elif run_isolated python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
  listen=":$port" # in the namespace: its loopback only, IPv4 and IPv6
else
  skip+="; Connect > Connect API > ipv6"
fi

work=$(mktemp -d /tmp/amqplib-suite.XXXXXX)
cleanup() {
  if [ "${KEEP:-}" = "" ]; then rm -rf "$work"; else echo "work dir kept: $work"; fi
}
trap cleanup EXIT

# pack VERSION: unpacks amqplib@VERSION into $work/amqplib-VERSION.
pack() {
  (cd "$work" && npm pack --silent "amqplib@$1" >/dev/null && mkdir "amqplib-$1" && tar xzf "amqplib-$1.tgz" -C "amqplib-$1")
}
version=${AMQPLIB_SUITE_VERSION:-}
if [ -z "$version" ]; then
  echo "== npm pack amqplib@$lock_version (the version testdata/node/package-lock.json pins)"
  pack "$lock_version"
  if [ -d "$work/amqplib-$lock_version/package/test" ]; then
    version=$lock_version
  else
    echo "   amqplib@$lock_version's tarball has no test/ directory; using amqplib@$fallback_version's suite (the newest tarball that ships it)"
    version=$fallback_version
  fi
fi
[ -d "$work/amqplib-$version" ] || { echo "== npm pack amqplib@$version"; pack "$version"; }
suite="$work/amqplib-$version/package"
if [ ! -d "$suite/test" ]; then
  echo "amqplib@$version's npm tarball ships no test/ directory" >&2
  exit 1
fi
claire=$(node -p "require('$suite/package.json').devDependencies.claire")
echo "== npm install claire@$claire (the suite's only dependency besides Node)"
mkdir -p "$work/deps"
(cd "$work/deps" && npm install --silent --no-audit --no-fund --no-package-lock "claire@$claire" >/dev/null)
ln -s "$work/deps/node_modules" "$suite/node_modules"

echo "== building herald"
go build -o "$work/herald" ./cmd/herald

can_netns && echo "== in a private network namespace"
set +e
work=$work suite=$suite version=$version listen=$listen skip=$skip SUITE_PHASE=run run_isolated bash "$0"
status=$?
set -e

# The TAP reporter's closing lines: "# tests N", "# pass N", "# fail N", ...
num() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$work/test.log" | tail -1; }
echo "== summary (amqplib@$version): $(num pass) passed, $(num fail) failed, $(num skipped) skipped" \
  "(of $(num tests) tests; skipped by name: $skip)"
grep -E '^\s*not ok ' "$work/test.log" || true
IFS='|' read -r -a names <<<"${skip//; /|}"
for n in "${names[@]}"; do
  if ! grep -qE "^\s*ok [0-9]+ - ${n##* > } # SKIP" "$work/test.log"; then
    echo "== '$n' was to be skipped by name but was not reported skipped: check the name filter" >&2
    status=1
  fi
done
if [ "$status" != 0 ]; then
  echo "== node --test exited $status; failures in full:"
  grep -E -A25 '^\s*not ok ' "$work/test.log" | head -150
  echo "== herald log (last 20 lines):"
  tail -20 "$work/herald.log"
fi
exit "$status"
