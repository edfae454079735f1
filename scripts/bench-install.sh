#!/usr/bin/env bash
# bench-install.sh - how long install and uninstall take and how many processes
# they start, in a throwaway network namespace, per backend:
#   defaults     the default rule set (dual-stack: a veth gives the namespace IPv6)
#   10k          a configuration that plans more than 10,000 rules
#   per-rule     the default IPv4+IPv6 rules applied with one iptables call per
#                rule (what a naive tool does), for comparison
# Wall times are the median of RUNS runs (default 7). "lock ms" is the time to
# take install's lock, "kernel ms" the time to get the kernel's form of the
# plan in a throwaway namespace (it runs side by side with iptables-restore
# --test, so it adds less than that to the install); both come from
# `install --verbose`'s timings line. Needs root, iproute2 and iptables.
# Changes nothing outside the namespace, which is removed on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-7}
BACKENDS=${BACKENDS:-"nft legacy"}
[ "$(id -u)" = 0 ] || { echo "bench-install: must run as root" >&2; exit 2; }

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
BIN="$root/target/release/tproxyctl"
WORK=$(mktemp -d /tmp/tpbench.XXXXXX)
NS="tpbench-$$"
PEER="tpbench-peer-$$"
cleanup() {
  ip netns del "$NS" 2>/dev/null || true
  ip netns del "$PEER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
ip netns add "$PEER"
ip -n "$NS" link set lo up
ip -n "$NS" link add va type veth peer name vb netns "$PEER"
ip -n "$NS" addr add 10.99.0.1/24 dev va
ip -n "$NS" -6 addr add fd00:99::1/64 dev va nodad
ip -n "$NS" link set va up

# more than 10,000 rules: 5,000 excluded inbound and 5,000 excluded outbound ports
{
  echo "redirect:"
  echo "  inbound:"
  echo "    excludePorts: [$(seq -s, 10000 14999)]"
  echo "  outbound:"
  echo "    excludePorts: [$(seq -s, 20000 24999)]"
} > "$WORK/10k.yaml"

median() { sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", (b-a)/1e6}'; }

executables() {
  local m=$1
  echo "iptables:/usr/sbin/iptables-$m,iptables-save:/usr/sbin/iptables-$m-save,iptables-restore:/usr/sbin/iptables-$m-restore,ip6tables:/usr/sbin/ip6tables-$m,ip6tables-save:/usr/sbin/ip6tables-$m-save,ip6tables-restore:/usr/sbin/ip6tables-$m-restore"
}

# step LOG NAME: the milliseconds of one step of a `--verbose` timings line
step() { sed -n "s/.*timings:.*$2 \([0-9.]*\) ms.*/\1/p" "$1" | head -n1; }

# run LABEL BACKEND ARGS... : prints "label backend rules install_ms install_procs lock_ms kernel_ms uninstall_ms uninstall_procs"
run() {
  local label=$1 backend=$2; shift 2
  local exes; exes=$(executables "$backend")
  local ins=() uns=() locks=() canon=() ip=0 up=0 rules=0 i t0 t1
  for i in $(seq 1 "$RUNS"); do
    t0=$(date +%s%N)
    TPROXYCTL_TRACE_EXEC=1 ip netns exec "$NS" "$BIN" install transparent-proxy --verbose \
      --kuma-dp-user daemon --iptables-executables "$exes" --receipt "$WORK/receipt.json" "$@" \
      2> "$WORK/install.log" > /dev/null || { cat "$WORK/install.log" >&2; exit 1; }
    t1=$(date +%s%N)
    ins+=("$(ms "$t0" "$t1")")
    locks+=("$(step "$WORK/install.log" lock)")
    canon+=("$(step "$WORK/install.log" "(of which kernel's form)")")
    ip=$(grep -c '^# \[exec\]' "$WORK/install.log" || true)
    rules=$(ip netns exec "$NS" sh -c "iptables-$backend-save; ip6tables-$backend-save" | grep -c '^-A' || true)
    t0=$(date +%s%N)
    TPROXYCTL_TRACE_EXEC=1 ip netns exec "$NS" "$BIN" uninstall transparent-proxy \
      --receipt "$WORK/receipt.json" 2> "$WORK/uninstall.log" || { cat "$WORK/uninstall.log" >&2; exit 1; }
    t1=$(date +%s%N)
    uns+=("$(ms "$t0" "$t1")")
    up=$(grep -c '^# \[exec\]' "$WORK/uninstall.log" || true)
  done
  printf '%-10s %-7s %7s %11s %8s %8s %10s %13s %8s\n' "$label" "$backend" "$rules" \
    "$(printf '%s\n' "${ins[@]}" | median)" "$ip" "$(printf '%s\n' "${locks[@]}" | median)" \
    "$(printf '%s\n' "${canon[@]}" | median)" "$(printf '%s\n' "${uns[@]}" | median)" "$up"
}

# The default rules, one iptables process per rule and chain (IPv4 and IPv6).
per_rule() {
  local backend=$1 t0 t1 times=() n=0 i
  ip netns exec "$NS" "$BIN" install transparent-proxy --dry-run --kuma-dp-user daemon \
    --iptables-executables "$(executables "$backend")" 2>/dev/null > "$WORK/plan.txt"
  awk -v b="$backend" '
    /^### IPv4/ {tool="iptables-" b}
    /^### IPv6/ {tool="ip6tables-" b}
    /^\* / {table=$2}
    /^-[NAI] / {print tool " -t " table " " $0}' "$WORK/plan.txt" > "$WORK/per-rule.sh"
  n=$(wc -l < "$WORK/per-rule.sh")
  for i in $(seq 1 "$RUNS"); do
    t0=$(date +%s%N)
    ip netns exec "$NS" sh "$WORK/per-rule.sh"
    t1=$(date +%s%N)
    times+=("$(ms "$t0" "$t1")")
    ip netns exec "$NS" sh -c "for t in iptables-$backend ip6tables-$backend; do \$t -t nat -F; \$t -t nat -X; done"
  done
  printf '%-10s %-7s %7s %11s %8s %8s %10s %13s %8s\n' "per-rule" "$backend" "$(grep -c -- ' -[AI] ' "$WORK/per-rule.sh")" \
    "$(printf '%s\n' "${times[@]}" | median)" "$n" "-" "-" "-" "-"
}

echo "bench-install: $(uname -r), $(nproc) CPU(s), $RUNS runs each (median wall time)"
printf '%-10s %-7s %7s %11s %8s %8s %10s %13s %8s\n' case backend rules "install ms" procs "lock ms" "kernel ms" "uninstall ms" procs
for b in $BACKENDS; do
  run defaults "$b"
  run 10k-v4 "$b" --config "$WORK/10k.yaml" --ip-family-mode ipv4
  run 20k-dual "$b" --config "$WORK/10k.yaml"
  per_rule "$b"
done
