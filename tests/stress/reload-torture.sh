#!/bin/sh
# Reload torture, full length: N SIGHUPs (default 100), one every 200-500 ms,
# while HTTP/1.1 keep-alive and new-connection requests (files, CGI, proxy),
# HTTP/2 requests and WebSocket echo sessions keep going. Runs the ignored
# test `reload_torture_long` of crates/lwsws/tests/hardening_reload_torture.rs
# with LWSWS_TORTURE_RELOADS=N; the same checks as the short version that
# `cargo test` runs (20 reloads): 0 failed requests, WebSockets open or
# closed with 1001 at or after their generation's drain deadline, no zombie,
# one worker left, supervisor fds and VmRSS within 10 % (+8 fds, +2 MiB) of
# their values before the first SIGHUP.
#
# usage: tests/stress/reload-torture.sh [N] [SEED]
#   N     number of SIGHUPs (default 100)
#   SEED  LWSWS_TORTURE_SEED for the reload intervals (default: from the clock)
# Exit status: cargo test's (0 when every check passed). The summary line
# starts with "reload torture:".
set -eu
n=${1:-100}
case $n in
'' | *[!0-9]*) echo "usage: $0 [N] [SEED]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../.."
export LWSWS_TORTURE_RELOADS="$n"
if [ $# -ge 2 ]; then
	export LWSWS_TORTURE_SEED="$2"
fi
exec cargo test -p lwsws --test hardening_reload_torture -- \
	--ignored --exact reload_torture_long --nocapture
