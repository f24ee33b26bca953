#!/usr/bin/env bash
# WebSocket echo benchmark: messages/s and round-trip latency of small messages
# over many connections, measured with bench/wsecho (our own load generator).
#
# Usage: bench/ws-echo.sh [ws://HOST:PORT/PATH]
#
# With a URL, that echo endpoint is measured as it is (it must select the
# subprotocol $PROTOCOL). Without one, the script starts $LWSWS
# (target/release/lwsws) on a free loopback port with a temporary configuration
# directory: one vhost with `echo` as its default ws protocol, one service
# thread ("count-threads": "1"), pinned to CPU 0; it is stopped at the end.
#
# wsecho is built in release mode into $BENCH_TARGET_DIR (~/.cache/lwsws-bench)
# and pinned to CPU 1 when taskset and two CPUs are there. For every cell of
# the matrix CONNS_LIST x SIZES it prints wsecho's human-readable line and its
# machine-readable line:
#   wsecho conns=N size=B msgs_per_s=X p50_us=.. p99_us=.. p999_us=.. errors=E
#          inflight=K secs=S open=N client_cpu=C [payload=json]
#          [deflate=1 tx_ratio=R rx_ratio=R] [srv_cpu=C]
# client_cpu / srv_cpu are the share of one core the load generator / the lwsws
# started here (supervisor and workers) used while measuring: a client_cpu near
# 1.0 means wsecho, not the server, set the pace; srv_cpu well under 1.0 means
# the server was not saturated. Every echo is checked byte for byte (see
# bench/wsecho/src/main.rs).
#
# Compression: DEFLATE=1 makes wsecho offer permessage-deflate and fail unless
# the server accepts it (lwsws does by default, "ws-deflate"); then every
# message is deflated by wsecho and inflated by the server, and the echo
# deflated by the server (when at least "ws-deflate-threshold", 64 B, long)
# and inflated by wsecho before it is checked. tx_ratio / rx_ratio are the
# compressed sizes of what was sent / what came back over their plain size.
# PAYLOAD=json sends JSON text of exactly SIZE bytes (objects like
# {"id":123,"name":"user-123","tags":["a","b"],"active":true}, numbers new in
# every message), compressible as JSON traffic is; the default (PAYLOAD unset
# or random) is printable ASCII noise. Both apply to the sanity check too.
#
# Env: CONNS_LIST ("64 512"), SIZES ("64 1024"), INFLIGHT (1), DUR (5 s),
# WARMUP (1 s), PROTOCOL (echo), THREADS (wsecho threads, 1), DEFLATE (unset:
# off; 1: permessage-deflate), PAYLOAD (random; json), LWSWS (path to the
# binary), BENCH_TARGET_DIR. Needs: cargo (to build wsecho); taskset optional.
# Exit status: 2 when something needed is missing, 1 when the sanity check
# (one connection, every echo intact) fails, else 0.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
URL=${1:-}
CONNS_LIST=${CONNS_LIST:-"64 512"} SIZES=${SIZES:-"64 1024"} INFLIGHT=${INFLIGHT:-1}
DUR=${DUR:-5} WARMUP=${WARMUP:-1} PROTOCOL=${PROTOCOL:-echo} THREADS=${THREADS:-1}
DUR=${DUR%s} WARMUP=${WARMUP%s}
DEFLATE=${DEFLATE:-} PAYLOAD=${PAYLOAD:-}
EXTRA=()
case "$DEFLATE" in
  "" | 0) ;;
  1) EXTRA+=(--deflate) ;;
  *) echo "DEFLATE must be 1 (or unset/0), not $DEFLATE"; exit 2 ;;
esac
case "$PAYLOAD" in
  "") ;;
  random | json) EXTRA+=(--payload "$PAYLOAD") ;;
  *) echo "PAYLOAD must be random or json, not $PAYLOAD"; exit 2 ;;
esac
LWSWS=${LWSWS:-$ROOT/target/release/lwsws}
BENCH_TARGET=${BENCH_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lwsws-bench}
WSECHO=$BENCH_TARGET/release/wsecho

if command -v cargo >/dev/null; then
  (cd "$HERE/wsecho" && CARGO_TARGET_DIR="$BENCH_TARGET" cargo build --release --locked -q) ||
    { echo "cannot build $HERE/wsecho"; exit 2; }
fi
[ -x "$WSECHO" ] || { echo "missing: cargo (to build $HERE/wsecho)"; exit 2; }

# Pinning: server on CPU 0, load generator on CPU 1, when possible.
PIN_SRV=() PIN_CLI=()
if command -v taskset >/dev/null && [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ]; then
  PIN_SRV=(taskset -c 0) PIN_CLI=(taskset -c 1)
else
  echo "note: not pinned (needs taskset and 2 CPUs); numbers mix client and server work"
fi

