#!/usr/bin/env bash
# WebSocket broadcast benchmark: what sharing lws-mirror-protocol rooms
# between two lwsws instances through Redis ("ws-broadcast") costs, against
# one instance with in-process rooms, measured with bench/wsroom (our own
# load generator).
#
# Usage: bench/ws-broadcast.sh [path/to/lwsws]
#
# Two setups, started once on free loopback ports (20000-40000) with
# temporary configuration directories and stopped at the end:
#   local  one lwsws (no ws-broadcast); all CONNS connections on it;
#   redis  a redis-server (no persistence) and two lwsws, both with
#          "ws-broadcast": "redis://127.0.0.1:PORT"; half the connections
#          on each, so a message reaches the sender's instance directly and
#          the other one through Redis.
# Every lwsws has one service thread ("count-threads": "1") and one vhost
# `localhost` offering lws-mirror-protocol; every server (lwsws, redis) is
# pinned to CPU 0 (the same one core for all server work in both setups),
# wsroom to CPU 1, when taskset and two CPUs are there.
#
# wsroom puts every connection in one mirror room (a new room name per run);
# each keeps one binary message of SIZE bytes in flight, sending the next one
# when its own comes back through the room, so every member receives every
# member's messages. For each size, ROUNDS rounds alternate local and redis;
# each run prints a row and wsroom's machine-readable line:
#   wsroom conns=N urls=U size=B deliveries_per_s=X p50_us=.. p99_us=..
#          p999_us=.. cross_p99_us=.. order_errors=.. dup_errors=.. lost=..
#          gaps=.. missing=.. closed=.. bad=.. connect_errors=.. open=..
#          secs=.. sync_s=.. sends_per_s=.. client_cpu=.. srv_cpu=..
#          srv_cpu_each=.. setup=local|redis round=R
# deliveries/s: messages received by all connections per second (about
# CONNS x sends/s); latency: receive time - send time in the message, for
# every delivery; cross_p99: deliveries that crossed instances (redis only);
# errors: order_errors + dup_errors + lost + gaps + missing + closed + bad +
# connect_errors (all should be 0; see bench/wsroom/src/main.rs; a run with
# errors also shows wsroom's own lines); srv_cpu: share of one core used by the
# servers (supervisors, workers, redis) while measuring. Then per size the
# medians, and at the end, per size:
#   ws-broadcast-redis-vs-local SIZE RATIO
# (median redis deliveries/s over median local deliveries/s). Warnings and
# errors the servers logged are shown at the end.
#
# Env: ROUNDS (3), DUR (5 s measured per run), WARMUP (1 s), CONNS (64),
# SIZES ("64 16384"), LWSWS (path to the binary, if not given as argument),
# REDIS_SERVER (redis-server), BENCH_TARGET_DIR. Needs: cargo (to build
# wsroom), redis-server (Debian: apt-get install redis-server); taskset
# optional. Exit status: 2 when something needed is missing, 1 when a server
# does not start, else 0 (failed runs are reported, not fatal).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
ROUNDS=${ROUNDS:-3} DUR=${DUR:-5} WARMUP=${WARMUP:-1} CONNS=${CONNS:-64}
SIZES=${SIZES:-"64 16384"}
DUR=${DUR%s} WARMUP=${WARMUP%s}
LWSWS=${1:-${LWSWS:-$ROOT/target/release/lwsws}}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
BENCH_TARGET=${BENCH_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lwsws-bench}
WSROOM=$BENCH_TARGET/release/wsroom

[ -x "$LWSWS" ] || { echo "no lwsws binary at $LWSWS (cargo build --release, or pass its path)"; exit 2; }
command -v "$REDIS_SERVER" >/dev/null ||
  { echo "missing: $REDIS_SERVER (Debian: apt-get install redis-server; or set REDIS_SERVER)"; exit 2; }
[ "$CONNS" -ge 2 ] 2>/dev/null || { echo "CONNS must be at least 2, not $CONNS"; exit 2; }
for s in $SIZES; do
  [ "$s" -ge 20 ] 2>/dev/null || { echo "SIZES: each at least 20 (bytes), not $s"; exit 2; }
done

if command -v cargo >/dev/null; then
  (cd "$HERE/wsroom" && CARGO_TARGET_DIR="$BENCH_TARGET" cargo build --release --locked -q) ||
    { echo "cannot build $HERE/wsroom"; exit 2; }
