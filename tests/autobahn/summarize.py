#!/usr/bin/env python3
"""Summarize an Autobahn|Testsuite fuzzingclient report (index.json).

usage: summarize.py INDEX_JSON EXPECTED_COUNT [FAIL_ON]

Prints one line per behaviour (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED,
FAILED, ...) with its count, the close behaviours that are not OK, the
failing case ids and the slowest cases. FAIL_ON is a comma-separated list
of behaviours that count as failures (default "FAILED"); a case whose
behaviorClose is FAILED always counts as failed.

Exit status: 0 when no case failed, 1 when some did, 2 when the report is
missing, unreadable or holds fewer cases than EXPECTED_COUNT (the run
stopped early, or the server could not be reached).
"""

import json
import sys

ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]


def case_key(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    path, expected = sys.argv[1], int(sys.argv[2])
    fail_on = {"FAILED"}
    if len(sys.argv) == 4 and sys.argv[3].strip():
        fail_on |= {b.strip().upper() for b in sys.argv[3].split(",") if b.strip()}

    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print("autobahn: no usable report %s: %s" % (path, e))
        return 2

    cases = {}
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
        if b in fail_on or bc == "FAILED":
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
            "autobahn: FAILED cases (%s): %s"
            % ("behaviour in " + "/".join(sorted(fail_on)) + " or close FAILED", " ".join(failed))
        )
        for cid in failed:
            r = cases[cid]
            print(
                "  %s: behavior=%s behaviorClose=%s remoteCloseCode=%s report=%s"
                % (cid, r.get("behavior"), r.get("behaviorClose"), r.get("remoteCloseCode"), r.get("reportfile"))
            )
        status = 1
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
