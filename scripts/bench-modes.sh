#!/usr/bin/env bash
# bench-modes.sh - the redirection modes side by side through one forwarder;
# run it as `MODE=modes scripts/bench-forwarder.sh` (which builds the release
# binary and passes: the shared benchmark script, whose load probe is reused,
# and the tproxyctl binary).
#
# Two namespaces joined by a veth pair: "app" (10.88.0.1, fd00:88::1), where
# the rules or programs are installed with tproxyctl and where the forwarder
# and the probes run, and "srv" (10.88.0.2), with an echo server and iperf3.
# Rows, in one run:
#   direct    the probes to srv, nothing installed
#   iptables  tproxyctl install transparent-proxy, forwarder on 15001
#   ebpf      tproxyctl install transparent-proxy --ebpf-enabled, same forwarder
# Probes: iperf3 (1 stream, THR_SECS s) -> MB/s; 1-byte ping-pong (RTT_N
# trips, RTT_REPEAT runs, median) -> p50/p99 us; CONN_CONC workers connecting
# for CONN_SECS s -> conn/s; install and uninstall wall time (median of
# INSTALL_RUNS, the install's own process included).
# With PERF=1 (and perf installed) also: the CPU time (perf stat task-clock)
# and, where the machine has hardware counters, the instructions of the
# client and the forwarder per connection over PERF_CONNS sequential
# connections — less sensitive to a busy machine than wall-clock rates.
# The forwarder and the probes run in a child cgroup made for the run (the
# eBPF programs attach there only); PIN (default 0) pins every process of the
# run to those CPUs (taskset), "none" to leave them free. Needs root, iperf3,
# rustc (for the probe), iproute2, util-linux.
set -uo pipefail

bench=$1
bin=$2
shift 2
PIN="${PIN:-0}"
THR_SECS="${THR_SECS:-4}"
RTT_N="${RTT_N:-20000}"
RTT_REPEAT="${RTT_REPEAT:-3}"
CONN_SECS="${CONN_SECS:-3}"
CONN_CONC="${CONN_CONC:-4}"
INSTALL_RUNS="${INSTALL_RUNS:-5}"
PERF="${PERF:-0}"
PERF_CONNS="${PERF_CONNS:-5000}"
UID_DP=5678