fi
[ -x "$WSROOM" ] || { echo "missing: cargo (to build $HERE/wsroom)"; exit 2; }

# Pinning: servers on CPU 0, load generator on CPU 1, when possible.
PIN_SRV=() PIN_CLI=()
if command -v taskset >/dev/null && [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ]; then
  PIN_SRV=(taskset -c 0) PIN_CLI=(taskset -c 1)
else
  echo "note: not pinned (needs taskset and 2 CPUs); numbers mix client and server work"
fi

W="" SIDS=()
cleanup() {
  local s
  for s in "${SIDS[@]}"; do kill -TERM -- "-$s" 2>/dev/null || true; done
  for s in "${SIDS[@]}"; do
    for _ in $(seq 20); do kill -0 -- "-$s" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$s" 2>/dev/null || true
    wait "$s" 2>/dev/null || true
  done
  [ -z "$W" ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port: sets PORT to a free port not handed out before.
USED=" " PORT=""
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    case "$USED" in *" $p "*) continue ;; esac
    listening "$p" || { USED+="$p "; PORT=$p; return; }
  done
  echo "no free port found"
  exit 2
}
# wait_listen PORT SID LOG NAME
wait_listen() {
  for _ in $(seq 100); do listening "$1" && return; kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
  echo "$4 did not listen on $1:"
  tail -20 "$3"
  exit 1
}

W=$(mktemp -d /tmp/bench-ws-broadcast.XXXXXX)
mkdir -p "$W/www"
echo '<!doctype html><title>ws-broadcast bench</title>' >"$W/www/index.html"
# Room for every connection on the server side too.
hard=$(ulimit -Hn); [ "$hard" = unlimited ] && hard=65536
[ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt 8192 ] && ulimit -Sn "$((hard < 8192 ? hard : 8192))"
# Messages up to the largest size (lwsws's own default is 32 MiB).
MAXMSG=65536
for s in $SIZES; do [ "$((s + 1024))" -gt "$MAXMSG" ] && MAXMSG=$((s + 1024)); done

# start_lwsws NAME [REDIS_URL]: sets PORT_<NAME> and SID_<NAME>.
start_lwsws() {
  local name=$1 redis=${2:-} port dir sid global
  free_port
  port=$PORT
  dir=$W/$name
  mkdir -p "$dir/conf.d"
  global='"count-threads": "1"'
  [ -z "$redis" ] || global+=", \"ws-broadcast\": \"$redis\""
  echo "{ \"global\": { $global } }" >"$dir/conf"
  cat >"$dir/conf.d/room" <<JSON
{ "vhosts": [{ "name": "localhost", "port": "$port", "interface": "127.0.0.1",
  "ws-protocols": [{ "lws-mirror-protocol": {} }],
  "ws-max-message-size": "$MAXMSG",
  "mounts": [{ "mountpoint": "/", "origin": "file://$W/www" }] }] }
JSON
  setsid "${PIN_SRV[@]}" "$LWSWS" -c "$dir" >"$W/$name.log" 2>&1 &
  sid=$!
  SIDS+=("$sid")
  wait_listen "$port" "$sid" "$W/$name.log" "lwsws ($name)"
  printf -v "PORT_$name" %s "$port"
  printf -v "SID_$name" %s "$sid"
}

free_port
RPORT=$PORT
mkdir -p "$W/redis"
setsid "${PIN_SRV[@]}" "$REDIS_SERVER" --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$W/redis" >"$W/redis.log" 2>&1 &
SID_redis=$!
SIDS+=("$SID_redis")
wait_listen "$RPORT" "$SID_redis" "$W/redis.log" "redis-server"
start_lwsws local
start_lwsws a "redis://127.0.0.1:$RPORT"
start_lwsws b "redis://127.0.0.1:$RPORT"
echo "lwsws $LWSWS: local on $PORT_local; a on $PORT_a and b on $PORT_b sharing rooms through $REDIS_SERVER on $RPORT (count-threads 1${PIN_SRV:+, all on CPU 0})"
echo "wsroom: $CONNS conns, $DUR s after SYNC + $WARMUP s warm-up, sizes $SIZES, $ROUNDS round(s)${PIN_CLI:+, on CPU 1}"

