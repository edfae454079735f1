#!/usr/bin/env bash
# bench-forwarder.sh - build the release binary and run the shared forwarder
# benchmark (../shared/bench/forwarder-bench.sh) with tproxyctl's forwarder as
# the target, next to direct loopback, socat and HAProxy in the same run.
#
# The benchmark installs its own REDIRECT rules in a throwaway namespace and
# runs FORWARDER_CMD there as uid 5678, so the forwarder is started in a mode
# that touches no iptables: `tproxyctl forwarder` never does. Defaults are
# pinned (PIN=0: every process on CPU 0); override any knob of the benchmark
# through the environment (TARGETS, THR_SECS, PIN, ...). Needs root.
#
# Extra arguments are appended to the forwarder's command line, e.g.
#   scripts/bench-forwarder.sh --workers 2
# TPROXYCTL_BIN=path skips the build and benchmarks that binary (e.g. one
# built from another commit, for a before/after comparison).
#
# MODE=modes compares the redirection modes instead, in one run and through
# the same forwarder: no proxy (direct), `install transparent-proxy` (iptables
# REDIRECT) and `install transparent-proxy --ebpf-enabled` (cgroup hooks,
# sockops, getsockopt), with an application namespace joined to a server
# namespace by a veth pair (redirected traffic must leave the host: loopback
# destinations are never redirected, in either mode). It reports throughput,
# p50/p99 and the added p50, connections per second, and the median time of
# install and uninstall in each mode (INSTALL_RUNS, default 5). The eBPF mode
# attaches to a child cgroup made for the run and pins in a bpffs mounted on
# a temporary directory; both are removed on exit.
#   MODE=modes PIN=0 scripts/bench-forwarder.sh
set -euo pipefail

top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
bench="$top/../shared/bench/forwarder-bench.sh"
[ -f "$bench" ] || { echo "bench-forwarder: $bench not found (shared/ must sit beside the repository)" >&2; exit 2; }

if [ -z "${TPROXYCTL_BIN:-}" ]; then
  cargo build --release --manifest-path "$top/Cargo.toml" --bin tproxyctl >&2
  TPROXYCTL_BIN="${CARGO_TARGET_DIR:-$top/target}/release/tproxyctl"
fi
if [ "${MODE:-shared}" = modes ]; then
  exec bash "$top/scripts/bench-modes.sh" "$bench" "$TPROXYCTL_BIN" "$@"
fi

# The forwarder runs as uid 5678: give it a copy under a world-readable directory.
dir=$(mktemp -d /tmp/tproxyctl-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
install -m 755 "$TPROXYCTL_BIN" "$dir/tproxyctl"

# No receipt: the benchmark's rules are not an install. Admin off keeps the
# namespace's ports to the ones the benchmark knows about.
FORWARDER_CMD="$dir/tproxyctl forwarder --redirect-outbound-port ${FORWARDER_PORT:-15001} --redirect-inbound=false --kuma-dp-user ${FORWARDER_UID:-5678} --receipt $dir/no-receipt.json --admin-address off ${*:-}"
export FORWARDER_CMD
export PIN="${PIN:-0}"
echo "bench-forwarder: FORWARDER_CMD=$FORWARDER_CMD PIN=$PIN" >&2
bash "$bench"
