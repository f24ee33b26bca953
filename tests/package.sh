#!/usr/bin/env bash
# tests/package.sh: builds the Debian package with `cargo deb`, checks its
# contents and lintian, then (as root) installs it, checks the installed
# server's example configuration and purges it again. tests/run runs it near
# the end; it can also be run alone: `bash tests/package.sh`.
#
# The package's metadata is [package.metadata.deb] in crates/lwsws/Cargo.toml;
# its maintainer scripts are in debian/, its man page in share/man/lwsws.8.
#
# Environment: CARGO_TARGET_DIR (default target/; the package is written to
# its debian-package/ directory). Installing needs root and a machine whose
# root filesystem may be changed (a CI container): it purges an installed
# lwsws package first, and it deletes an existing system user "lwsws" that no
# process runs as, so that the install is seen to create it (the package
# leaves the user in place on purge, as tests/run expects).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
out_dir="$target_dir/debian-package"

header() {
	printf '\n==> %s\n' "$*"
}

fail() {
	echo "tests/package.sh: FAIL: $*" >&2
	exit 1
}

if ! cargo deb --version >/dev/null 2>&1; then
	header "cargo install cargo-deb --locked"
	cargo install cargo-deb --locked --version '^3.8'
fi
for tool in dpkg-deb lintian; do
	command -v "$tool" >/dev/null 2>&1 ||
		fail "$tool is missing (apt-get install $([ "$tool" = dpkg-deb ] && echo dpkg || echo "$tool"))"
done

# The binary looks for its shipped files (_lws_ddir_) in the directory fixed
# at build time by LWSWS_DATA_DIR: the package installs them in
# /usr/share/lwsws, not in this checkout.
header "cargo deb -p lwsws (LWSWS_DATA_DIR=/usr/share)"
rm -rf "$out_dir"
mkdir -p "$out_dir"
LWSWS_DATA_DIR=/usr/share cargo deb -p lwsws --output "$out_dir/"
shopt -s nullglob
debs=("$out_dir"/lwsws_*.deb)
shopt -u nullglob
[ "${#debs[@]}" -eq 1 ] || fail "expected one lwsws_*.deb in $out_dir, found: ${debs[*]:-none}"
deb="${debs[0]}"
echo "package: $deb"

header "dpkg-deb -c: contents"
contents="$(dpkg-deb -c "$deb")"
echo "$contents"
paths="$(awk '{ print $6 }' <<<"$contents" | sed 's|^\./|/|')"
expected=(
	/usr/bin/lwsws
	/usr/lib/systemd/system/lwsws.service
	/etc/logrotate.d/lwsws
	/etc/lwsws/conf
	/usr/share/man/man8/lwsws.8.gz
	/usr/share/doc/lwsws/copyright
	/usr/share/doc/lwsws/changelog.Debian.gz
)
# Every example vhost file and every shipped file of share/lwsws/.
while IFS= read -r f; do
	expected+=("/$f")
done < <(find etc/lwsws/conf.d -type f ! -name '.*' | sort)
while IFS= read -r f; do
	expected+=("/usr/$f")
done < <(find share/lwsws -type f | sort)
missing=0
for p in "${expected[@]}"; do
	if ! grep -qxF "$p" <<<"$paths"; then
		echo "missing from the package: $p" >&2
		missing=1
	fi
done
[ "$missing" -eq 0 ] || fail "files are missing from $deb"
cmp -s systemd/lwsws.service <(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/lib/systemd/system/lwsws.service) ||
	fail "the packaged unit differs from systemd/lwsws.service"
echo "all ${#expected[@]} expected files present"

header "man page: every configuration key of share/lwsws/lwsws.schema.json"
# lwsws.8 is written by hand: a key added to the configuration must be
# documented there too.
man_text="$(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/share/man/man8/lwsws.8.gz | zcat |
	groff -man -Tascii -rHY=0 -rLL=250n -P-cbou)"
undocumented="$(python3 -c '
import json, re, sys
schema = json.load(open(sys.argv[1]))
words = set(re.findall(r"[A-Za-z0-9_-]+", sys.stdin.read()))
keys = set()
for d in schema.get("$defs", {}).values():
    keys.update(d.get("properties", {}))
print(" ".join(sorted(k for k in keys if k not in words)))
' share/lwsws/lwsws.schema.json <<<"$man_text")"
[ -z "$undocumented" ] || fail "keys missing from share/man/lwsws.8: $undocumented"
echo "every key documented"

