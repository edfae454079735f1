#!/usr/bin/env bash
# check-package.sh [DEB] - builds the Debian package (cargo deb), installs it
# on THIS machine with dpkg -i, as CI does, and checks what an operator gets:
# tproxyctl from /usr/bin, its man pages and completions in the system
# directories, the systemd units (verified by systemd-analyze, disabled), the
# conffile, and a dry run with the installed conffile. It changes the host
# (a package, and the user kuma-dp as the install-on-a-VM steps create it):
# run it as root on a throwaway machine, container or VM. With DEB, that
# package is installed instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "check-package.sh: run as root (it installs a package)" >&2; exit 2; }

fail() { echo "check-package.sh: $*" >&2; exit 1; }

deb=${1:-}
if [ -z "$deb" ]; then
  # pinned, --locked: the same cargo-deb every run (see README.md, Install)
  cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked --version 3.8.0
  deb=$(cargo deb --locked | tail -n1)
fi
[ -f "$deb" ] || fail "no package at '$deb'"
echo "check-package.sh: installing $deb" >&2
dpkg -i "$deb" >/dev/null

version=$(dpkg-deb -f "$deb" Version)
[ "$(command -v tproxyctl)" = /usr/bin/tproxyctl ] || fail "tproxyctl is not /usr/bin/tproxyctl"
got=$(/usr/bin/tproxyctl --version)
[ "$got" = "tproxyctl ${version%-*}" ] || fail "tproxyctl --version says '$got', the package is $version"

for page in tproxyctl tproxyctl-install-transparent-proxy tproxyctl-uninstall-transparent-proxy \
  tproxyctl-forwarder tproxyctl-verify tproxyctl-status; do
  man -w "$page" >/dev/null ||
    fail "man -w $page found nothing (does /etc/dpkg/dpkg.cfg.d exclude /usr/share/man?)"
done
man -w tproxyctl

for f in /usr/share/bash-completion/completions/tproxyctl \
  /usr/share/zsh/vendor-completions/_tproxyctl \
  /usr/share/fish/vendor_completions.d/tproxyctl.fish; do
  [ -s "$f" ] || fail "missing completion $f"
done

# The documentation the README links to, beside it (dpkg.cfg.d may exclude /usr/share/doc).
for f in /usr/share/doc/tproxyctl/README.md /usr/share/doc/tproxyctl/docs/install-on-a-vm.md \
  /usr/share/doc/tproxyctl/docs/troubleshooting.md; do
  [ -s "$f" ] || fail "missing $f (is /usr/share/doc excluded by /etc/dpkg/dpkg.cfg.d?)"
done

units=(/usr/lib/systemd/system/tproxyctl-install.service /usr/lib/systemd/system/tproxyctl-forwarder.service)
out=$(systemd-analyze verify "${units[@]}" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
for u in "${units[@]}"; do
  state=$(systemctl is-enabled "$(basename "$u")" 2>/dev/null || true)
  [ "$state" = disabled ] || fail "$(basename "$u") is '$state', not disabled"
done

dpkg-query -W -f='${Conffiles}\n' tproxyctl | grep -q '^ /etc/tproxyctl/config.yaml ' ||
  fail "/etc/tproxyctl/config.yaml is not a conffile"

# The install-on-a-VM steps: the kuma-dp user, then the unit's command as a dry run.
id kuma-dp >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin kuma-dp
plan=$(/usr/bin/tproxyctl install transparent-proxy --config /etc/tproxyctl/config.yaml --dry-run)
grep -q -- '-A KUMA_MESH_OUTBOUND' <<<"$plan" || fail "the dry run planned no KUMA_MESH_OUTBOUND rules:
$plan"
echo "check-package.sh: $deb installs and works" >&2
