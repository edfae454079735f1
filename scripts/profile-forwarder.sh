#!/usr/bin/env bash
# profile-forwarder.sh - what one relayed connection costs, in the numbers a
# busy machine still measures repeatably: CPU time and context switches per
# connection of every process involved (from perf stat's software counters,
# which need no PMU), system calls per connection (strace -c), and the
# forwarder's user-space instructions per connection (valgrind callgrind).
#
# Targets, each behind the same iptables REDIRECT in one throwaway namespace,
# all pinned to CPU 0 (PIN) like ../shared/bench/forwarder-bench.sh:
#   forwarder  `tproxyctl forwarder` as uid 5678, as bench-forwarder.sh runs it
#   haproxy    HAProxy with "server 0.0.0.0:0" (the benchmark's configuration)
#   floor      the least a user-space relay can do per connection (built here
#              with rustc, std + libc FFI): one thread, edge-triggered epoll,
#              accept4, SO_ORIGINAL_DST, socket + TCP_NODELAY + connect, two
#              epoll_ctl ADD, recv/send per message, shutdown on EOF, close;
#              no timers, limits, statistics, loop guard or deregistration.
#              Not a product: it shows the floor the kernel sets.
# The load is the benchmark's own probe (fwprobe, taken from
# forwarder-bench.sh): 4 workers that connect, echo 1 byte and close, N times.
#
# Usage (as root; needs iproute2, iptables, util-linux, haproxy, perf, rustc;
# strace and valgrind for those modes):
#   scripts/profile-forwarder.sh                 # cpu table, ROUNDS rounds
#   MODE=strace scripts/profile-forwarder.sh     # system calls per connection
#   MODE=callgrind scripts/profile-forwarder.sh  # forwarder instructions/connection
#   MODE=perf scripts/profile-forwarder.sh       # where each proxy's CPU goes (perf
#                                                # record -g, kernel and user; a binary
#                                                # with symbols: see TPROXYCTL_BIN)
# Knobs: N [20000] connections (or round trips) per measurement, ROUNDS [3], PIN [0],
#        LOAD [conn] (rtt: N 1-byte round trips on one connection instead; in the
#        cpu table "conn/s" is then the round trip's p50 in us, and "us" per trip),
#        PERF_OUT (perf and callgrind modes: keep the raw data as PERF_OUT.*),
#        TARGETS ["forwarder haproxy floor"], TPROXYCTL_BIN (skip the build).
# Extra arguments are appended to the forwarder's command line
# (e.g. --access-log /tmp/x/access.log).
set -euo pipefail

top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
bench="$top/../shared/bench/forwarder-bench.sh"
N=${N:-20000}
ROUNDS=${ROUNDS:-3}
PIN=${PIN:-0}
MODE=${MODE:-cpu}
LOAD=${LOAD:-conn}
TARGETS=${TARGETS:-"forwarder haproxy floor"}
log() { printf '[profile] %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 2; }
[ -f "$bench" ] || { log "$bench not found (its probe is reused)"; exit 2; }
for c in ip iptables setpriv taskset haproxy perf rustc; do
  command -v "$c" >/dev/null || { log "$c is needed"; exit 2; }
done
case "$LOAD" in conn|rtt) ;; *) log "LOAD is conn or rtt"; exit 2 ;; esac
case "$MODE" in
  cpu) ;;
  strace) command -v strace >/dev/null || { log "strace is needed"; exit 2; } ;;
  callgrind) command -v valgrind >/dev/null || { log "valgrind is needed"; exit 2; } ;;
  perf) ;;
  *) log "MODE is cpu, strace, callgrind or perf"; exit 2 ;;
esac

if [ -z "${TPROXYCTL_BIN:-}" ]; then
  cargo build --release --manifest-path "$top/Cargo.toml" --bin tproxyctl >&2
  TPROXYCTL_BIN="${CARGO_TARGET_DIR:-$top/target}/release/tproxyctl"
fi

