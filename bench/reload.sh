#!/usr/bin/env bash
# Requests/s and errors of lwsws while it reloads, against the same load
# without reloads, in one run (issue 6's benchmark).
# Usage: bench/reload.sh [path/to/lwsws]   (default: target/release/lwsws)
# lwsws is pinned to CPU 0 with one worker thread; wrk runs on CPU 1 with
# kept-alive HTTP/1.1 on a 1 KiB file. Each round runs wrk for DUR twice:
# once quiet, once with SIGHUP every EVERY seconds (RELOADS of them), each
# reload changing the served file's directory, so every reload starts a new
# generation and drains the old one. Errors are wrk's socket errors plus
# non-2xx/3xx answers; they must be 0.
# Env: DUR (20s), EVERY (3), RELOADS (5), CONNS (64), ROUNDS (1). Needs: wrk.
set -euo pipefail
BIN=$(readlink -f "${1:-target/release/lwsws}")
DUR=${DUR:-20s} EVERY=${EVERY:-3} RELOADS=${RELOADS:-5} CONNS=${CONNS:-64} ROUNDS=${ROUNDS:-1}
for t in wrk taskset; do
	command -v $t >/dev/null || { echo "missing: $t (apt-get install -y wrk util-linux)"; exit 2; }
done
[ -x "$BIN" ] || { echo "no lwsws binary at $BIN (cargo build --release)"; exit 2; }
W=$(mktemp -d /tmp/bench-reload.XXXXXX); chmod 755 "$W"
P=$((20000 + RANDOM % 20000))
mkdir -p "$W/conf.d" "$W/a" "$W/b"
head -c 1024 /dev/zero | tr '\0' a > "$W/a/index.html"
head -c 1024 /dev/zero | tr '\0' b > "$W/b/index.html"
echo '{ "global": { "count-threads": "1", "drain-timeout-secs": "2" } }' > "$W/conf"
site() {
	cat > "$W/conf.d/site" <<JSON
{ "vhosts": [{ "name": "localhost", "port": "$P", "interface": "127.0.0.1", "keepalive-timeout": "5",
  "mounts": [{ "mountpoint": "/", "origin": "file://$W/$1", "default": "index.html" }] }] }
JSON
}
site a
pid=
cleanup() { [ -n "$pid" ] && { kill -TERM "$pid" 2>/dev/null || true; sleep 0.5; kill -KILL -- "-$pid" 2>/dev/null || true; }; rm -rf "$W"; }
trap cleanup EXIT
setsid taskset -c 0 "$BIN" -c "$W" -d 7 >"$W/lwsws.log" 2>&1 & pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$P/" && break; sleep 0.1; done

# wrk's summary → "REQ_PER_SEC ERRORS"
measure() {
	local out rps errs
	out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DUR" "http://127.0.0.1:$P/" 2>&1)
	rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
	errs=$(awk '/Socket errors/ {gsub(",", ""); s=$4+$6+$8+$10} /Non-2xx/ {n=$5} END {print s+n}' <<<"$out")
	echo "$rps ${errs:-0}"
}
reloader() {
	local i
	for i in $(seq "$RELOADS"); do
		sleep "$EVERY"
		if (( i % 2 )); then site b; else site a; fi
		kill -HUP "$pid"
	done
}
quiet=() busy=() total_errs=0
for r in $(seq "$ROUNDS"); do
	read -r q qe < <(measure)
	echo "round $r: no reloads:        $q req/s, $qe errors"
	reloader & rl=$!
	read -r b be < <(measure)
	wait "$rl"
	echo "round $r: $RELOADS reloads every ${EVERY}s: $b req/s, $be errors"
	quiet+=("$q") busy+=("$b")
	total_errs=$((total_errs + qe + be))
done
gens=$(grep -c "worker ready" "$W/lwsws.log" || true)
echo "generations started: $gens (1 + reloads)"
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mq=$(med "${quiet[@]}") mb=$(med "${busy[@]}")
echo "reload-ratio $(awk -v b="$mb" -v q="$mq" 'BEGIN {printf "%.2f", b/q}') errors $total_errs"