header "man page: each key's entry states its default; signals, options and exit codes"
# Each key is named on a .B/.BR line of its own entry, which (or the line
# after it) says its default, that it is required, or that it has no effect.
undefaulted="$(python3 -c '
import json, re, sys
schema = json.load(open(sys.argv[1]))
lines = open(sys.argv[2]).read().replace("\\-", "-").splitlines()
keys = set()
for d in schema.get("$defs", {}).values():
    keys.update(d.get("properties", {}))
bad = []
for k in sorted(keys):
    word = re.compile(r"(^\.BR? |[ ,\x22])" + re.escape(k) + r"([ ,\x22]|$)")
    ok = any(
        l.startswith(".B") and word.search(l)
        and re.search(r"default|required|no effect", l + " " + (lines[i + 1] if i + 1 < len(lines) else ""))
        for i, l in enumerate(lines))
    if not ok:
        bad.append(k)
print(" ".join(bad))
' share/lwsws/lwsws.schema.json share/man/lwsws.8)"
[ -z "$undefaulted" ] || fail "keys whose entry in share/man/lwsws.8 states no default: $undefaulted"
section() { # the text of section $1 of the rendered page
	awk -v s="$1" '$0 == s { on = 1; next } /^[A-Z][A-Z ]+$/ { on = 0 } on' <<<"$man_text"
}
for sig in SIGHUP SIGTERM SIGINT SIGUSR1; do
	section SIGNALS | grep -qw -- "$sig" || fail "SIGNALS does not describe $sig"
done
for code in 0 1 2 3; do
	section "EXIT STATUS" | grep -qE "^ +$code( |$)" || fail "EXIT STATUS does not describe status $code"
done
for opt in -c --config-dir -d -D --daemon --check --print-config --schema --help --version; do
	section OPTIONS | grep -qE -- "(^|[ ,])$opt([ ,=]|$)" || fail "OPTIONS does not describe $opt"
done
section COMMANDS | grep -qE -- "token --key-file file --user name" || fail "COMMANDS does not describe lwsws token"
echo "defaults, signals, exit codes and options documented"

header "MANWIDTH=80 man --warnings -l share/man/lwsws.8"
man_warnings="$(MANWIDTH=80 man --warnings -l share/man/lwsws.8 2>&1 >/dev/null)"
[ -z "$man_warnings" ] || fail "man warns about share/man/lwsws.8: $man_warnings"
echo "no warnings"

header "dpkg-deb: control, conffiles, maintainer scripts"
control_dir="$(mktemp -d)"
trap 'rm -rf "$control_dir"' EXIT
dpkg-deb -e "$deb" "$control_dir"
cat "$control_dir/control"
echo "conffiles:"
cat "$control_dir/conffiles"
conffiles_expected=(/etc/lwsws/conf /etc/logrotate.d/lwsws)
while IFS= read -r f; do
	conffiles_expected+=("/$f")
done < <(find etc/lwsws/conf.d -type f ! -name '.*' | sort)
for c in "${conffiles_expected[@]}"; do
	grep -qxF "$c" "$control_dir/conffiles" || fail "$c is not a conffile"
done
grep -q 'adduser --system' "$control_dir/postinst" || fail "postinst does not create the user"
grep -q 'deb-systemd-helper enable lwsws.service' "$control_dir/postinst" || fail "postinst does not enable lwsws.service"
grep -q 'run/systemd/system' "$control_dir/postinst" || fail "postinst starts lwsws.service even without systemd"
for script in postinst prerm postrm; do
	[ -x "$control_dir/$script" ] || fail "no $script"
	sh -n "$control_dir/$script" || fail "$script is not valid sh"
	echo "--- $script"
	cat "$control_dir/$script"
done

header "lintian $deb"
# lintian exits non-zero on errors; the E: lines decide, and are listed.
lintian_out="$(lintian --tag-display-limit 0 "$deb" 2>&1 || true)"
echo "${lintian_out:-(no tags)}"
if grep -q '^E: ' <<<"$lintian_out"; then
	fail "lintian reports errors"
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "tests/package.sh: not root: skipping dpkg -i of $deb and the checks of the installed package" >&2
	header "package built and checked (not installed)"
	exit 0
fi

# An earlier run (or a failed one) may have left the package installed.
if dpkg -s lwsws >/dev/null 2>&1; then
	header "dpkg --purge lwsws (installed before)"
	dpkg --purge lwsws
fi
if [ -e /etc/lwsws ]; then
	fail "/etc/lwsws exists but belongs to no installed lwsws package; move it away first"
