#!/usr/bin/env bash
# tests/autobahn/run.sh URL CASES: runs the Autobahn|Testsuite fuzzing client
# against the WebSocket server at URL and summarizes the result.
#
#   tests/autobahn/run.sh ws://127.0.0.1:7681/ '1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*'
#   tests/autobahn/run.sh ws://127.0.0.1:7681/ '12.*,13.*'
#
# CASES is a comma-separated list of Autobahn case ids or patterns ("9.*",
# "6.4.3"). The server must echo every message back (lwsws's `echo`
# protocol). The virtualenv with `wstest` is made by setup.sh on first use.
#
# Prints one line per behaviour (OK, NON-STRICT, INFORMATIONAL,
# UNIMPLEMENTED, FAILED) and the ids of the failed cases.
# Exit status: 0 no case failed; 1 some case FAILED (behavior or
# behaviorClose); 2 the run itself went wrong (bad arguments, no report,
# fewer cases in the report than selected, e.g. server unreachable, timeout).
#
# Environment:
#   AUTOBAHN_PROTOCOL    subprotocol to request (Sec-WebSocket-Protocol),
#                        e.g. "echo"; default: none requested
#   AUTOBAHN_ORIGIN      Origin header to send; default: none
#   AUTOBAHN_EXCLUDE     comma-separated case ids/patterns to leave out
#   AUTOBAHN_FAIL_ON     extra behaviours that count as failure, e.g.
#                        "UNIMPLEMENTED" (so a server that declines
#                        permessage-deflate fails sections 12/13)
#   AUTOBAHN_AGENT       name of the server in the report (default: lwsws)
#   AUTOBAHN_REPORT_DIR  keep the report (HTML + JSON) there; by default it is
#                        written to a temporary folder that is removed
#                        unless a case failed or the run went wrong
#   AUTOBAHN_TIMEOUT     wall-clock limit for wstest in seconds (default 1800)
#   AUTOBAHN_VERBOSE=1   stream wstest's output instead of only keeping it
#   AUTOBAHN_VENV, AUTOBAHN_PYTHON2: see setup.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
	sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
[ $# -eq 2 ] || usage
URL="$1"
CASES="$2"
case "$URL" in
ws://* | wss://*) ;;
*)
	echo "autobahn: URL must start with ws:// or wss://: $URL" >&2
	exit 2
	;;
esac

WSTEST="$(bash "$HERE/setup.sh")" || {
	echo "autobahn: setup.sh failed; see above" >&2
	exit 2
}

if [ -n "${AUTOBAHN_REPORT_DIR:-}" ]; then
	WORK="$AUTOBAHN_REPORT_DIR"
	mkdir -p "$WORK"
	KEEP=1
else
	WORK="$(mktemp -d "${TMPDIR:-/tmp}/lwsws-autobahn.XXXXXX")"
	KEEP=0
fi
cleanup() {
	if [ "$KEEP" = 0 ]; then
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

SPEC="$WORK/spec.json"
REPORTS="$WORK/reports"
LOG="$WORK/wstest.log"
rm -rf "$REPORTS"

URL="$URL" CASES="$CASES" REPORTS="$REPORTS" python3 - "$SPEC" <<'EOF'
import json, os, sys

def patterns(s):
    return [p.strip() for p in s.split(",") if p.strip()]

server = {"agent": os.environ.get("AUTOBAHN_AGENT") or "lwsws", "url": os.environ["URL"]}
if os.environ.get("AUTOBAHN_PROTOCOL"):
    server["protocols"] = patterns(os.environ["AUTOBAHN_PROTOCOL"])
if os.environ.get("AUTOBAHN_ORIGIN"):
    server["origin"] = os.environ["AUTOBAHN_ORIGIN"]
spec = {
    "outdir": os.environ["REPORTS"],
    "servers": [server],
    "cases": patterns(os.environ["CASES"]),
    "exclude-cases": patterns(os.environ.get("AUTOBAHN_EXCLUDE", "")),
    "exclude-agent-cases": {},
}
if not spec["cases"]:
    sys.exit("autobahn: no cases selected")
with open(sys.argv[1], "w") as f:
    json.dump(spec, f, indent=2)
EOF

# How many cases the selection means, asked of the test suite itself: a
# selection of none would leave wstest waiting forever, and the count tells
# whether the report is complete.
expected="$("$(dirname "$WSTEST")/python" - "$SPEC" <<'EOF'
import json, sys
from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
from autobahntestsuite.caseset import CaseSet
spec = json.load(open(sys.argv[1]))
print(len(CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories).parseSpecCases(spec)))
EOF
)" || {
	echo "autobahn: could not resolve the case selection $CASES" >&2
	exit 2
}
if [ "$expected" -eq 0 ]; then
	echo "autobahn: no Autobahn case matches '$CASES'" >&2
	exit 2
fi

echo "autobahn: $URL, $expected cases (${CASES})${AUTOBAHN_PROTOCOL:+, protocol $AUTOBAHN_PROTOCOL}, wstest $WSTEST"
start=$(date +%s.%N)
rc=0
# wstest writes its report files relative to the current directory in places;
# run it inside the work folder.
if [ "${AUTOBAHN_VERBOSE:-0}" = 1 ]; then
	(cd "$WORK" && timeout "${AUTOBAHN_TIMEOUT:-1800}" "$WSTEST" -m fuzzingclient -s "$SPEC" 2>&1 | tee "$LOG") || rc=$?
else
	(cd "$WORK" && timeout "${AUTOBAHN_TIMEOUT:-1800}" "$WSTEST" -m fuzzingclient -s "$SPEC" >"$LOG" 2>&1) || rc=$?
fi
end=$(date +%s.%N)
elapsed=$(python3 -c "print('%.1f' % ($end - $start))")

if [ "$rc" -ne 0 ]; then
	if [ "$rc" -eq 124 ]; then
		echo "autobahn: wstest did not finish within ${AUTOBAHN_TIMEOUT:-1800}s"
	else
		echo "autobahn: wstest failed (exit $rc)"
	fi
	echo "autobahn: last lines of $LOG:"
	tail -n 20 "$LOG" | sed 's/^/  | /'
	KEEP=1
	echo "autobahn: work folder kept: $WORK"
	exit 2
fi
if grep -q '^Connection to .* failed' "$LOG"; then
	grep '^Connection to .* failed' "$LOG" | head -n 3 | sed 's/^/autobahn: /'
fi

src=0
python3 "$HERE/summarize.py" "$REPORTS/index.json" "$expected" "${AUTOBAHN_FAIL_ON:-}" || src=$?
echo "autobahn: wstest ran ${elapsed}s for $expected cases"
if [ "$src" -ne 0 ]; then
	KEEP=1
	echo "autobahn: report kept: $REPORTS/index.html (wstest log: $LOG)"
elif [ "$KEEP" = 1 ]; then
	echo "autobahn: report: $REPORTS/index.html"
fi
exit "$src"
