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
# Exit status: 0 no case failed; 1 some case failed (behavior FAILED, or
# behaviorClose FAILED or UNCLEAN: what Autobahn's HTML report shows red;
# see summarize.py); 2 the run itself went wrong (bad arguments, no report,
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
	sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
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
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	if [ "$KEEP" = 0 ]; then
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
# A kept work folder may hold an earlier run's job folders.
rm -rf "$WORK"/job[0-9]*

JOBS="${AUTOBAHN_JOBS:-1}"
TIMEOUT="${AUTOBAHN_TIMEOUT:-1800}"
case "$JOBS" in
'' | *[!0-9]* | 0)
	echo "autobahn: AUTOBAHN_JOBS must be a positive number: $JOBS" >&2
	exit 2
	;;
esac

# The selection as wstest's spec (servers, case patterns, exclusions).
URL="$URL" CASES="$CASES" python3 - "$WORK/spec.json" <<'EOF'
import json, os, sys

def patterns(s):
    return [p.strip() for p in s.split(",") if p.strip()]

server = {"agent": os.environ.get("AUTOBAHN_AGENT") or "lwsws", "url": os.environ["URL"]}
if os.environ.get("AUTOBAHN_PROTOCOL"):
    server["protocols"] = patterns(os.environ["AUTOBAHN_PROTOCOL"])
if os.environ.get("AUTOBAHN_ORIGIN"):
    server["origin"] = os.environ["AUTOBAHN_ORIGIN"]
spec = {
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

# The test suite itself resolves the patterns into case ids (a selection of
# none would leave wstest waiting forever, and the count tells whether the
# report is complete), and the ids are dealt round-robin to AUTOBAHN_JOBS
# wstest processes, each with its own folder jobN/ (spec.json, reports/,
# wstest.log). The output is the number of cases, then the job folders.
mapfile -t resolved < <("$(dirname "$WSTEST")/python" - "$WORK" "$JOBS" <<'EOF'
import json, os, sys
from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
from autobahntestsuite.caseset import CaseSet

work, jobs = sys.argv[1], int(sys.argv[2])
spec = json.load(open(os.path.join(work, "spec.json")))
caseset = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
for c in caseset.resolveCasePatternList(spec["cases"]):
    if c not in caseset.CasesIndices:
        sys.stderr.write("autobahn: no Autobahn case %s\n" % c)
        sys.exit(1)
ids = caseset.parseSpecCases(spec)
print(len(ids))
for k in range(min(jobs, len(ids))):
    d = os.path.join(work, "job%d" % (k + 1))
    os.mkdir(d)
    part = dict(spec, cases=ids[k::jobs], outdir=os.path.join(d, "reports"))
    part["exclude-cases"] = []
    with open(os.path.join(d, "spec.json"), "w") as f:
        json.dump(part, f, indent=2)
    print(d)
EOF
) || true
expected="${resolved[0]:-}"
if [ -z "$expected" ]; then
	echo "autobahn: could not resolve the case selection '$CASES'" >&2
	exit 2
fi
if [ "$expected" -eq 0 ]; then
	echo "autobahn: no Autobahn case matches '$CASES'" >&2
	exit 2
fi
JOBDIRS=("${resolved[@]:1}")

echo "autobahn: $URL, $expected cases (${CASES})${AUTOBAHN_PROTOCOL:+, protocol $AUTOBAHN_PROTOCOL}, ${#JOBDIRS[@]} wstest process(es), $WSTEST"
start=$(date +%s.%N)
for dir in "${JOBDIRS[@]}"; do
	(
		# wstest writes some files relative to the current directory.
		cd "$dir"
		rc=0
		if [ "${AUTOBAHN_VERBOSE:-0}" = 1 ]; then
			timeout "$TIMEOUT" "$WSTEST" -m fuzzingclient -s spec.json 2>&1 | tee wstest.log || rc=$?
		else
			timeout "$TIMEOUT" "$WSTEST" -m fuzzingclient -s spec.json >wstest.log 2>&1 || rc=$?
		fi
		echo "$rc" >rc
	) &
	PIDS+=($!)
done
wait
PIDS=()
end=$(date +%s.%N)
elapsed=$(python3 -c "print('%.1f' % ($end - $start))")

broken=0
INDEXES=()
for dir in "${JOBDIRS[@]}"; do
	rc="$(cat "$dir/rc" 2>/dev/null || echo '?')"
	if [ "$rc" != 0 ]; then
		if [ "$rc" = 124 ]; then
			echo "autobahn: wstest did not finish within ${TIMEOUT}s ($dir)"
		else
			echo "autobahn: wstest failed (exit $rc, $dir)"
		fi
		echo "autobahn: last lines of $dir/wstest.log:"
		tail -n 20 "$dir/wstest.log" | sed 's/^/  | /'
		broken=1
	fi
	grep '^Connection to .* failed' "$dir/wstest.log" | head -n 3 | sed 's/^/autobahn: /' || true
	INDEXES+=("$dir/reports/index.json")
done

src=0
python3 "$HERE/summarize.py" --expected "$expected" --fail-on "${AUTOBAHN_FAIL_ON:-}" "${INDEXES[@]}" || src=$?
echo "autobahn: wstest ran ${elapsed}s for $expected cases"
[ "$broken" = 0 ] || src=2
if [ "$src" -ne 0 ] || [ "$KEEP" = 1 ]; then
	KEEP=1
	for dir in "${JOBDIRS[@]}"; do
		echo "autobahn: report: $dir/reports/index.html (wstest log: $dir/wstest.log)"
	done
fi
exit "$src"
