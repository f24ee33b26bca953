#!/usr/bin/env bash
# Fuzzing with cargo fuzz (libFuzzer): runs each target of fuzz/ for a given
# time, starting from a fresh copy of its committed seeds (fuzz/seeds/<t>/),
# so the seeds stay small and what the run finds stays out of the tree.
#
# usage: tests/stress/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  libFuzzer's -max_total_time per target (default 600)
#   TARGET              targets to run (default: all, as `cargo fuzz list`)
# environment:
#   FUZZ_WORKDIR        where the working corpora, logs and the targets'
#                       fixture files go (default: a new directory under
#                       ${TMPDIR:-/tmp}); kept afterwards
#   CARGO_TARGET_DIR    build directory (default: fuzz/target)
#
# cargo fuzz needs a nightly compiler (-Zsanitizer=address); with a stable
# one the script sets RUSTC_BOOTSTRAP=1, which lets stable rustc accept the
# nightly flags. cargo-fuzz is installed with `cargo install` if missing.
#
# Prints one summary line per target ("fuzz: TARGET: ..." with the runs
# executed, final coverage, corpus size and whether it crashed) and exits 1
# if any target crashed, after printing the crash artifact's path (under
# fuzz/artifacts/TARGET/). fuzz/README.md says how a crash becomes a
# regression test.
set -euo pipefail

secs=${1:-600}
case $secs in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
	exit 2
	;;
esac
shift || true

cd "$(dirname "$0")/../../fuzz"
fuzz_dir=$(pwd)

if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "fuzz: installing cargo-fuzz" >&2
	cargo install cargo-fuzz --locked
fi
if ! rustc --version | grep -q nightly; then
	export RUSTC_BOOTSTRAP=1
fi

if [ $# -gt 0 ]; then
	targets=("$@")
else
	mapfile -t targets < <(cargo fuzz list)
fi

# Longest input per target: enough for what the target parses, small
# enough to keep executions fast.
max_len() {
	case $1 in
	config) echo 16384 ;;
	ws_frame) echo 8192 ;;
	file_path | ws_token) echo 2048 ;;
	*) echo 4096 ;;
	esac
}

work=${FUZZ_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/lwsws-fuzz.XXXXXX")}
mkdir -p "$work"
echo "fuzz: ${#targets[@]} target(s), ${secs}s each; corpora and logs in $work"

# Build every target once, before the clock of the first one starts.
cargo fuzz build

failed=0
for t in "${targets[@]}"; do
	if [ ! -d "seeds/$t" ]; then
		echo "fuzz: $t: no seeds/$t directory" >&2
		failed=1
		continue
	fi
	corpus="$work/corpus/$t"
	log="$work/$t.log"
	rm -rf "$corpus"
	mkdir -p "$corpus" "artifacts/$t"
	cp seeds/"$t"/* "$corpus"/
	cmd=(cargo fuzz run "$t" "$corpus" -- "-max_total_time=$secs"
		-rss_limit_mb=2048 "-max_len=$(max_len "$t")" -timeout=60
		-print_final_stats=1)
	echo "fuzz: $t: ${cmd[*]}" >"$log"
	start=$(date +%s)
	rc=0
	# The targets' fixture directories (std::env::temp_dir) go there too.
	mkdir -p "$work/tmp"
	TMPDIR="$work/tmp" "${cmd[@]}" >>"$log" 2>&1 || rc=$?
	took=$(($(date +%s) - start))
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	last=$(grep -E '^#[0-9]+' "$log" | tail -n1 || true)
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	files=$(find "$corpus" -type f | wc -l)
	artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
	crash=no
	if [ "$rc" -ne 0 ] || [ -n "$artifact" ]; then
		crash=yes
		failed=1
	fi
	echo "fuzz: $t: ${took}s runs=${runs:-?} cov=${cov:-?} ft=${ft:-?} corpus=$files crash=$crash"
	grep -E '^(#[0-9]+[[:space:]]+DONE|Done|stat::)' "$log" | sed "s/^/fuzz: $t:   /" || true
	if [ "$crash" = yes ]; then
		echo "fuzz: $t: exit status $rc; log: $log"
		if [ -n "$artifact" ]; then
			case $artifact in /*) ;; *) artifact="$fuzz_dir/$artifact" ;; esac
			echo "fuzz: $t: crash artifact: $artifact"
		fi
		grep -E -m5 'panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY' "$log" |
			sed "s/^/fuzz: $t:   /" || true
	fi
done
exit $failed