NS="fwprof-$$"
WORK=$(mktemp -d /tmp/fwprof.XXXXXX)
chmod 755 "$WORK"
nsx() { if [ "$PIN" = none ]; then ip netns exec "$NS" "$@"; else ip netns exec "$NS" taskset -c "$PIN" "$@"; fi; }
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NS"; then
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    sleep 0.2
    ip netns del "$NS" 2>/dev/null || log "warning: could not delete namespace $NS"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- programs
sed -n "/^  cat > \"\$WORK\/fwprobe.rs\" <<'RUST_EOF'$/,/^RUST_EOF$/p" "$bench" | sed '1d;$d' > "$WORK/fwprobe.rs"
cat > "$WORK/floor.rs" <<'RUST_EOF'
// floor: a minimal original-destination relay (see profile-forwarder.sh).
use std::os::raw::{c_int, c_void};
#[repr(C, packed)]
#[derive(Clone, Copy)]
struct EpollEvent { events: u32, data: u64 }
#[repr(C)]
struct SockaddrIn6 { family: u16, port: u16, flow: u32, addr: [u8; 16], scope: u32 }
extern "C" {
    fn epoll_create1(flags: c_int) -> c_int;
    fn epoll_ctl(ep: c_int, op: c_int, fd: c_int, ev: *mut EpollEvent) -> c_int;
    fn epoll_wait(ep: c_int, evs: *mut EpollEvent, n: c_int, t: c_int) -> c_int;
    fn socket(d: c_int, t: c_int, p: c_int) -> c_int;
    fn bind(fd: c_int, a: *const c_void, l: u32) -> c_int;
    fn listen(fd: c_int, b: c_int) -> c_int;
    fn accept4(fd: c_int, a: *mut c_void, l: *mut u32, f: c_int) -> c_int;
    fn connect(fd: c_int, a: *const c_void, l: u32) -> c_int;
    fn setsockopt(fd: c_int, lv: c_int, n: c_int, v: *const c_void, l: u32) -> c_int;
    fn getsockopt(fd: c_int, lv: c_int, n: c_int, v: *mut c_void, l: *mut u32) -> c_int;
    fn recv(fd: c_int, b: *mut c_void, n: usize, f: c_int) -> isize;
    fn send(fd: c_int, b: *const c_void, n: usize, f: c_int) -> isize;
    fn shutdown(fd: c_int, how: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn __errno_location() -> *mut c_int;
}
const EPOLLIN: u32 = 1; const EPOLLOUT: u32 = 4; const EPOLLRDHUP: u32 = 0x2000; const EPOLLET: u32 = 1 << 31;
const NONBLOCK: c_int = 0o4000; const CLOEXEC: c_int = 0o2000000;
struct Conn { fds: [c_int; 2], eof: [bool; 2], done: [bool; 2] }
fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(15003);
    unsafe {
        // dual-stack [::]:port like the forwarder; IPv4 only (SO_ORIGINAL_DST)
        let l = socket(10, 1 | NONBLOCK, 0);
        let (one, zero): (c_int, c_int) = (1, 0);
        setsockopt(l, 41, 26, &zero as *const _ as *const c_void, 4); // IPV6_V6ONLY off
        setsockopt(l, 1, 2, &one as *const _ as *const c_void, 4); // SO_REUSEADDR
        setsockopt(l, 6, 1, &one as *const _ as *const c_void, 4); // TCP_NODELAY, inherited
        let a = SockaddrIn6 { family: 10, port: port.to_be(), flow: 0, addr: [0; 16], scope: 0 };
        assert!(bind(l, &a as *const _ as *const c_void, 28) == 0 && listen(l, 4096) == 0, "listen");
        let ep = epoll_create1(0);
        let mut ev = EpollEvent { events: EPOLLIN | EPOLLET, data: u64::MAX };
        epoll_ctl(ep, 1, l, &mut ev);
        let (mut conns, mut free): (Vec<Option<Conn>>, Vec<usize>) = (Vec::new(), Vec::new());
        let mut evs = [EpollEvent { events: 0, data: 0 }; 256];
        let mut buf = vec![0u8; 16384];
        loop {
            let n = epoll_wait(ep, evs.as_mut_ptr(), 256, -1);
            for e in &evs[..n.max(0) as usize] {
                let data = e.data;
                if data == u64::MAX {
                    loop {
                        let c = accept4(l, std::ptr::null_mut(), std::ptr::null_mut(), NONBLOCK | CLOEXEC);
                        if c < 0 { break; }
                        let mut dst = [0u8; 16];
                        let mut len = 16u32;
                        if getsockopt(c, 0, 80, dst.as_mut_ptr() as *mut c_void, &mut len) != 0 { close(c); continue; }
                        let u = socket(2, 1 | NONBLOCK | CLOEXEC, 0);
                        setsockopt(u, 6, 1, &one as *const _ as *const c_void, 4);
                        connect(u, dst.as_ptr() as *const c_void, 16);
                        let slot = free.pop().unwrap_or_else(|| { conns.push(None); conns.len() - 1 });
                        conns[slot] = Some(Conn { fds: [c, u], eof: [false; 2], done: [false; 2] });
                        for (i, fd) in [c, u].into_iter().enumerate() {
                            let mut ev = EpollEvent { events: EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, data: (slot as u64) << 1 | i as u64 };
                            epoll_ctl(ep, 1, fd, &mut ev);
                        }
                    }
                    continue;
                }
                let slot = (data >> 1) as usize;
                let Some(c) = conns[slot].as_mut() else { continue };
                for dir in 0..2 {
                    let (src, dst) = (c.fds[dir], c.fds[1 - dir]);
                    while !c.eof[dir] {
                        let r = recv(src, buf.as_mut_ptr() as *mut c_void, buf.len(), 0);
                        if r > 0 {
                            send(dst, buf.as_ptr() as *const c_void, r as usize, 0);
                            if (r as usize) < buf.len() { break; }
                        } else if r == 0 || *__errno_location() != 11 { c.eof[dir] = true; } else { break; }
                    }
                    if c.eof[dir] && !c.done[dir] { c.done[dir] = true; if !c.done[1 - dir] { shutdown(dst, 1); } }
                }
                if c.done[0] && c.done[1] { close(c.fds[0]); close(c.fds[1]); conns[slot] = None; free.push(slot); }
            }
        }
    }
}
RUST_EOF
for p in fwprobe floor; do
  rustc -O --edition 2021 -o "$WORK/$p" "$WORK/$p.rs" 2> "$WORK/rustc.log" || { cat "$WORK/rustc.log" >&2; exit 2; }
