#!/bin/sh
# Resource exhaustion, long form: the test
# `slowloris_and_idle_websockets_do_not_starve_a_normal_client` of
# crates/lwsws/tests/hardening_exhaustion.rs against a release build, for
# longer than the 15 s the test command gives it: 10,000 connections sending
# one header byte a second (each replaced as soon as the server closes it)
# and 1,000 idle WebSockets, while a normal client fetches a file every
# 250 ms and must have it within 1 s. The same checks as the short run
# (slow heads closed within timeout-secs, 431 for an oversized head, idle
# WebSockets still answering, the worker's peak resident size bounded and
# its descriptors back to their count before the attack); the summary line
# starting with "slowloris:" has the figures.
#
# usage: tests/stress/exhaustion.sh [SECONDS] [SLOW] [IDLE_WS]
#   SECONDS  length of the attack (default 120)
#   SLOW     slow-head connections (default 10000)
#   IDLE_WS  idle WebSockets (default 1000)
# Needs an open-file hard limit above SLOW + IDLE_WS + 500 for this shell
# (the test raises its soft limit to it; the server inherits it).
set -eu
secs=${1:-120}
slow=${2:-10000}
idle=${3:-1000}
cd "$(dirname "$0")/../.."
hard=$(ulimit -Hn)
need=$((slow + idle + 500))
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
	echo "$0: open-file hard limit $hard < $need; raise it (ulimit -Hn $need as root)" >&2
	exit 2
fi
ulimit -n "$hard"
cargo build --release -p lwsws
tdir=${CARGO_TARGET_DIR:-target}
case $tdir in /*) ;; *) tdir="$(pwd)/$tdir" ;; esac
LWSWS_BIN="$tdir/release/lwsws" \
LWSWS_ATTACK_SECS="$secs" LWSWS_SLOWLORIS="$slow" LWSWS_IDLE_WS="$idle" \
	exec cargo test -p lwsws --test hardening_exhaustion -- \
	--exact slowloris_and_idle_websockets_do_not_starve_a_normal_client --nocapture
