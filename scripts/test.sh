#!/usr/bin/env bash
# test.sh - installs what the tests need when it is missing (Debian/Ubuntu,
# as root), then runs every test: unit, CLI, golden and kernel tests.
# Kernel tests build throwaway network namespaces and never touch the host's
# own rules. Where they cannot run (not root, a tool missing) build.rs has
# them reported as ignored, with the reason, by cargo test and nextest alike;
# TPROXYCTL_REQUIRE_KERNEL_TESTS=1 (set by .ci/run) compiles them in anyway,
# so that they fail with their reason instead.
set -euo pipefail
cd "$(dirname "$0")/.."

# command:package pairs the tests use
needed=(
  iptables-nft:iptables iptables-legacy:iptables ip:iproute2 ss:iproute2 nft:nftables
  setpriv:util-linux socat:socat bash:bash perl:perl-base
  systemd-analyze:systemd
  bpftool:bpftool clang:clang nsenter:util-linux unshare:util-linux
)
missing=()
for pair in "${needed[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "test.sh: installing ${pkgs[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  else
    echo "test.sh: missing ${missing[*]}; kernel tests will skip (run as root on Debian to install them)" >&2
  fi
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --no-fail-fast
  cargo test --workspace --doc
else
  cargo test --workspace --all-targets --no-fail-fast
fi
