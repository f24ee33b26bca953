#!/usr/bin/env bash
# CGI throughput of lwsws against nginx + fcgiwrap, side by side in one run.
# Usage: bench/cgi.sh [path/to/lwsws]   (default: target/release/lwsws)
# Both front ends are pinned to CPU 0 with one worker; wrk runs on CPU 1.
# The CGI program is a trivial shell script, so fork+exec dominates both.
# Env: DUR (5s), CONNS (16), ROUNDS (3). Needs: nginx, fcgiwrap, spawn-fcgi, wrk.
set -euo pipefail
BIN=$(readlink -f "${1:-target/release/lwsws}")
DUR=${DUR:-5s} CONNS=${CONNS:-16} ROUNDS=${ROUNDS:-3}
for t in nginx fcgiwrap spawn-fcgi wrk taskset; do
	command -v $t >/dev/null || { echo "missing: $t (apt-get install -y nginx fcgiwrap spawn-fcgi wrk)"; exit 2; }
done
[ -x "$BIN" ] || { echo "no lwsws binary at $BIN (cargo build --release)"; exit 2; }
W=$(mktemp -d /tmp/bench-cgi.XXXXXX); chmod 755 "$W"
P1=$((20000 + RANDOM % 20000)); P2=$((P1 + 1))
mkdir -p "$W/lwsws/conf.d" "$W/nginx" "$W/cgi"
cat > "$W/cgi/hello.cgi" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\nhello from cgi\n'
CGI
chmod 755 "$W/cgi/hello.cgi"
echo '{ "global": { "count-threads": "1", "cgi-max-processes": "1024" } }' > "$W/lwsws/conf"
cat > "$W/lwsws/conf.d/b" <<JSON
{ "vhosts": [{ "name": "localhost", "port": "$P1", "interface": "127.0.0.1",
  "mounts": [{ "mountpoint": "/cgi", "origin": "cgi://$W/cgi/hello.cgi" }] }] }
JSON
cat > "$W/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $W/nginx/nginx.pid; error_log $W/nginx/error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/nginx; fastcgi_temp_path $W/nginx;
  proxy_temp_path $W/nginx; uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
  server { listen 127.0.0.1:$P2;
    location /cgi { include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $W/cgi/hello.cgi; fastcgi_pass unix:$W/fcgi.sock; } } }
CONF
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done; sleep 0.3; for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
setsid taskset -c 0 "$BIN" -c "$W/lwsws" -d 1 >"$W/lwsws.log" 2>&1 & pids+=($!)
# fcgiwrap with as many children as connections, so it is not the bottleneck by design.
setsid taskset -c 0 spawn-fcgi -n -s "$W/fcgi.sock" -M 666 -F 1 -- /usr/sbin/fcgiwrap -c "$CONNS" >"$W/fcgi.log" 2>&1 & pids+=($!)
setsid taskset -c 0 nginx -c "$W/nginx/nginx.conf" >"$W/nginx.log" 2>&1 & pids+=($!)
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
wait_port $P1 || { echo "lwsws did not start"; cat "$W/lwsws.log"; exit 1; }
wait_port $P2 || { echo "nginx did not start"; cat "$W/nginx/error.log"; exit 1; }
for _ in $(seq 50); do [ -S "$W/fcgi.sock" ] && break; sleep 0.1; done
for p in $P1 $P2; do
	body=$(curl -fsS "http://127.0.0.1:$p/cgi") || { echo "port $p did not serve the CGI"; exit 1; }
	[ "$body" = "hello from cgi" ] || { echo "port $p served: $body"; exit 1; }
done
rps() { taskset -c 1 wrk -t1 -c"$CONNS" -d"$DUR" "http://127.0.0.1:$1/cgi" | awk '/Requests\/sec/ {print int($2)} /Non-2xx|Socket errors/ {print "ERR " $0 > "/dev/stderr"}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
l=(); n=()
for _ in $(seq "$ROUNDS"); do l+=("$(rps $P1)"); n+=("$(rps $P2)"); done
L=$(printf '%s\n' "${l[@]}" | median); N=$(printf '%s\n' "${n[@]}" | median)
printf 'cgi trivial  lwsws %8s req/s   nginx+fcgiwrap %8s req/s   ratio %s\n' "$L" "$N" "$(awk -v a="$L" -v b="$N" 'BEGIN {printf "%.2f", a / b}')"
