#!/usr/bin/env bash
# tests/autobahn/lwsws.sh [LWSWS] [CASES]: runs the Autobahn|Testsuite fuzzing
# client against lwsws's `echo` protocol, as the test command does.
#
# Starts LWSWS (default target/debug/lwsws) on a free loopback port with a
# temporary configuration whose vhost offers `echo` as its default protocol,
# runs tests/autobahn/run.sh against it with CASES (default: sections 1-7 and
# 9, the non-compression cases), stops it, and exits with run.sh's status
# (0: no case FAILED). The virtualenv with wstest is set up on first use.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$(readlink -f "${1:-target/debug/lwsws}")"
cases="${2:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*}"
[ -x "$bin" ] || { echo "autobahn: no lwsws binary at $bin (cargo build)" >&2; exit 2; }

bash "$here/setup.sh" >/dev/null

work="$(mktemp -d /tmp/lwsws-autobahn-srv.XXXXXX)"
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$work/conf/conf.d" "$work/www"
echo '{ "global": { "count-threads": "1" } }' > "$work/conf/conf"
cat > "$work/conf/conf.d/autobahn" <<JSON
{ "vhosts": [{ "name": "localhost", "port": "$port", "interface": "127.0.0.1",
  "ws-protocols": [{ "echo": { "default": "1" } }],
  "mounts": [{ "mountpoint": "/", "origin": "file://$work/www" }] }] }
JSON
"$bin" -c "$work/conf" -d 1 >"$work/lwsws.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || { echo "autobahn: lwsws did not start:" >&2; cat "$work/lwsws.log" >&2; exit 2; }
	sleep 0.1
done
bash "$here/run.sh" "ws://127.0.0.1:$port/" "$cases"
