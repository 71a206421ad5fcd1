# Shared by the scripts that run a client library's own test suite against a
# fresh Herald (amqp091-integration.sh, amqplib-suite.sh). Source it; it
# defines functions only.
#
# Those suites hard-wire ports (amqplib: amqp://localhost on 5672;
# amqp091-go: the management API at localhost:15672), which a RabbitMQ or
# another Herald on this machine may hold. So when this shell may make a
# network namespace (root, unshare(1)), Herald and the suite run in a private
# one with its own loopback, where those ports are always free and nothing on
# the host is reached; otherwise they run on the host after a check that the
# ports are free.

# can_netns: whether run_isolated will use a private network namespace (set
# NETNS=0 to run on the host instead).
can_netns() {
  [ "${NETNS:-1}" != 0 ] && command -v unshare >/dev/null && unshare --net true 2>/dev/null
}

# run_isolated CMD...: runs CMD in a private network namespace with its
# loopback up when can_netns, else on the host.
run_isolated() {
  if can_netns; then
    unshare --net -- bash -c 'ip link set lo up 2>/dev/null || true; exec "$@"' isolated "$@"
  else
    "$@"
  fi
}

# require_free_port HOST PORT WHY: fails with WHY when HOST:PORT is taken.
require_free_port() {
  if ! python3 -c '
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.close()' "$1" "$2" 2>/dev/null; then
    echo "port $2 on $1 is in use:" >&2
    (ss -ltnp 2>/dev/null | grep ":$2 " || true) >&2
    echo "$3; stop what listens there and run again (or run as root: the suite then gets a network namespace of its own)" >&2
    exit 1
  fi
}

# free_port: a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_herald BIN DATA_DIR AMQP_LISTEN HTTP_PORT LOG: starts herald in the
# background with its management API on 127.0.0.1:HTTP_PORT, sets
# herald_pid, and returns once the API answers (fails if herald dies or is
# not up within 30 s). stop_herald stops it; call it from an EXIT trap.
start_herald() {
  "$1" serve --data-dir "$2" --log-level warn --amqp-listen "$3" --http-listen "127.0.0.1:$4" >"$5" 2>&1 &
  herald_pid=$!
  for i in $(seq 1 300); do
    if curl -fsS -u guest:guest "http://127.0.0.1:$4/api/overview" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$herald_pid" 2>/dev/null || [ "$i" = 300 ]; then
      echo "herald did not start:" >&2
      cat "$5" >&2
      exit 1
    fi
    sleep 0.1
  done
}

stop_herald() {
  if [ -n "${herald_pid:-}" ] && kill -0 "$herald_pid" 2>/dev/null; then
    kill -TERM "$herald_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$herald_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$herald_pid" 2>/dev/null || true
  fi
}