log() { printf '[bench-modes] %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 2; }
for c in ip iperf3 rustc nsenter taskset ss; do
  command -v "$c" >/dev/null || { log "$c is missing"; exit 2; }
done

APP="tpbm-app-$$"
SRV="tpbm-srv-$$"
WORK=$(mktemp -d /tmp/tproxyctl-bench-modes.XXXXXX)
chmod 755 "$WORK"
cgroot=$(awk '{split($0, a, " - "); split(a[2], b, " "); split(a[1], c, " ")} b[1] == "cgroup2" {print c[5]; exit}' /proc/self/mountinfo)
[ -n "$cgroot" ] || { log "no cgroup2 mount"; exit 2; }
CG="$cgroot/tproxyctl-bench-$$"
BPFFS="$WORK/bpffs"
RECEIPT="$WORK/receipt.json"
FWD_PID=""

tp() { nsenter --net="/run/netns/$APP" -- "$bin" "$@"; }
PINCMD=()
[ "$PIN" = none ] || PINCMD=(taskset -c "$PIN")
# in the app namespace and the run's cgroup (pinned)
in_app() { sh -c 'echo $$ > "$0" && n="$1" && shift && exec nsenter --net="$n" -- "$@"' \
  "$CG/cgroup.procs" "/run/netns/$APP" "${PINCMD[@]}" "$@"; }
in_srv() { ip netns exec "$SRV" "${PINCMD[@]}" "$@"; }

cleanup() {
  trap - EXIT INT TERM
  [ -n "$FWD_PID" ] && kill "$FWD_PID" 2>/dev/null
  [ -f "$RECEIPT" ] && tp uninstall transparent-proxy --receipt "$RECEIPT" >/dev/null 2>&1
  if [ -d "$CG" ]; then
    for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    for _ in $(seq 50); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
  fi
  for ns in "$APP" "$SRV"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  umount -l "$BPFFS" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# The load probe of the shared benchmark, compiled once.
sed -n "/<<'RUST_EOF'/,/^RUST_EOF/p" "$bench" | sed '1d;$d' > "$WORK/fwprobe.rs"
rustc -O --edition 2021 -o "$WORK/fwprobe" "$WORK/fwprobe.rs" 2>"$WORK/rustc.log" \
  || { cat "$WORK/rustc.log" >&2; log "probe build failed"; exit 2; }
PROBE="$WORK/fwprobe"

mkdir "$CG" || { log "cannot create $CG"; exit 2; }
ip netns add "$APP" && ip netns add "$SRV" || exit 2
ip -n "$APP" link set lo up
ip -n "$SRV" link set lo up
ip -n "$APP" link add va type veth peer name vb netns "$SRV"
ip -n "$APP" addr add 10.88.0.1/24 dev va
ip -n "$APP" -6 addr add fd00:88::1/64 dev va nodad
ip -n "$SRV" addr add 10.88.0.2/24 dev vb
ip -n "$SRV" -6 addr add fd00:88::2/64 dev vb nodad
ip -n "$APP" link set va up
ip -n "$SRV" link set vb up
ip netns exec "$APP" sysctl -qw net.ipv4.ip_local_reserved_ports="15001,15006,15053" >/dev/null
# The conn probe makes thousands of connections to one server address; in
# TIME_WAIT they would exhaust the ports towards it and slow down connect()
# for the next mode. Each mode gets its own server port, a wide port range,
# and TIME_WAIT reuse (all of it in the namespace only).
ip netns exec "$APP" sysctl -qw net.ipv4.ip_local_port_range="10000 65000" >/dev/null
ip netns exec "$APP" sysctl -qw net.ipv4.tcp_tw_reuse=1 >/dev/null

declare -A ECHO=([direct]=7000 [iptables]=7001 [ebpf]=7002)
for port in "${ECHO[@]}"; do
  in_srv "$PROBE" serve "[::]:$port" 64 >"$WORK/echo-$port.log" 2>&1 &
done
in_srv iperf3 -s -p 5201 >"$WORK/iperf3.log" 2>&1 &
for port in "${ECHO[@]}"; do
  for _ in $(seq 50); do in_srv ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.1; done
done

IPT=(install transparent-proxy --kuma-dp-user "$UID_DP" --redirect-inbound=false --receipt "$RECEIPT")
EBPF=("${IPT[@]}" --ebpf-enabled --ebpf-instance-ip 10.88.0.1 --ebpf-cgroup-path "$CG"
  --ebpf-bpffs-path "$BPFFS" --ebpf-programs-source-path "$WORK/progs")
UNINSTALL=(uninstall transparent-proxy --receipt "$RECEIPT")

median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
kv() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" | head -1; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f\n", (b-a)/1e6}'; }

declare -A R
# install/uninstall time: INSTALL_RUNS rounds, median of each
time_mode() { # mode args...
  local mode=$1 i t0 t1 t2 ins="" unins=""
  shift
  for i in $(seq "$INSTALL_RUNS"); do
    t0=$(date +%s%N)
    tp "$@" >/dev/null 2>"$WORK/install.err" || { cat "$WORK/install.err" >&2; log "$mode install failed"; return 1; }
    t1=$(date +%s%N)
    tp "${UNINSTALL[@]}" >/dev/null 2>"$WORK/uninstall.err" || { cat "$WORK/uninstall.err" >&2; log "$mode uninstall failed"; return 1; }
    t2=$(date +%s%N)
    ins+="$(ms "$t0" "$t1")"$'\n'
    unins+="$(ms "$t1" "$t2")"$'\n'
  done
  R[$mode,install]=$(printf '%s' "$ins" | median)
  R[$mode,uninstall]=$(printf '%s' "$unins" | median)
}

start_forwarder() {
  in_app "$bin" forwarder --user "$UID_DP" --kuma-dp-user "$UID_DP" --redirect-inbound=false \
    --receipt "$WORK/no-receipt.json" --admin-address off "$@" >"$WORK/forwarder.log" 2>&1 &
  FWD_PID=$!
  for _ in $(seq 100); do
    ip netns exec "$APP" ss -Hltn 'sport = :15001' | grep -q . && return 0
    sleep 0.1
  done
  log "the forwarder did not start:"; cat "$WORK/forwarder.log" >&2
  return 1
}

probes() { # mode
  local mode=$1 out i p50s="" p99s=""
  out=$(in_app timeout $((THR_SECS + 15)) iperf3 -c 10.88.0.2 -p 5201 -t "$THR_SECS" -O 1 -J 2>>"$WORK/iperf3-client.log")
  R[$mode,thr]=$(printf '%s\n' "$out" | awk '/"sum_received"/{f=1} f&&/"bits_per_second"/{gsub(/[ ,]/,""); split($0,a,":"); printf "%.0f\n", a[2]/8e6; exit}')
  for i in $(seq "$RTT_REPEAT"); do
    out=$(in_app timeout 60 "$PROBE" rtt "10.88.0.2:${ECHO[$mode]}" "$RTT_N" 2000 2>>"$WORK/probe.log")
    p50s+="$(printf '%s' "$out" | kv p50)"$'\n'
    p99s+="$(printf '%s' "$out" | kv p99)"$'\n'
  done
  R[$mode,p50]=$(printf '%s' "$p50s" | grep . | median)
  R[$mode,p99]=$(printf '%s' "$p99s" | grep . | median)
  out=$(in_app timeout $((CONN_SECS + 20)) "$PROBE" connrate "10.88.0.2:${ECHO[$mode]}" "$CONN_SECS" "$CONN_CONC" 2>>"$WORK/probe.log")
  R[$mode,conn]=$(printf '%s' "$out" | kv per_s)
  R[$mode,connp50]=$(printf '%s' "$out" | kv p50_us)
  R[$mode,connerr]=$(printf '%s' "$out" | kv errors)
}

# CPU time and instructions per connection: client (and forwarder, when running)
perf_conn() { # mode
  local mode=$1 fperf=""
  [ "$PERF" = 1 ] && command -v perf >/dev/null || return 0
  rm -f "$WORK/fwd.perf" "$WORK/cli.perf"
  if [ -n "$FWD_PID" ]; then
    perf stat -x, -e task-clock,instructions -p "$FWD_PID" -o "$WORK/fwd.perf" 2>/dev/null &
    fperf=$!
    sleep 0.3
  fi
  perf stat -x, -e task-clock,instructions -o "$WORK/cli.perf" -- sh -c \
    'echo $$ > "$0" && n="$1" && shift && exec nsenter --net="$n" -- "$@"' \
    "$CG/cgroup.procs" "/run/netns/$APP" "${PINCMD[@]}" \
    "$PROBE" connrate "10.88.0.2:${ECHO[$mode]}" 600 1 "$PERF_CONNS" >/dev/null 2>>"$WORK/probe.log"
  if [ -n "$fperf" ]; then
    kill -INT "$fperf" 2>/dev/null
    wait "$fperf" 2>/dev/null
  fi
  # task-clock is in ms; instructions may be <not supported> on a VM
  R[$mode,cpu]=$(cat "$WORK/cli.perf" "$WORK/fwd.perf" 2>/dev/null | awk -F, -v n="$PERF_CONNS" \
    '$3 ~ /task-clock/ && $1 ~ /^[0-9.]+$/ {s += $1} END{ if (s > 0) printf "%.1f", s * 1000 / n; else print "-" }')
  R[$mode,insn]=$(cat "$WORK/cli.perf" "$WORK/fwd.perf" 2>/dev/null | awk -F, -v n="$PERF_CONNS" \
    '$3 ~ /instructions/ && $1 ~ /^[0-9]+$/ {s += $1; k++} END{ if (k > 0) printf "%.0f", s / n; else print "not supported" }')
}

run_mode() { # mode install-args...
  local mode=$1
  shift
  log "$mode: install/uninstall x$INSTALL_RUNS"
  time_mode "$mode" "$@" || { tp "${UNINSTALL[@]}" >/dev/null 2>&1; return 1; }
  tp "$@" >/dev/null 2>&1 || return 1
  start_forwarder || { tp "${UNINSTALL[@]}" >/dev/null 2>&1; return 1; }
  log "$mode: probes"
  probes "$mode"
  perf_conn "$mode"
  kill "$FWD_PID" 2>/dev/null
  wait "$FWD_PID" 2>/dev/null
  FWD_PID=""
  tp "${UNINSTALL[@]}" >/dev/null 2>&1
}

T0=$(date +%s)
log "direct: probes"
probes direct
perf_conn direct
run_mode iptables "${IPT[@]}" || R[iptables,note]=failed
run_mode ebpf "${EBPF[@]}" || R[ebpf,note]=failed

v() { local x="${R[$1]:-}"; printf '%s' "${x:--}"; }
added() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/) printf "%+.1f", a-b; else printf "-" }'; }
echo
echo "bench-modes: $(uname -r), $(nproc) CPU(s) (PIN=$PIN), thr=${THR_SECS}s x1 stream, rtt=${RTT_N} trips x${RTT_REPEAT} (median), conn=${CONN_SECS}s x${CONN_CONC} workers, install/uninstall median of ${INSTALL_RUNS}"
printf '%-9s %9s | %8s %7s %8s | %8s %9s | %10s %12s\n' mode "thr MB/s" "p50 us" "+us" "p99 us" "conn/s" "conn p50" "install ms" "uninstall ms"
echo "---------------------------------------------------------------------------------------------"
for m in direct iptables ebpf; do
  if [ -n "${R[$m,note]:-}" ]; then printf '%-9s %s\n' "$m" "${R[$m,note]}"; continue; fi
  printf '%-9s %9s | %8s %7s %8s | %8s %9s | %10s %12s\n' "$m" "$(v "$m,thr")" "$(v "$m,p50")" \
    "$(added "$(v "$m,p50")" "$(v direct,p50)")" "$(v "$m,p99")" "$(v "$m,conn")" "$(v "$m,connp50")" \
    "$(v "$m,install")" "$(v "$m,uninstall")"
done
if [ "$PERF" = 1 ]; then
  for m in direct iptables ebpf; do
    echo "per connection (client + forwarder, perf stat, ${PERF_CONNS} sequential): $m CPU $(v "$m,cpu") us, instructions $(v "$m,insn")"
  done
fi
echo "+us = p50 added over direct; conn p50 = median connect+echo+close time in us;"
echo "iptables and ebpf both go through tproxyctl forwarder (--user $UID_DP)."
for m in direct iptables ebpf; do
  e="${R[$m,connerr]:-0}"
  [ "$e" != 0 ] && [ -n "$e" ] && echo "note: $m had $e connection errors in the conn probe"
done
echo "elapsed: $(($(date +%s) - T0))s"
