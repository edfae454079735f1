#!/usr/bin/env bash
# bench-config-scale.sh - how the cost of loading, checking and planning a
# configuration grows with the size of its lists.
#
# For N = 1,000 / 10,000 / 65,535 distinct entries (ports in
# redirect.outbound.excludePorts and as many addresses in
# redirect.inbound.excludePortsForIPs, so 2N rules), for 65,535 repeats of one
# port (folded to one rule), and for lists over the bound (100,000 and
# 3,000,000 entries, refused with exit 2 naming the key), it runs
#   tproxyctl install transparent-proxy --dry-run --config FILE
# (load -> check -> plan -> render, nothing applied) and prints the median wall
# wall and CPU time of RUNS runs, the peak RSS, and the instructions
# tproxyctl itself executed (perf stat --no-inherit where the machine has the
# counter, else valgrind's callgrind with CALLGRIND=1): the figure to compare
# on a loaded machine. Linear growth shows as a flat "instr/entry" column.
#
#   scripts/bench-config-scale.sh            # builds the release binary
#   BIN=/path/to/tproxyctl RUNS=3 CALLGRIND=1 scripts/bench-config-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  target=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  BIN="$target/release/tproxyctl"
fi
work=$(mktemp -d /tmp/tproxyctl-bench-config.XXXXXX)
trap 'rm -rf "$work"' EXIT

# gen KIND N FILE: a configuration with N list entries of the given kind
gen() {
  python3 - "$1" "$2" "$3" <<'EOF'
import sys
kind, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    if kind == "distinct":
        ports = ",".join(str(p) for p in range(1, n + 1))
        ips = ",".join("10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255) for i in range(n))
        f.write("redirect:\n  outbound:\n    excludePorts: [%s]\n" % ports)
        f.write("  inbound:\n    excludePortsForIPs: [%s]\n" % ips)
    else:  # repeated: one port n times
        f.write("redirect:\n  outbound:\n    excludePorts: [%s]\n" % ",".join(["22"] * n))
EOF
}

# Instructions: perf's hardware counter when the machine has one, else
# valgrind's callgrind when CALLGRIND=1 (slow, exact), else not measured.
instr_tool=none
if command -v perf >/dev/null 2>&1 &&
  perf stat -x, -e instructions:u true 2>&1 | grep -q '^[0-9]'; then
  instr_tool=perf
elif [ "${CALLGRIND:-0}" = 1 ] && command -v valgrind >/dev/null 2>&1; then
  instr_tool=callgrind
fi

instructions() { # args...
  case $instr_tool in
    perf) perf stat --no-inherit -x, -e instructions:u "$BIN" "$@" 2>&1 >/dev/null |
            awk -F, '/instructions/ {print $1}' ;;
    callgrind) valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$@" 2>&1 >/dev/null |
                 sed -n 's/.*Collected : \([0-9]*\).*/\1/p' ;;
    *) echo - ;;
  esac
}

run_case() { # name kind n
  local name=$1 kind=$2 n=$3 f="$work/$1.yaml"
  gen "$kind" "$n" "$f"
  local args=(install transparent-proxy --dry-run --quiet --kuma-dp-user root
    --ip-family-mode ipv4 --config "$f")
  local walls=() cpus=() code rss=0
  for _ in $(seq "$RUNS"); do
    set +e
    /usr/bin/time -o "$work/time" -f '%e %U %S %M' "$BIN" "${args[@]}" >/dev/null 2>/dev/null
    code=$?
    set -e
    read -r e u s m < <(tail -1 "$work/time")
    walls+=("$(echo "$e * 1000" | bc)")
    cpus+=("$(echo "($u + $s) * 1000" | bc)")
    rss=$m
  done
  local instr per="-"
  instr=$(instructions "${args[@]}" || true)
  if [[ "$instr" =~ ^[0-9]+$ ]]; then per=$(( instr / n )); else instr="-"; fi
  median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]}'; }
  printf '%-14s %9d %5d %9s %9s %9s %14s %10s\n' "$name" "$n" "$code" \
    "$(median "${walls[@]}")" "$(median "${cpus[@]}")" "$rss" "$instr" "$per"
}

echo "binary: $BIN; runs per case: $RUNS; instructions by: $instr_tool"
printf '%-14s %9s %5s %9s %9s %9s %14s %10s\n' case entries exit "wall ms" "cpu ms" "RSS KiB" instructions "instr/entry"
run_case distinct-1k distinct 1000
run_case distinct-10k distinct 10000
run_case distinct-65k distinct 65535
run_case repeated-65k repeated 65535
run_case refused-100k repeated 100000
run_case refused-3M repeated 3000000
