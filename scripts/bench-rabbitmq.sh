#!/usr/bin/env bash
# Herald vs RabbitMQ on one machine, one driver, one run: starts a local
# RabbitMQ (Debian's rabbitmq-server, loopback only) and Herald (twice: the
# default --fsync=always, RabbitMQ's promise, and the weaker, faster
# --fsync=interval), runs the same `herald bench amqp` (PerfTest-style)
# workloads against each, alternating targets run by run, and prints
# per-target medians, the brokers' CPU and RSS, Herald's sync points per
# second and messages per sync, and the Herald : RabbitMQ ratios.
#
#   scripts/bench-rabbitmq.sh                        # everything: 3 runs x 12s
#   RUNS=5 DURATION=20s scripts/bench-rabbitmq.sh    # longer
#   scripts/bench-rabbitmq.sh --only persistent-confirms --targets "herald rabbitmq"
#   scripts/bench-rabbitmq.sh --stop                 # stop RabbitMQ at the end
#   scripts/bench-rabbitmq.sh --uri amqp://guest:guest@host:5672/   # one external broker only
#
# Environment: RUNS (default 3), DURATION (default 12s), OUT (directory for
# the JSON results and logs; default a new temporary one), HERALD_AMQP_PORT
# (default 45672: the --fsync=always Herald; the --fsync=interval one uses
# +1000; HTTP is +1),
# RABBITMQ_DIST_PORT (Erlang distribution port, default 25672; change it if
# something else holds that port), NOFILE (open-file limit for RabbitMQ,
# default 20000: 1,000 queues and connections need more than 1024).
#
# Herald's defaults (5672, 15672) clash with RabbitMQ's, and RabbitMQ's CLI
# tools use the distribution port + 10000 (35672..35682), so Herald runs on
# 45672/45673 here. Not run in CI: it installs a system package and takes
# about 12 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

ONLY=""
STOP_AFTER=0
URI=""
TARGETS="herald rabbitmq herald-interval"
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY="$2"; shift 2 ;;
    --targets) TARGETS="$2"; shift 2 ;;
    --stop) STOP_AFTER=1; shift ;;
    --uri) URI="$2"; TARGETS="uri"; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; echo "  workloads: see WORKLOADS in $0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
RUNS="${RUNS:-3}"
DURATION="${DURATION:-12s}"
OUT="${OUT:-$(mktemp -d /tmp/herald-bench.XXXXXX)}"
HPORT="${HERALD_AMQP_PORT:-45672}"
APORT=$((HPORT + 1000))
DIST_PORT="${RABBITMQ_DIST_PORT:-25672}"
NOFILE="${NOFILE:-20000}"
mkdir -p "$OUT"

need() { # need CMD PACKAGE: install PACKAGE if CMD is missing
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "== installing $2" >&2
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq
  timeout 600 apt-get install -y -qq "$2" >/dev/null
}
need jq jq

# ---- brokers

rabbitmq_pid() { timeout 30 rabbitmqctl -q eval 'os:getpid().' 2>/dev/null | tr -d '"'; }

start_rabbitmq() {
  need rabbitmqctl rabbitmq-server
  if [ -n "$(rabbitmq_pid)" ]; then return 0; fi
  # Loopback only.
  if ! grep -q '^NODE_IP_ADDRESS=' /etc/rabbitmq/rabbitmq-env.conf 2>/dev/null; then
    echo 'NODE_IP_ADDRESS=127.0.0.1' >> /etc/rabbitmq/rabbitmq-env.conf
  fi
  echo "== starting rabbitmq-server (distribution port $DIST_PORT, nofile $NOFILE)" >&2
  local cmd="ulimit -n $NOFILE; cd /var/lib/rabbitmq; RABBITMQ_DIST_PORT=$DIST_PORT exec /usr/lib/rabbitmq/bin/rabbitmq-server -detached"
  if [ "$(id -u)" = 0 ]; then
    su rabbitmq -s /bin/sh -c "$cmd"
  else
    sh -c "$cmd"
  fi
  # await_startup fails at once while the node has not registered with epmd
  # yet (a cold start takes a few seconds), so ask again until it answers.
  local deadline=$((SECONDS + 120))
  until timeout 60 rabbitmqctl -q await_startup >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "rabbitmq-server did not start; see /var/log/rabbitmq/" >&2
      exit 1
    fi
    sleep 2
  done
}

HERALD_BIN="$OUT/herald"
echo "== building herald" >&2
go build -o "$HERALD_BIN" ./cmd/herald