done
cp "$TPROXYCTL_BIN" "$WORK/tproxyctl"
chmod 755 "$WORK/tproxyctl" "$WORK/floor"

# ---------------------------------------------------------------- namespace
ip netns add "$NS"
nsx ip link set lo up
nsx sysctl -qw net.ipv4.ip_local_port_range="10000 65000"
nsx sysctl -qw net.ipv4.ip_local_reserved_ports="7000,15000-15010"
nsx iptables -t nat -N FWPROF
nsx iptables -t nat -A OUTPUT -p tcp -j FWPROF
nsx sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=2
cat > "$WORK/haproxy.cfg" <<EOF
global
    maxconn 4000
defaults
    mode tcp
    timeout connect 3s
    timeout client 60s
    timeout server 60s
listen origdst
    bind 127.0.0.1:15002
    server orig 0.0.0.0:0
EOF
chmod 644 "$WORK/haproxy.cfg"
declare -A UID_OF=([forwarder]=5678 [haproxy]=15902 [floor]=15905)
declare -A IP_OF=([forwarder]=127.0.0.5 [haproxy]=127.0.0.3 [floor]=127.0.0.7)
declare -A PORT_OF=([forwarder]=15001 [haproxy]=15002 [floor]=15003)
declare -A COMM_OF=([forwarder]=tproxyctl [haproxy]=haproxy [floor]=floor)
for t in forwarder haproxy floor; do
  nsx iptables -t nat -A FWPROF -p tcp -d "${IP_OF[$t]}" -m owner ! --uid-owner "${UID_OF[$t]}" \
    -j REDIRECT --to-ports "${PORT_OF[$t]}"
