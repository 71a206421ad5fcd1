#!/usr/bin/env bash
# Runs Herald's standard AMQP workloads (`herald bench amqp`, PerfTest-style)
# against an AMQP broker and prints the median of several runs of each.
#
# By default it installs and starts a local RabbitMQ (Debian's rabbitmq-server,
# listening on 127.0.0.1:5672 only) so Herald has a baseline to compare with;
# point it at Herald (or any broker) with --uri and --no-rabbitmq.
#
#   scripts/bench-rabbitmq.sh                       # local RabbitMQ, 3 runs x 15s
#   scripts/bench-rabbitmq.sh --stop                # ... and stop RabbitMQ after
#   RUNS=1 DURATION=5s scripts/bench-rabbitmq.sh    # quick look
#   scripts/bench-rabbitmq.sh --no-rabbitmq --uri amqp://guest:guest@127.0.0.1:5673/
#
# Environment: RUNS (default 3), DURATION (default 15s), OUT (directory for the
# JSON results; default a new temporary one), HERALD (the command that runs
# herald; default `go run ./cmd/herald`).
#
# Not run in CI: it installs a system package and takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

URI="amqp://guest:guest@localhost:5672/"
START_RABBITMQ=1
STOP_AFTER=0
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --uri) URI="$2"; shift 2 ;;
    --no-rabbitmq) START_RABBITMQ=0; shift ;;
    --stop) STOP_AFTER=1; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; echo "  --only NAME runs one workload (see WORKLOADS below)"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
RUNS="${RUNS:-3}"
DURATION="${DURATION:-15s}"
OUT="${OUT:-$(mktemp -d /tmp/herald-bench.XXXXXX)}"
HERALD="${HERALD:-go run ./cmd/herald}"
mkdir -p "$OUT"

need() { # need CMD PACKAGE: install PACKAGE if CMD is missing
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "== installing $2" >&2
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq
  timeout 600 apt-get install -y -qq "$2" >/dev/null
}

rabbitmq_running() { timeout 30 rabbitmqctl -q status >/dev/null 2>&1; }

start_rabbitmq() {
  need rabbitmqctl rabbitmq-server
  # Listen on loopback only.
  if ! grep -q '^NODE_IP_ADDRESS=' /etc/rabbitmq/rabbitmq-env.conf 2>/dev/null; then
    echo 'NODE_IP_ADDRESS=127.0.0.1' >> /etc/rabbitmq/rabbitmq-env.conf
  fi
  if ! rabbitmq_running; then
    echo "== starting rabbitmq-server" >&2
    timeout 120 service rabbitmq-server start >&2 || timeout 120 rabbitmq-server -detached
    timeout 120 rabbitmqctl await_startup >&2
  fi
  echo "== $(rabbitmqctl -q version 2>/dev/null | sed 's/^/RabbitMQ /') ($(rabbitmqctl -q eval 'erlang:system_info(otp_release).' 2>/dev/null | tr -d '"' | sed 's/^/Erlang\/OTP /'))" >&2
}

if [ "$START_RABBITMQ" = 1 ]; then
  start_rabbitmq
fi
need jq jq

# name|flags. The first two are the headline numbers: throughput with
# persistent messages and publisher confirms, and latency at a fixed rate.
WORKLOADS=(
  "persistent-confirms|-x 1 -y 1 -s 16 --persistent -c 192 -q 200 --multi-ack-every 50"
  "persistent-rate-5000|-x 1 -y 1 -s 16 --persistent -c 192 -q 200 --multi-ack-every 50 -r 5000"
  "transient-no-confirms|-x 1 -y 1 -s 16 -q 200 --multi-ack-every 50 --durable=false -u herald-bench-transient"
  "persistent-1k-2x2|-x 2 -y 2 -s 1024 --persistent -c 192 -q 200 --multi-ack-every 50"
  "fanout-10-queues|-x 1 -s 16 -c 192 -q 200 --multi-ack-every 50 --fanout --queues 10 -u herald-bench-fan"
)

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-22s %10s %10s %10s %9s %9s %9s %9s %9s\n' workload sent/s confirm/s recv/s p50_ms p75_ms p95_ms p99_ms max_ms
for w in "${WORKLOADS[@]}"; do
  name="${w%%|*}"
  flags="${w#*|}"
  if [ -n "$ONLY" ] && [ "$ONLY" != "$name" ]; then continue; fi
  for i in $(seq 1 "$RUNS"); do
    echo "== $name run $i/$RUNS: herald bench amqp -uri <uri> $flags -z $DURATION" >&2
    # shellcheck disable=SC2086
    $HERALD bench amqp -uri "$URI" $flags -z "$DURATION" -json --progress 5s > "$OUT/$name.$i.json"
  done
  col() { for i in $(seq 1 "$RUNS"); do jq -r "$1 // \"nan\"" "$OUT/$name.$i.json"; done | median; }
  printf '%-22s %10.0f %10.0f %10.0f %9.2f %9.2f %9.2f %9.2f %9.2f\n' "$name" \
    "$(col .sent_rate)" "$(col .confirmed_rate)" "$(col .received_rate)" \
    "$(col .latency_ms.p50)" "$(col .latency_ms.p75)" "$(col .latency_ms.p95)" \
    "$(col .latency_ms.p99)" "$(col .latency_ms.max)"
done
echo "== medians of $RUNS run(s) of $DURATION each; JSON results in $OUT" >&2

if [ "$STOP_AFTER" = 1 ] && [ "$START_RABBITMQ" = 1 ]; then
  echo "== stopping rabbitmq-server" >&2
  timeout 120 rabbitmqctl stop >&2 || timeout 120 service rabbitmq-server stop >&2
fi