HERALD_PIDS=()
start_herald() { # start_herald PORT FSYNC
  local dir="$OUT/herald-$2-data"
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 is in use; set HERALD_AMQP_PORT" >&2
    exit 1
  fi
  rm -rf "$dir"
  "$HERALD_BIN" serve --data-dir "$dir" --amqp-listen "127.0.0.1:$1" --http-listen "127.0.0.1:$(($1 + 1))" \
    --fsync "$2" --log-level warn > "$OUT/herald-$2.log" 2>&1 &
  HERALD_PIDS+=($!)
  for _ in $(seq 1 100); do
    if ! kill -0 "${HERALD_PIDS[-1]}" 2>/dev/null; then break; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "herald --fsync $2 did not start; see $OUT/herald-$2.log" >&2
  exit 1
}
cleanup() {
  for p in "${HERALD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

declare -A URIS PIDS HTTP
for t in $TARGETS; do
  case "$t" in
    herald) start_herald "$HPORT" always; URIS[$t]="amqp://guest:guest@127.0.0.1:$HPORT/"; PIDS[$t]="${HERALD_PIDS[-1]}"; HTTP[$t]=$((HPORT + 1)) ;;
    herald-interval) start_herald "$APORT" interval; URIS[$t]="amqp://guest:guest@127.0.0.1:$APORT/"; PIDS[$t]="${HERALD_PIDS[-1]}"; HTTP[$t]=$((APORT + 1)) ;;
    rabbitmq) start_rabbitmq; URIS[$t]="amqp://guest:guest@127.0.0.1:5672/"; PIDS[$t]="$(rabbitmq_pid)" ;;
    uri) URIS[$t]="$URI"; PIDS[$t]="" ;;
    *) echo "unknown target $t (herald, rabbitmq, herald-interval)" >&2; exit 2 ;;
  esac
done

{
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/{print $2}') GiB, $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "herald: $("$HERALD_BIN" version 2>/dev/null | head -1), $(go version | cut -d' ' -f3)"
  if [ -n "${PIDS[rabbitmq]:-}" ]; then
    echo "rabbitmq: $(rabbitmqctl -q version 2>/dev/null), Erlang/OTP $(rabbitmqctl -q eval 'erlang:system_info(otp_release).' 2>/dev/null | tr -d '"'), default config (classic queues)"
  fi
  echo "fsync: herald = --fsync=always (synced before the confirm, group commit); herald-interval = --fsync=interval (written before the confirm, synced every 2 min); rabbitmq = persistent messages fsynced in batches before their confirms"
  echo "runs: $RUNS x $DURATION per workload and target, targets alternating: $TARGETS"
} | tee "$OUT/machine.txt" >&2

# ---- workloads: name|flags. All publish 16-byte persistent messages to
# durable queues with a confirm window of 192, qos 200, multi-ack 50. The
# fan-outs are rate-limited (10 msg/s in, 10 msg/s per queue out): unlimited,
# the publisher outruns the consumers and the backlog, not the broker, sets
# the numbers.
OPTS="--persistent -c 192 -q 200 --multi-ack-every 50"
BASE="-s 16 $OPTS"
WORKLOADS=(
  "persistent-confirms|-x 1 -y 1 $BASE"
  "persistent-confirms-1k|-x 1 -y 1 -s 1024 $OPTS"
  "persistent-confirms-64k|-x 1 -y 1 -s 65536 $OPTS"
  "10p-10q|-x 10 -y 10 --queues 10 -u herald-bench-10q $BASE"
  "persistent-rate-5000|-x 1 -y 1 $BASE -r 5000"
  "fanout-10-rate-10|-x 1 $BASE --fanout --queues 10 -u herald-bench-fan10 -r 10"
  "fanout-1000-rate-10|-x 1 $BASE --fanout --queues 1000 -u herald-bench-fan1000 -r 10"
)

engine_stats() { # engine_stats TARGET: Herald's herald_engine counters as JSON, {} elsewhere
  local port=${HTTP[$1]:-}
  [ -n "$port" ] || { echo '{}'; return; }
  curl -s -u guest:guest "http://127.0.0.1:$port/api/overview" | jq -c '.herald_engine // {}' 2>/dev/null || echo '{}'
}