# field NAME LINE: the value of NAME= in a machine-readable line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

FAILED=0
declare -A RATES P99S CROSS ERRS
for size in $SIZES; do
  for round in $(seq "$ROUNDS"); do
    for setup in local redis; do
      room="bench-$size-$round-$setup"
      if [ "$setup" = local ]; then
        args=(--url "ws://127.0.0.1:$PORT_local/" --srv-session "lwsws=$SID_local")
      else
        args=(--url "ws://127.0.0.1:$PORT_a/" --url "ws://127.0.0.1:$PORT_b/"
          --srv-session "lwsws-a=$SID_a" --srv-session "lwsws-b=$SID_b" --srv-session "redis=$SID_redis")
      fi
      rc=0
      "${PIN_CLI[@]}" "$WSROOM" "${args[@]}" --conns "$CONNS" --size "$size" --duration "$DUR" \
        --warmup "$WARMUP" --room "$room" >"$W/out" 2>"$W/err" || rc=$?
      machine=$(grep '^wsroom conns=' "$W/out" || true)
      if [ "$rc" != 0 ] || [ -z "$machine" ]; then
        FAILED=$((FAILED + 1))
        echo "$setup size=$size round=$round: wsroom failed (exit $rc)"
        cat "$W/out" "$W/err"
        continue
      fi
      rate=$(field deliveries_per_s "$machine") p99=$(field p99_us "$machine")
      cross=$(field cross_p99_us "$machine")
      errs=0
      for f in order_errors dup_errors lost gaps missing closed bad connect_errors; do errs=$((errs + $(field "$f" "$machine"))); done
      RATES[$setup.$size]+=" $rate" P99S[$setup.$size]+=" $p99" ERRS[$setup.$size]+=" $errs"
      [ "$setup" = local ] || CROSS[$setup.$size]+=" $cross"
      printf '%-5s size=%-6s round %s: %10s deliveries/s  p99 %9s us  cross_p99 %9s us  errors %s  srv_cpu %s (%s)\n' \
        "$setup" "$size" "$round" "$rate" "$p99" "$([ "$setup" = local ] && echo - || echo "$cross")" \
        "$errs" "$(field srv_cpu "$machine")" "$(field srv_cpu_each "$machine")"
      [ "$errs" = 0 ] || grep -v '^wsroom conns=' "$W/out" || true
      [ ! -s "$W/err" ] || sed 's/^/  /' "$W/err" | head -8
      echo "$machine setup=$setup round=$round"
    done
  done
done

echo "--- medians over $ROUNDS round(s)"
for size in $SIZES; do
  for setup in local redis; do
    printf '%-5s size=%-6s %10s deliveries/s  p99 %9s us  cross_p99 %9s us  errors %s\n' "$setup" "$size" \
      "$(median <<<"${RATES[$setup.$size]:-}")" "$(median <<<"${P99S[$setup.$size]:-}")" \
      "$([ "$setup" = local ] && echo - || median <<<"${CROSS[$setup.$size]:-}")" \
      "$(tr ' ' '\n' <<<"${ERRS[$setup.$size]:-}" | awk '{s += $1} END {print s + 0}')"
  done
done

# What the servers logged beyond the start-up lines.
for f in local a b; do
  notes=$(grep -E 'WARN|ERROR' "$W/$f.log" || true)
  [ -z "$notes" ] || { echo "--- lwsws ($f) logged $(wc -l <<<"$notes") warning/error line(s); first ones:"; head -5 <<<"$notes"; }
done
notes=$(grep -iE 'output buffer|closed for|error|warning' "$W/redis.log" | grep -v 'overcommit_memory\|TCP backlog\|Transparent Huge' || true)
[ -z "$notes" ] || { echo "--- redis-server logged:"; head -5 <<<"$notes"; }

for size in $SIZES; do
  l=$(median <<<"${RATES[local.$size]:-}") r=$(median <<<"${RATES[redis.$size]:-}")
  awk -v s="$size" -v l="$l" -v r="$r" 'BEGIN {
    if (l == "-" || r == "-" || l + 0 == 0) printf "ws-broadcast-redis-vs-local %s -\n", s
    else printf "ws-broadcast-redis-vs-local %s %.3f\n", s, r / l }'
done
[ "$FAILED" = 0 ] || echo "($FAILED run(s) failed)"