fi
# Let the install create the user, unless something runs as it now.
if id lwsws >/dev/null 2>&1; then
	if pgrep -u lwsws >/dev/null 2>&1; then
		echo "tests/package.sh: processes run as lwsws; keeping the user (its creation is not tested)" >&2
	else
		header "userdel lwsws (the package creates it)"
		userdel lwsws
	fi
fi
if ! id lwsws >/dev/null 2>&1 && getent group lwsws >/dev/null; then
	groupdel lwsws
fi

trap 'rm -rf "$control_dir"; dpkg --purge lwsws >/dev/null 2>&1 || true' EXIT
# A maintainer script that fails half-way may still let dpkg succeed (the
# systemd snippets end in "|| true"): its shell errors are failures too.
script_errors() {
	! grep -E 'lwsws\.(preinst|postinst|prerm|postrm): ' <<<"$1"
}

header "dpkg -i $deb"
dpkg_out="$(DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" 2>&1)" || { echo "$dpkg_out"; fail "dpkg -i failed"; }
echo "$dpkg_out"
script_errors "$dpkg_out" || fail "errors in the maintainer scripts"

header "checks of the installed package"
id lwsws || fail "the system user lwsws was not created"
[[ "$(getent passwd lwsws)" == *:/nonexistent:* ]] || fail "lwsws's home is not /nonexistent"
[ -d /var/log/lwsws ] || fail "/var/log/lwsws was not created"
[ "$(stat -c '%U:%G %a' /var/log/lwsws)" = "root:adm 750" ] ||
	fail "/var/log/lwsws is $(stat -c '%U:%G %a' /var/log/lwsws), expected root:adm 750"
[ "$(stat -c '%U:%G %a' /var/lib/lwsws/acme)" = "root:root 700" ] ||
	fail "/var/lib/lwsws/acme is $(stat -c '%U:%G %a' /var/lib/lwsws/acme), expected root:root 700"
ls -ld /var/log/lwsws /var/lib/lwsws/acme
if command -v deb-systemd-helper >/dev/null 2>&1; then
	[ -L /etc/systemd/system/multi-user.target.wants/lwsws.service ] ||
		fail "lwsws.service is not enabled"
	echo "lwsws.service enabled: $(readlink /etc/systemd/system/multi-user.target.wants/lwsws.service)"
fi
[ -f /usr/share/man/man8/lwsws.8.gz ] || fail "no man page"
zcat /usr/share/man/man8/lwsws.8.gz | groff -man -Tutf8 -ww -z 2>&1 | { ! grep .; } || fail "groff warns about the man page"
# Without LWSWS_DATA_DIR in the environment (as from a shell): the data
# directory built in must be the installed /usr/share.
check="$(env -u LWSWS_DATA_DIR /usr/bin/lwsws --check -c /etc/lwsws 2>&1)" || true
echo "lwsws --check -c /etc/lwsws: $check"
[ "$check" = "configuration ok" ] || fail "lwsws --check -c /etc/lwsws did not print exactly 'configuration ok'"
printed="$(env -u LWSWS_DATA_DIR /usr/bin/lwsws --print-config -c /etc/lwsws)"
grep -qF '"file:///usr/share/lwsws/test-server"' <<<"$printed" ||
	fail "the installed binary does not find its files in /usr/share/lwsws"
/usr/bin/lwsws --version

# The upgrade path of the scripts (prerm upgrade, postinst configure with the
# old version): installing the same package again.
header "dpkg -i $deb (again: upgrade)"
dpkg_out="$(DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" 2>&1)" || { echo "$dpkg_out"; fail "dpkg -i (upgrade) failed"; }
echo "$dpkg_out"
script_errors "$dpkg_out" || fail "errors in the maintainer scripts"
[ "$(env -u LWSWS_DATA_DIR /usr/bin/lwsws --check -c /etc/lwsws 2>&1)" = "configuration ok" ] ||
	fail "lwsws --check -c /etc/lwsws fails after the upgrade"

header "dpkg --purge lwsws"
dpkg_out="$(dpkg --purge lwsws 2>&1)" || { echo "$dpkg_out"; fail "dpkg --purge failed"; }
echo "$dpkg_out"
script_errors "$dpkg_out" || fail "errors in the maintainer scripts"
trap 'rm -rf "$control_dir"' EXIT
for p in /usr/bin/lwsws /etc/lwsws /var/log/lwsws /var/lib/lwsws /etc/systemd/system/multi-user.target.wants/lwsws.service; do
	[ ! -e "$p" ] && [ ! -L "$p" ] || fail "$p is left after purge"
done
id lwsws >/dev/null || fail "purge removed the user lwsws (tests/run needs it)"

header "package ok: $deb"