cpu_ticks() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_mib() { [ -n "$1" ] && awk '/VmRSS/{printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo nan; }
TCK=$(getconf CLK_TCK)

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

run_one() { # run_one WORKLOAD TARGET RUN FLAGS
  local name=$1 t=$2 i=$3 flags=$4 pid=${PIDS[$2]} f="$OUT/$1.$2.$3"
  echo "== $name $t run $i/$RUNS (load $(cut -d' ' -f1-3 /proc/loadavg)): herald bench amqp -h ${URIS[$t]} $flags -z $DURATION" >&2
  local c0 c1 s0 s1 e0 e1
  c0=$(cpu_ticks "$pid"); s0=$(date +%s.%N); e0=$(engine_stats "$t")
  # shellcheck disable=SC2086
  if ! timeout 600 "$HERALD_BIN" bench amqp -h "${URIS[$t]}" $flags -z "$DURATION" -json --progress 0 > "$f.json" 2> "$f.err"; then
    echo "   failed: $(tail -1 "$f.err")" >&2
    echo '{}' > "$f.json"
  fi
  c1=$(cpu_ticks "$pid"); s1=$(date +%s.%N); e1=$(engine_stats "$t")
  # Broker CPU in cores over the whole run (setup included), RSS at the end;
  # Herald's sync rounds (group commits) and fsyncs per second, and writes
  # per round, over the run.
  jq --argjson e0 "$e0" --argjson e1 "$e1" --arg secs "$(awk -v a="$s0" -v b="$s1" 'BEGIN { print b - a }')" \
    '. + (if ($e1.sync_rounds // 0) > ($e0.sync_rounds // 0) then
      {syncs_per_s: ((($e1.sync_rounds - $e0.sync_rounds) / ($secs | tonumber)) | floor),
       fsyncs_per_s: ((($e1.fsyncs - $e0.fsyncs) / ($secs | tonumber)) | floor),
       msgs_per_sync: ((($e1.synced_appends - $e0.synced_appends) / ($e1.sync_rounds - $e0.sync_rounds) * 10 | floor) / 10)}
      else {} end)' "$f.json" > "$f.tmp" && mv "$f.tmp" "$f.json"
  jq --arg cpu "$(awk -v a="$c0" -v b="$c1" -v t="$TCK" -v s0="$s0" -v s1="$s1" 'BEGIN { printf "%.3f", (b - a) / t / (s1 - s0) }')" \
    --arg rss "$(rss_mib "$pid")" \
    --arg load "$(cut -d' ' -f1 /proc/loadavg)" \
    '. + {broker_cpu_cores: ($cpu | tonumber? // null), broker_rss_mib: ($rss | tonumber? // null), load1: ($load | tonumber)}' \
    "$f.json" > "$f.tmp" && mv "$f.tmp" "$f.json"
}

col() { # col WORKLOAD TARGET JQ: median over runs
  for i in $(seq 1 "$RUNS"); do jq -r "$3 // \"nan\"" "$OUT/$1.$2.$i.json"; done | median
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.2f", a / b }'; }

SUMMARY="$OUT/summary.txt"
printf '%-23s %-15s %9s %9s %9s %8s %8s %8s %6s %7s %5s %7s %9s\n' workload target sent/s confirm/s recv/s p50_ms p99_ms cfm_p99 cpu rss_MiB load syncs/s msgs/sync | tee "$SUMMARY"
for w in "${WORKLOADS[@]}"; do
  name="${w%%|*}"
  flags="${w#*|}"
  if [ -n "$ONLY" ] && [ "$ONLY" != "$name" ]; then continue; fi
  for i in $(seq 1 "$RUNS"); do
    for t in $TARGETS; do run_one "$name" "$t" "$i" "$flags"; done
  done
  for t in $TARGETS; do # leave no backlog behind for the next workload
    # shellcheck disable=SC2086
    timeout 300 "$HERALD_BIN" bench amqp -h "${URIS[$t]}" $flags -x 0 -z 1s --progress 0 >/dev/null 2>&1 || true
  done
  for t in $TARGETS; do
    printf '%-23s %-15s %9.0f %9.0f %9.0f %8.2f %8.2f %8.2f %6.2f %7.0f %5.1f %7s %9s\n' "$name" "$t" \
      "$(col "$name" "$t" .sent_rate)" "$(col "$name" "$t" .confirmed_rate)" "$(col "$name" "$t" .received_rate)" \
      "$(col "$name" "$t" .latency_ms.p50)" "$(col "$name" "$t" .latency_ms.p99)" "$(col "$name" "$t" .confirm_latency_ms.p99)" \
      "$(col "$name" "$t" .broker_cpu_cores)" "$(col "$name" "$t" .broker_rss_mib)" "$(col "$name" "$t" .load1)" \
      "$(col "$name" "$t" .syncs_per_s)" "$(col "$name" "$t" .msgs_per_sync)" | tee -a "$SUMMARY"
  done
  if [[ " $TARGETS " == *" rabbitmq "* ]]; then
    for t in $TARGETS; do
      [ "$t" = rabbitmq ] && continue
      h=$(col "$name" "$t" .received_rate); r=$(col "$name" rabbitmq .received_rate)
      hp=$(col "$name" "$t" .latency_ms.p99); rp=$(col "$name" rabbitmq .latency_ms.p99)
      printf '%-23s %-15s recv/s ratio %s, p99 ratio %s (lower is better)\n' "$name" "$t:rabbitmq" \
        "$(ratio "$h" "$r")" "$(ratio "$hp" "$rp")" | tee -a "$SUMMARY"
    done
  fi
done
echo "== medians of $RUNS run(s) of $DURATION each; per-run JSON (with broker_cpu_cores, broker_rss_mib, load1) in $OUT" >&2

if [ "$STOP_AFTER" = 1 ] && [ -n "${PIDS[rabbitmq]:-}" ]; then
  echo "== stopping rabbitmq-server" >&2
  timeout 120 rabbitmqctl stop >&2 || true
fi
