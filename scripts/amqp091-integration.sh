#!/usr/bin/env bash
# Runs amqp091-go's own integration suite (`go test -tags integration`, the
# version in go.mod), unmodified, against a freshly built Herald and prints a
# summary.
#
#   scripts/amqp091-integration.sh                     # the whole suite (~3 min)
#   scripts/amqp091-integration.sh -run 'Recovery'     # extra `go test` flags
#   SKIP='TestX|TestY' scripts/amqp091-integration.sh  # skip more tests
#   KEEP=1 scripts/amqp091-integration.sh              # keep the work dir (logs)
#
# What it does: builds herald, copies amqp091-go from the module cache to a
# temp dir (the module cache is read-only; the copy is not edited) and
# compiles its test binary there, starts herald on a fresh data dir with
# AMQP on a free loopback port and the management API on 127.0.0.1:15672,
# runs the suite with a timeout, prints the pass/fail/skip counts and the
# failures, and stops herald.
#
# Port 15672: the suite's recovery tests drop connections through the
# management API at a hard-wired http://localhost:15672, so Herald's HTTP
# listener must be there. As root, herald and the suite run in a private
# network namespace (scripts/lib/suite.sh), where 15672 is free whatever
# runs on the host (a RabbitMQ, say); otherwise, if something listens on
# 15672, the script stops with an error rather than send those calls to
# another server.
#
# Tests skipped by name (-skip), each because it can only run against
# RabbitMQ (internal/amqp/README.md says the same):
#   TestRabbitMQQueueTTLGet, TestRabbitMQQueueNackMultipleRequeue,
#   TestIntegrationRecoverNotImplemented: they check their server's product
#     property and do their work only when it is "RabbitMQ" (Herald says
#     "Herald"). Against any other server they open a connection, skip their
#     body without closing it, and the suite's goleak check at exit then fails
#     the whole run. What they check is covered by Herald's own tests
#     (x-message-ttl with basic.get, nack multiple with requeue, and
#     basic.recover requeue=false answered 540).
# The suite also skips TestConnection_Close_WhenMemoryAlarmIsActive itself:
# it drives rabbitmqctl and needs RABBITMQ_RABBITMQCTL_PATH.
#
# Exit status: 0 when every test that ran passed.
# Not run in CI: it takes minutes and its reconnection tests are
# timing-sensitive.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/suite.sh
source scripts/lib/suite.sh

rabbitmq_only='TestRabbitMQQueueTTLGet|TestRabbitMQQueueNackMultipleRequeue|TestIntegrationRecoverNotImplemented'
skip="^(${rabbitmq_only}${SKIP:+|$SKIP})\$"
TIMEOUT=${TIMEOUT:-900}
mgmt_port=15672 # hard-wired in amqp091-go's internal/utils/http.go and recovery_test.go

# The run phase: this script again, in the private network namespace when
# there is one. It starts herald, runs the compiled suite, stops herald.
if [ "${SUITE_PHASE:-}" = run ]; then
  trap stop_herald EXIT
  amqp_port=$(free_port)
  echo "== starting herald: AMQP 127.0.0.1:$amqp_port, management 127.0.0.1:$mgmt_port"
  start_herald "$work/herald" "$work/data" "127.0.0.1:$amqp_port" "$mgmt_port" "$work/herald.log"
  # `go test` flags (-run X) as the test binary spells them (-test.run X).
  args=()
  for a in "$@"; do
    case $a in
      -test.*) args+=("$a") ;;
      -*) args+=("-test.${a#-}") ;;
      *) args+=("$a") ;;
    esac
  done
  echo "== amqp091-go integration suite -test.skip '$skip'"
  cd "$work/suite"
  AMQP_URL="amqp://guest:guest@127.0.0.1:$amqp_port/" timeout "$TIMEOUT" ./amqp091.test \
    -test.v -test.count=1 -test.timeout "$((TIMEOUT - 30))s" -test.skip "$skip" "${args[@]}" >"$work/test.log" 2>&1
  exit $?
fi

version=$(go list -m -f '{{.Version}}' github.com/rabbitmq/amqp091-go)
src="$(go env GOMODCACHE)/github.com/rabbitmq/amqp091-go@$version"
if [ ! -d "$src" ]; then
  go mod download github.com/rabbitmq/amqp091-go
fi

work=$(mktemp -d /tmp/amqp091-integration.XXXXXX)
cleanup() {
  if [ "${KEEP:-}" = "" ]; then rm -rf "$work"; else echo "work dir kept: $work"; fi
}
trap cleanup EXIT

echo "== building herald"
go build -o "$work/herald" ./cmd/herald
echo "== copying amqp091-go $version (unmodified) and compiling its integration tests"
cp -r "$src" "$work/suite"
chmod -R u+w "$work/suite"
(cd "$work/suite" && GOFLAGS=-mod=mod go test -c -tags integration -o amqp091.test .)

if can_netns; then
  echo "== in a private network namespace"
else
  require_free_port 127.0.0.1 "$mgmt_port" "amqp091-go's recovery tests call the management API at localhost:$mgmt_port"
fi
set +e
work=$work SUITE_PHASE=run run_isolated bash "$0" "$@"
status=$?
set -e

# Top-level tests and examples (subtests in parentheses).
count() { grep -c "^--- $1" "$work/test.log" || true; }
countsub() { grep -c "^\s\+--- $1" "$work/test.log" || true; }
echo "== summary: $(count PASS) passed ($(countsub PASS) subtests), $(count FAIL) failed ($(countsub FAIL) subtests)," \
  "$(count SKIP) skipped by the suite; skipped by name: ${skip}"
grep -E '^\s*--- (FAIL|SKIP)' "$work/test.log" || true
if [ "$status" != 0 ]; then
  echo "== the suite exited $status; last lines of its output:"
  tail -40 "$work/test.log"
  echo "== herald log (last 20 lines):"
  tail -20 "$work/herald.log"
fi
exit "$status"