done
nsx "$WORK/fwprobe" serve "[::]:7000" 64 > /dev/null 2>&1 &

pid_of() { # comm (as /proc shows it; valgrind's tool names too)
  local p c
  for p in $(ip netns pids "$NS" 2>/dev/null); do
    c=$(cat "/proc/$p/comm" 2>/dev/null) || continue
    case "$c" in "$1"|callgrind*) echo "$p"; return 0 ;; esac
  done
  return 1
}
wait_listen() { local k; for k in $(seq 300); do ip netns exec "$NS" ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.1; done; return 1; }
start() { # target [wrapper...]
  local t=$1; shift
  local cmd=()
  case $t in
    forwarder) cmd=("$WORK/tproxyctl" forwarder --redirect-outbound-port 15001 --redirect-inbound=false
                    --kuma-dp-user 5678 --receipt "$WORK/no-receipt.json" --admin-address off "${EXTRA[@]}") ;;
    haproxy) cmd=(haproxy -db -f "$WORK/haproxy.cfg") ;;
    floor) cmd=("$WORK/floor" 15003) ;;
  esac
  nsx setpriv --reuid="${UID_OF[$t]}" --regid="${UID_OF[$t]}" --clear-groups -- "$@" "${cmd[@]}" > "$WORK/$t.log" 2>&1 &
  wait_listen "${PORT_OF[$t]}" || { tail -5 "$WORK/$t.log" >&2; log "$t did not start"; exit 1; }
}
EXTRA=("$@")
# LOAD=conn: N connections (connect, 1-byte echo, close) from 4 workers;
# LOAD=rtt: N 1-byte round trips on one connection (the benchmark's rtt probe).
connrate() {
  if [ "$LOAD" = rtt ]; then nsx "$WORK/fwprobe" rtt "${IP_OF[$1]}:7000" "$2" 200
  else nsx "$WORK/fwprobe" connrate "${IP_OF[$1]}:7000" 600 4 "$2"; fi
}
ECHO=$(pid_of fwprobe)

if [ "$MODE" = callgrind ]; then
  # Two runs, 1,000 and 3,000 connections: the difference over 2,000 leaves start-up out.
  mkdir -m 777 "$WORK/cg"
  declare -A TOTAL
  for n in 1000 3000; do
    start forwarder valgrind --tool=callgrind --callgrind-out-file="$WORK/cg/out.$n"
    connrate forwarder "$n" > /dev/null
    p=$(pid_of tproxyctl); kill -TERM "$p"
    for k in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    TOTAL[$n]=$(awk '/^(summary|totals):/{print $2; exit}' "$WORK/cg/out.$n")
  done
  unit=connection; [ "$LOAD" = rtt ] && unit="round trip"
  echo "forwarder: $(( (TOTAL[3000] - TOTAL[1000]) / 2000 )) user-space instructions per $unit (callgrind)"
  callgrind_annotate "$WORK/cg/out.3000" 2>/dev/null | sed -n '/^Ir/,$p' | head -30 || true
  if [ -n "${PERF_OUT:-}" ]; then cp "$WORK/cg/out.3000" "$PERF_OUT.callgrind"; fi
  exit 0
fi

for t in $TARGETS; do start "$t"; done
for t in $TARGETS; do connrate "$t" 2000 > /dev/null; done # warm-up

if [ "$MODE" = perf ]; then
  # Samples of the proxy's process only (its system calls and the softirq
  # work they do inline), flat by symbol; PERF_OUT keeps the raw data.
  for t in $TARGETS; do
    perf record -q -F 4999 -g -p "$(pid_of "${COMM_OF[$t]}")" -o "$WORK/perf.$t" 2>/dev/null &
    pr=$!; sleep 0.5
    connrate "$t" "$N" > /dev/null
    kill -INT "$pr"; wait "$pr" 2>/dev/null || true
    perf report -i "$WORK/perf.$t" --no-children --sort dso --stdio > "$WORK/dso.$t" 2>/dev/null || true
    perf report -i "$WORK/perf.$t" --no-children --sort sym --stdio > "$WORK/sym.$t" 2>/dev/null || true
    echo "== $t: self time by object"
    grep -E '^ +[0-9.]+%' "$WORK/dso.$t" | sed -n 1,6p
    echo "== $t: self time by symbol (top 40)"
    grep -E '^ +[0-9.]+%' "$WORK/sym.$t" | sed -n 1,40p
    if [ -n "${PERF_OUT:-}" ]; then cp "$WORK/perf.$t" "$PERF_OUT.$t"; fi
  done
  exit 0
