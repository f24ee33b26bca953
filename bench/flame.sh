#!/usr/bin/env bash
# Flame graph of an lwsws worker under load, as docs/performance.md shows them.
#
# Usage: bench/flame.sh SCENARIO OUT.svg [path/to/lwsws]
#   SCENARIO  static-1k | static-64k | static-1m | proxy-1k | tls-1k |
#             tls-handshake
#   OUT.svg   where the flame graph goes (the folded stacks go beside it,
#             OUT.folded, for inferno-diff-folded)
#
# lwsws (one worker thread, "count-threads": "1") runs pinned to CPU 0 on a
# loopback port with a temporary configuration, the load generator on CPU 1
# (wrk -t1 -c64, or bench's tlsload for handshakes), as ../shared/bench does;
# after WARM seconds of load, `perf record -e cpu-clock -g` samples the worker
# for SECS seconds (cpu-clock: hardware counters are not available on every
# machine). The proxy scenario puts nginx (one worker) beside the load on
# CPU 1 as the upstream. Needs: perf (linux-perf), wrk, nginx for proxy,
# inferno (cargo install inferno), openssl for tls.
# Env: SECS (10), WARM (2), CONNS (64).
set -euo pipefail
scenario=${1:?usage: $0 SCENARIO OUT.svg [lwsws]}
out=${2:?usage: $0 SCENARIO OUT.svg [lwsws]}
BIN=$(readlink -f "${3:-target/release/lwsws}")
SECS=${SECS:-10} WARM=${WARM:-2} CONNS=${CONNS:-64}
for t in perf wrk taskset inferno-collapse-perf inferno-flamegraph; do
	command -v $t >/dev/null || { echo "missing: $t"; exit 2; }
done
W=$(mktemp -d /tmp/lwsws-flame.XXXXXX); chmod 755 "$W"
P=$((20000 + RANDOM % 20000)); UP=$((P + 1))
mkdir -p "$W/conf.d" "$W/root" "$W/nginx"
for s in 1k 64k 1m; do
	n=$(numfmt --from=iec "${s^^}")
	head -c "$n" /dev/urandom | base64 -w 100 >"$W/root/f$s.txt"
	truncate -s "$n" "$W/root/f$s.txt"
done
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
	sleep 0.5
	for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
	rm -rf "$W"
}
trap cleanup EXIT

scheme=http origin="file://$W/root" tls=""
case $scenario in
static-1k | static-64k | static-1m) path="/f${scenario#static-}.txt" ;;
proxy-1k)
	path="/p/f1k.txt" origin="http://127.0.0.1:$UP/"
	cat >"$W/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $W/nginx/pid; error_log $W/nginx/error.log;
events { worker_connections 4096; }
http { access_log off; sendfile on; keepalive_requests 1000000;
  client_body_temp_path $W/nginx; proxy_temp_path $W/nginx; fastcgi_temp_path $W/nginx;
  uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
  server { listen 127.0.0.1:$UP; root $W/root; } }
CONF
	setsid taskset -c 1 nginx -c "$W/nginx/nginx.conf" >"$W/nginx.log" 2>&1 &
	pids+=($!)
	;;
tls-1k | tls-handshake)
	path="/f1k.txt" scheme=https
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
		-keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
	tls="\"host-ssl-cert\": \"$W/cert.pem\", \"host-ssl-key\": \"$W/key.pem\","
	;;
*) echo "unknown scenario $scenario"; exit 2 ;;
esac
mount="/"
[ "$scenario" = proxy-1k ] && mount="/p"
echo '{ "global": { "count-threads": "1", "server-string": "lwsws" } }' >"$W/conf"
cat >"$W/conf.d/site" <<JSON
{ "vhosts": [{ "name": "localhost", "port": "$P", "interface": "127.0.0.1", $tls
  "mounts": [{ "mountpoint": "$mount", "origin": "$origin" }] }] }
JSON
setsid taskset -c 0 "$BIN" -c "$W" >"$W/lwsws.log" 2>&1 &
pids+=($!)
url="$scheme://127.0.0.1:$P$path"
for _ in $(seq 100); do curl -ksf -o /dev/null "$url" && break; sleep 0.1; done
curl -ksf -o /dev/null "$url" || { echo "lwsws does not answer $url"; tail "$W/lwsws.log"; exit 1; }
worker=$(pgrep -P "${pids[-1]}" | head -1)

total=$((WARM + SECS + 1))
if [ "$scenario" = tls-handshake ]; then
	# ../shared/bench/tls.sh builds tlsload there on first use.
	tlsload="${BENCH_TARGET_DIR:-$HOME/.cache/lwsws-bench}/release/tlsload"
	[ -x "$tlsload" ] || { echo "no $tlsload: run ../shared/bench/tls.sh once"; exit 2; }
	taskset -c 1 "$tlsload" -c 8 -d "${total}s" -W 1 -P "$path" "127.0.0.1:$P" >"$W/load.out" 2>&1 &
else
	taskset -c 1 wrk -t1 -c"$CONNS" -d"${total}s" "$url" >"$W/load.out" 2>&1 &
fi
load=$!
sleep "$WARM"
perf record -q -e cpu-clock -F 997 -g -p "$worker" -o "$W/perf.data" -- sleep "$SECS" 2>/dev/null
wait "$load" || true
cat "$W/load.out"
perf script -i "$W/perf.data" 2>/dev/null | inferno-collapse-perf >"${out%.svg}.folded"
inferno-flamegraph --title "lwsws $scenario ($(date +%F))" <"${out%.svg}.folded" >"$out"
echo "flame graph: $out"