W="" SRV=""
cleanup() {
  if [ -n "$SRV" ]; then
    kill -TERM -- "-$SRV" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 -- "-$SRV" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SRV" 2>/dev/null || true
    wait "$SRV" 2>/dev/null || true
  fi
  [ -z "$W" ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ -z "$URL" ]; then
  [ -x "$LWSWS" ] || { echo "no lwsws binary at $LWSWS (cargo build --release, or set LWSWS)"; exit 2; }
  W=$(mktemp -d /tmp/bench-ws-echo.XXXXXX)
  PORT=""
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    listening "$p" || { PORT=$p; break; }
  done
  [ -n "$PORT" ] || { echo "no free port found"; exit 2; }
  mkdir -p "$W/conf.d" "$W/www"
  echo '<!doctype html><title>ws-echo bench</title>' >"$W/www/index.html"
  echo '{ "global": { "count-threads": "1" } }' >"$W/conf"
  cat >"$W/conf.d/echo" <<JSON
{ "vhosts": [{ "name": "localhost", "port": "$PORT", "interface": "127.0.0.1",
  "ws-protocols": [{ "echo": { "default": "1" } }],
  "mounts": [{ "mountpoint": "/", "origin": "file://$W/www" }] }] }
JSON
  # Room for every connection on the server side too.
  hard=$(ulimit -Hn); [ "$hard" = unlimited ] && hard=65536
  [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt 8192 ] && ulimit -Sn "$((hard < 8192 ? hard : 8192))"
  setsid "${PIN_SRV[@]}" "$LWSWS" -c "$W" >"$W/lwsws.log" 2>&1 &
  SRV=$!
  for _ in $(seq 100); do listening "$PORT" && break; kill -0 "$SRV" 2>/dev/null || break; sleep 0.1; done
  listening "$PORT" || { echo "lwsws did not listen on $PORT:"; tail -20 "$W/lwsws.log"; exit 1; }
  URL="ws://127.0.0.1:$PORT/"
  echo "lwsws $LWSWS on $URL (count-threads 1${PIN_SRV:+, CPU 0})"
fi

# CPU ticks (user + system) of every process of the server's session: lwsws
# serves from a `lwsws worker` child, not from the supervisor started here.
srv_ticks() {
  local t=0 f line
  for f in /proc/[0-9]*/stat; do
    read -r line <"$f" 2>/dev/null || continue
    # After "PID (comm) ": state ppid pgrp session ... utime (12th) stime (13th).
    set -- ${line##*) }
    [ "${4:-}" = "$SRV" ] && t=$((t + ${12} + ${13}))
  done
  echo "$t"
}
wsecho() { "${PIN_CLI[@]}" "$WSECHO" --url "$URL" --protocol "$PROTOCOL" --threads "$THREADS" "${EXTRA[@]}" "$@"; }

# Sanity: one connection, every echo intact.
out=$(wsecho --conns 1 --size 64 --duration 0.5 --warmup 0 2>&1) || true
if ! grep -q '^wsecho conns=.* errors=0 ' <<<"$out" || grep -q 'msgs_per_s=0 ' <<<"$out"; then
  echo "sanity check failed: $URL does not echo with subprotocol $PROTOCOL${EXTRA[*]:+ (${EXTRA[*]})}"
  echo "$out"
  [ -z "$W" ] || { echo "--- lwsws log:"; tail -20 "$W/lwsws.log"; }
  exit 1
fi

hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
for conns in $CONNS_LIST; do
  for size in $SIZES; do
    if [ -n "$SRV" ]; then
      # Sample the server's CPU time inside the measured window (give the
      # connections WARMUP + 0.3 s to open and warm up, stop 0.3 s early).
      wsecho --conns "$conns" --size "$size" --inflight "$INFLIGHT" --duration "$DUR" --warmup "$WARMUP" >"$W/out" 2>"$W/err" &
      cli=$!
      sleep "$(awk -v w="$WARMUP" 'BEGIN {print w + 0.3}')"
      t0=$(date +%s%N) c0=$(srv_ticks)
      sleep "$(awk -v d="$DUR" 'BEGIN {x = d - 0.6; print (x > 0.1 ? x : 0.1)}')"
      t1=$(date +%s%N) c1=$(srv_ticks)
      wait "$cli" || true
      out=$(cat "$W/out"); cat "$W/err" >&2
    else
      out=$(wsecho --conns "$conns" --size "$size" --inflight "$INFLIGHT" --duration "$DUR" --warmup "$WARMUP") || true
    fi
    human=$(grep -v '^wsecho conns=' <<<"$out" || true)
    machine=$(grep '^wsecho conns=' <<<"$out" || echo "wsecho conns=$conns size=$size failed")
    if [ -n "$SRV" ]; then
      machine+=$(awk -v c="$((c1 - c0))" -v hz="$hz" -v t="$((t1 - t0))" 'BEGIN {printf " srv_cpu=%.2f", c / hz / (t / 1e9)}')
    fi
    echo "$human"
    echo "$machine"
  done
done