fi

if [ "$MODE" = strace ]; then
  echo "system calls per connection ($N connections; strace -c -f on the proxy)"
  for t in $TARGETS; do
    strace -c -f -p "$(pid_of "${COMM_OF[$t]}")" -o "$WORK/strace.$t" 2>/dev/null &
    sp=$!; sleep 1
    connrate "$t" "$N" > /dev/null
    kill -INT "$sp"; wait "$sp" 2>/dev/null || true
    awk -v t="$t" -v n="$N" '
      $NF ~ /^[a-z_0-9]+$/ && $(NF-1) ~ /^[0-9]+$/ && $NF != "total" { c[$NF] = ($(NF-2) ~ /^[0-9]+$/ && NF == 6) ? $(NF-2) : $(NF-1) }
      $NF == "total" { tot = (NF == 6) ? $(NF-2) : $(NF-1) }
      END { printf "%-10s %5.1f total:", t, tot / n; for (s in c) printf " %s=%.2f", s, c[s] / n; print "" }' "$WORK/strace.$t"
  done
  exit 0
fi

# cpu: task-clock and context switches per connection of the client (fwprobe
# connrate), the echo server and the proxy, while N connections go through it.
per_conn() { awk -F, -v n="$N" '/task-clock/{t=$1} /context-switches/{c=$1} END{printf "%.1f %.2f\n", t*1000/n, c/n}' "$1"; }
printf '%-10s %8s | %9s %9s %9s | %9s | %8s\n' target "conn/s" "client us" "server us" "proxy us" "total us" "proxy cs"
echo "------------------------------------------------------------------------------"
for r in $(seq "$ROUNDS"); do
  for t in $TARGETS; do
    pp=$(pid_of "${COMM_OF[$t]}")
    perf stat -x, -e task-clock,context-switches -p "$ECHO" -o "$WORK/ps.server" 2>/dev/null & s1=$!
    perf stat -x, -e task-clock,context-switches -p "$pp" -o "$WORK/ps.proxy" 2>/dev/null & s2=$!
    sleep 0.3
    if [ "$LOAD" = rtt ]; then
      out=$(nsx perf stat -x, -e task-clock,context-switches -o "$WORK/ps.client" "$WORK/fwprobe" rtt "${IP_OF[$t]}:7000" "$N" 200)
      out="per_s=$(printf '%s' "$out" | sed -n 's/.*p50=\([0-9.]*\).*/\1/p')"
    else
      out=$(nsx perf stat -x, -e task-clock,context-switches -o "$WORK/ps.client" "$WORK/fwprobe" connrate "${IP_OF[$t]}:7000" 600 4 "$N")
    fi
    kill -INT "$s1" "$s2"; wait "$s1" "$s2" 2>/dev/null || true
    read -r cu _ < <(per_conn "$WORK/ps.client")
    read -r su _ < <(per_conn "$WORK/ps.server")
    read -r pu pc < <(per_conn "$WORK/ps.proxy")
    rate=$(printf '%s' "$out" | sed -n 's/.*per_s=\([0-9]*\).*/\1/p')
    printf '%-10s %8s | %9s %9s %9s | %9s | %8s\n' "$t" "$rate" "$cu" "$su" "$pu" \
      "$(awk -v a="$cu" -v b="$su" -v c="$pu" 'BEGIN{printf "%.1f", a+b+c}')" "$pc"
  done
done
echo "us = CPU microseconds per connection (perf stat task-clock); total = client + server + proxy, which"
echo "bounds conn/s when they share one CPU; proxy cs = the proxy's context switches per connection."
