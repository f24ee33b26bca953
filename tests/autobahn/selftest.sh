#!/usr/bin/env bash
# tests/autobahn/selftest.sh [CASES...]: proves the harness against a known-good
# echo server, reference_echo.py (Python `websockets`, with permessage-deflate),
# on loopback. Each CASES argument is one run.sh run; by default
#   '1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*'  then  '12.*,13.*'.
#
# Environment: REFERENCE_COMPRESSION (websockets|full|off, default websockets,
# see reference_echo.py), and everything run.sh reads (AUTOBAHN_PROTOCOL=echo
# makes the client request the subprotocol the reference accepts, ...).
# Exit status: the worst of the run.sh runs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -eq 0 ]; then
	set -- '1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*' '12.*,13.*'
fi

# A python3 that has `websockets`: the one on PATH, Debian's, or Debian's
# after installing python3-websockets.
PY=""
for cand in python3 /usr/bin/python3; do
	if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import websockets' >/dev/null 2>&1; then
		PY="$cand"
		break
	fi
done
if [ -z "$PY" ]; then
	if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
		echo "autobahn selftest: installing python3-websockets" >&2
		apt-get update >&2 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-websockets >&2
		PY=/usr/bin/python3
	else
		echo "autobahn selftest: no python3 with the websockets module (Debian: apt-get install python3-websockets)" >&2
		exit 2
	fi
fi

# Make sure wstest is installed before the server starts, so that a first
# run's install time is not counted in the timings.
bash "$HERE/setup.sh" >/dev/null

OUT="$(mktemp)"
"$PY" "$HERE/reference_echo.py" --compression "${REFERENCE_COMPRESSION:-websockets}" >"$OUT" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -f "$OUT"' EXIT
port=""
for _ in $(seq 1 100); do
	port="$(sed -n 's/^READY \([0-9]*\)$/\1/p' "$OUT")"
	[ -n "$port" ] && break
	kill -0 "$SERVER" 2>/dev/null || {
		echo "autobahn selftest: reference_echo.py exited" >&2
		exit 2
	}
	sleep 0.1
done
[ -n "$port" ] || {
	echo "autobahn selftest: reference_echo.py did not start" >&2
	exit 2
}
echo "autobahn selftest: reference echo server ($("$PY" -c 'import websockets; print("websockets", websockets.__version__)'), compression ${REFERENCE_COMPRESSION:-websockets}) on port $port"

worst=0
for cases in "$@"; do
	start=$(date +%s)
	rc=0
	bash "$HERE/run.sh" "ws://127.0.0.1:$port/" "$cases" || rc=$?
	echo "autobahn selftest: '$cases' exit $rc in $(($(date +%s) - start))s"
	[ "$rc" -gt "$worst" ] && worst=$rc
done
exit "$worst"
