#!/usr/bin/env bash
# tests/autobahn/setup.sh: installs the Autobahn|Testsuite fuzzing client
# (`wstest`, Python 2.7 only) into a virtualenv and prints the path of
# `wstest` on stdout (its only output there; progress goes to stderr).
#
# Idempotent: a virtualenv built from the same requirements.txt is reused
# (a stamp file holds the requirements' checksum); otherwise it is rebuilt.
#
# Environment:
#   AUTOBAHN_VENV     where the virtualenv lives
#                     (default: $HOME/.cache/lwsws-autobahn)
#   AUTOBAHN_PYTHON2  a Python 2.7 interpreter to use instead of searching
#                     (pyenv's 2.7.x, then python2.7 on PATH)
#
# Needs: a Python 2.7 with pip (pyenv's 2.7.18 on this project's machines;
# Debian 12 has no python2.7 package), a C compiler (wsaccel and autobahn's
# accelerators build from source), and PyPI.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQS="$HERE/requirements.txt"
VENV="${AUTOBAHN_VENV:-$HOME/.cache/lwsws-autobahn}"
STAMP="$VENV/.lwsws-requirements.sha256"
# The last virtualenv release that runs on, and creates, Python 2.7.
VIRTUALENV_PIN="virtualenv==20.15.1"

say() { printf 'autobahn setup: %s\n' "$*" >&2; }
die() {
	printf 'autobahn setup: error: %s\n' "$*" >&2
	exit 1
}

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ -x "$VENV/bin/wstest" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] &&
	"$VENV/bin/python" -c 'import autobahntestsuite' >/dev/null 2>&1; then
	echo "$VENV/bin/wstest"
	exit 0
fi

is_py27() {
	[ -n "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' >/dev/null 2>&1
}

find_python2() {
	local cand root
	if [ -n "${AUTOBAHN_PYTHON2:-}" ]; then
		is_py27 "$AUTOBAHN_PYTHON2" || die "AUTOBAHN_PYTHON2=$AUTOBAHN_PYTHON2 is not a working Python 2.7"
		echo "$AUTOBAHN_PYTHON2"
		return
	fi
	# pyenv's interpreters, newest 2.7 first, found without relying on
	# shims (a shim only answers for the pyenv version currently selected).
	root="$(pyenv root 2>/dev/null || true)"
	for cand in $(ls -d "${root:-$HOME/.pyenv}"/versions/2.7* "$HOME"/.pyenv/versions/2.7* 2>/dev/null | sort -rV); do
		if is_py27 "$cand/bin/python2.7"; then
			echo "$cand/bin/python2.7"
			return
		fi
	done
	for cand in python2.7 python2; do
		cand="$(command -v "$cand" 2>/dev/null || true)"
		if is_py27 "$cand"; then
			echo "$cand"
			return
		fi
	done
	# pyenv is there but without a 2.7: try to build one (this downloads
	# CPython's source, which fails on a machine without internet).
	if command -v pyenv >/dev/null 2>&1; then
		say "no Python 2.7 found; trying 'pyenv install -s 2.7.18'"
		if pyenv install -s 2.7.18 >&2; then
			cand="$(pyenv root)/versions/2.7.18/bin/python2.7"
			if is_py27 "$cand"; then
				echo "$cand"
				return
			fi
		fi
	fi
	# A Debian release that still ships Python 2.7 (Debian 12 does not).
	if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
		if apt-cache policy python2.7 2>/dev/null | grep -q 'Candidate: [0-9]'; then
			say "installing Debian's python2.7"
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python2.7 python2.7-dev >&2
			if is_py27 /usr/bin/python2.7; then
				echo /usr/bin/python2.7
				return
			fi
		fi
	fi
	die "no Python 2.7 found. Autobahn|Testsuite runs only on Python 2.7. Install one (e.g. 'pyenv install 2.7.18') or point AUTOBAHN_PYTHON2 at it."
}

apt_install_missing() {
	# apt_install_missing COMMAND PACKAGE...: installs the Debian packages
	# when COMMAND is not on PATH.
	local cmd="$1"
	shift
	command -v "$cmd" >/dev/null 2>&1 && return 0
	if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
		say "installing $* (for $cmd)"
		apt-get update >&2 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2 ||
			die "apt-get install $* failed"
	else
		die "'$cmd' is missing; install it (Debian: apt-get install $*)"
	fi
}

apt_install_missing cc gcc libc6-dev
PY2="$(find_python2)"
say "using $PY2 ($("$PY2" -c 'import sys; print(sys.version.split()[0])'))"
"$PY2" -c 'import ssl, zlib' 2>/dev/null || die "$PY2 lacks the ssl or zlib module (needed by pip)"
"$PY2" -m pip --version >/dev/null 2>&1 || die "$PY2 has no pip (try: $PY2 -m ensurepip)"

# Python 2.7 has no venv module: bring virtualenv in a throwaway folder,
# not into the interpreter's own site-packages.
BOOT="$(mktemp -d)"
trap 'rm -rf "$BOOT"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_PYTHON_VERSION_WARNING=1
say "bootstrapping $VIRTUALENV_PIN"
"$PY2" -m pip install --quiet --target "$BOOT/lib" "$VIRTUALENV_PIN" >&2 ||
	die "pip could not install $VIRTUALENV_PIN for $PY2 (is PyPI reachable?)"

rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
say "creating virtualenv $VENV"
PYTHONPATH="$BOOT/lib" VIRTUALENV_OVERRIDE_APP_DATA="$BOOT/app-data" \
	"$PY2" -m virtualenv --quiet --no-periodic-update "$VENV" >&2 ||
	die "virtualenv could not create $VENV"

say "installing requirements.txt (autobahntestsuite and its pinned dependencies)"
"$VENV/bin/python" -m pip install --quiet -r "$REQS" >&2 ||
	die "pip install -r $REQS failed"
"$VENV/bin/python" -m pip check >&2 || die "pip check found inconsistent dependencies in $VENV"
"$VENV/bin/wstest" --autobahnversion >&2 || die "$VENV/bin/wstest does not run"

echo "$want" >"$STAMP"
echo "$VENV/bin/wstest"
