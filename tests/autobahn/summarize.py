#!/usr/bin/env python3
"""Summarize an Autobahn|Testsuite fuzzingclient report (index.json).

usage: summarize.py --expected N [--fail-on B1,B2] INDEX_JSON...

Reads the index.json of one or more wstest runs (run.sh splits a selection
over several wstest processes when AUTOBAHN_JOBS > 1) and sums them up.
Prints one line per behaviour (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED,
FAILED, ...) with its count, the close behaviours that are not OK, the
failing case ids and the slowest cases. --fail-on is a comma-separated list
of behaviours that count as failures besides those below (e.g.
UNIMPLEMENTED, for a server that must negotiate permessage-deflate).

A case counts as failed the way Autobahn's own HTML report paints it red:
its behavior is FAILED (or anything but OK, NON-STRICT, INFORMATIONAL,
UNIMPLEMENTED and NO_CLOSE), or its behaviorClose is FAILED or UNCLEAN.
WRONG CODE and FAILED BY CLIENT close behaviours are listed, not failed
(the report shows them amber).

Exit status: 0 when no case failed, 1 when some did, 2 when the report is
missing, unreadable or holds fewer cases than --expected (the run stopped
early, or the server could not be reached).
"""

import argparse
import json
import sys

ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "NO_CLOSE"}
FAILING_CLOSE = {"FAILED", "UNCLEAN"}


def case_key(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expected", type=int, required=True, help="number of cases selected")
    ap.add_argument("--fail-on", default="", help="extra behaviours counted as failures")
    ap.add_argument("index", nargs="+", help="index.json of a wstest report")
    args = ap.parse_args()
    expected = args.expected
    fail_on = {b.strip().upper() for b in args.fail_on.split(",") if b.strip()}

    cases = {}
    unreadable = []
    for path in args.index:
        try:
            with open(path) as f:
                index = json.load(f)
        except (OSError, ValueError) as e:
            print("autobahn: no usable report %s: %s" % (path, e))
            unreadable.append(path)
            continue
        for agent_cases in index.values():
            cases.update(agent_cases)

    counts = {}
    close_counts = {}
    failed = []
    for cid, r in cases.items():
        b = r.get("behavior", "?")
        bc = r.get("behaviorClose", "?")
        counts[b] = counts.get(b, 0) + 1
        close_counts[bc] = close_counts.get(bc, 0) + 1
        if b not in PASSING or b in fail_on or bc in FAILING_CLOSE:
            failed.append(cid)

    print("autobahn: %d cases" % len(cases))
    for b in ORDER + sorted(set(counts) - set(ORDER)):
        print("  %-16s %d" % (b, counts.get(b, 0)))
    odd_close = {bc: n for bc, n in close_counts.items() if bc not in ("OK", "INFORMATIONAL")}
    if odd_close:
        print(
            "  close behaviours other than OK/INFORMATIONAL: "
            + ", ".join("%s %d" % (bc, n) for bc, n in sorted(odd_close.items()))
        )
        for bc in sorted(odd_close):
            ids = sorted((c for c, r in cases.items() if r.get("behaviorClose") == bc), key=case_key)
            print("    %s: %s" % (bc, " ".join(ids)))

    notable = sorted(
        (c for c, r in cases.items() if r.get("behavior") not in ("OK",) and c not in failed),
        key=case_key,
    )
    for b in ("NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"):
        ids = [c for c in notable if cases[c].get("behavior") == b]
        if ids:
            print("  %s cases: %s" % (b, " ".join(ids)))

    # A case whose handshake never completed has a meaningless duration
    # (milliseconds since the epoch); leave those out.
    timed = [(c, r) for c, r in cases.items() if 0 <= (r.get("duration") or 0) < 10**8]
    slow = sorted(timed, key=lambda kv: -(kv[1].get("duration") or 0))[:5]
    if slow:
        print(
            "  slowest cases (ms): "
            + ", ".join("%s %s" % (c, r.get("duration")) for c, r in slow)
        )

    failed.sort(key=case_key)
    status = 0
    if failed:
        print(
            "autobahn: %d FAILED (%s): %s"
            % (
                len(failed),
                "behavior FAILED%s, or close FAILED/UNCLEAN"
                % "".join("/" + b for b in sorted(fail_on)),
                " ".join(failed),
            )
        )
        for cid in failed:
            r = cases[cid]
            print(
                "  %s: behavior=%s behaviorClose=%s remoteCloseCode=%s report=%s"
                % (cid, r.get("behavior"), r.get("behaviorClose"), r.get("remoteCloseCode"), r.get("reportfile"))
            )
        status = 1
    if unreadable:
        status = 2
    if expected == 0:
        print("autobahn: error: no case matches the selection")
        status = 2
    elif len(cases) < expected:
        print(
            "autobahn: error: the report holds %d of the %d cases selected; the run stopped early "
            "or the server was unreachable" % (len(cases), expected)
        )
        status = 2
    if status == 0:
        print("autobahn: no case failed")
    return status


if __name__ == "__main__":
    sys.exit(main())
