#!/usr/bin/env bash
# bench-dns.sh - queries per second and latency of the forwarder's DNS proxy
# against dnsmasq as a forwarder, in one throwaway network namespace and one run.
#
# Both forward every query ("cached miss": dnsmasq runs with --cache-size=0,
# the forwarder has no cache) to the same upstream, a small authoritative
# responder (std-only Rust, built here with rustc) on 127.0.0.2:53 that
# answers every name with one A record. The load generator is dnsperf, with
# a query file of distinct names (n1.bench.test, n2.bench.test, ...).
#   forwarder  `tproxyctl forwarder` as uid 5678 (as the README starts it),
#              DNS proxy on 127.0.0.1:15053, upstream from a resolv.conf
#   dnsmasq    dnsmasq --cache-size=0 --no-resolv --server=127.0.0.2 on
#              127.0.0.3:53 (drops to user nobody)
# Probes, per target:
#   qps   dnsperf -q OUTSTANDING for SECS seconds: answered queries per second
#         (run REPEAT times, the median is reported) and its mean latency
#   p50   dnsperf -v at a fixed rate RATE qps for LAT_SECS seconds: latency
#         percentiles of every answer (a rate well below either's maximum)
#   cpu   CPU of the proxy's process during the qps probe, in microseconds per
#         answered query (all of it; the responder and dnsperf are excluded)
# Every process is pinned to PIN's CPUs (taskset -c; default 0, as in
# forwarder-bench.sh); "none" leaves them unpinned.
#
# Usage (as root; needs iproute2, util-linux, dnsmasq, dnsperf, rustc; with
# BENCH_AUTO_INSTALL=1 missing Debian packages are installed):
#   scripts/bench-dns.sh
# Knobs: SECS [5] REPEAT [3] OUTSTANDING [100] RATE [2000] LAT_SECS [3] PIN [0]
#        NAMES [200000] RESULTS_FILE (TSV copy) TARGETS ["forwarder dnsmasq"]
#        TPROXYCTL_BIN (skip the build, use this binary)
# Extra arguments are appended to the forwarder's command line.
set -euo pipefail

top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
SECS=${SECS:-5}
REPEAT=${REPEAT:-3}
OUTSTANDING=${OUTSTANDING:-100}
RATE=${RATE:-2000}
LAT_SECS=${LAT_SECS:-3}
PIN=${PIN:-0}
NAMES=${NAMES:-200000}
TARGETS=${TARGETS:-"forwarder dnsmasq"}
RESULTS_FILE=${RESULTS_FILE:-}
FWD_UID=5678

log() { printf '[dnsbench] %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root (network namespace)"; exit 2; }
need=()
for pair in ip:iproute2 setpriv:util-linux taskset:util-linux dnsmasq:dnsmasq-base dnsperf:dnsperf; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ -n "${BENCH_AUTO_INSTALL:-}" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    log "missing tools; install with: apt-get install -y ${need[*]} (or set BENCH_AUTO_INSTALL=1)"; exit 2
  fi
fi
command -v rustc >/dev/null || { log "rustc is needed for the upstream responder"; exit 2; }

if [ -z "${TPROXYCTL_BIN:-}" ]; then
  cargo build --release --manifest-path "$top/Cargo.toml" --bin tproxyctl >&2
  TPROXYCTL_BIN="${CARGO_TARGET_DIR:-$top/target}/release/tproxyctl"
fi

NS="dnsbench-$$"
WORK=$(mktemp -d /tmp/dnsbench.XXXXXX)
chmod 755 "$WORK" # the forwarder runs as uid 5678 and reads its files here
nsx() { if [ "$PIN" = none ]; then ip netns exec "$NS" "$@"; else ip netns exec "$NS" taskset -c "$PIN" "$@"; fi; }
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NS"; then
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -TERM "$p" 2>/dev/null; done
    sleep 0.3
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$NS" 2>/dev/null || log "warning: could not delete namespace $NS"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- upstream responder
cat > "$WORK/dnsresp.rs" <<'RUST_EOF'
// dnsresp: answers every DNS query with one A record (10.0.0.1, TTL 60), or
// FORMERR for anything that is not a one-question query. One thread, blocking.
use std::net::UdpSocket;
fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.2:53".into());
    let s = UdpSocket::bind(&addr).unwrap_or_else(|e| { eprintln!("dnsresp: bind {addr}: {e}"); std::process::exit(2) });
    let mut b = [0u8; 1500];
    loop {
        let Ok((n, from)) = s.recv_from(&mut b[..512]) else { continue };
        if n < 17 || b[2] & 0x80 != 0 { continue; }
        // end of the question: its name, then type and class
        let mut i = 12;
        while i < n && b[i] != 0 { i += 1 + b[i] as usize; }
        let end = i + 5;
        if i >= n || end > n || b[4..6] != [0, 1] {
            b[2] = 0x80 | (b[2] & 0x79); b[3] = 0x81; // QR, FORMERR
            let _ = s.send_to(&b[..12.min(n)], from);
            continue;
        }
        b[2] = 0x84 | (b[2] & 0x79); // QR, AA, opcode and RD kept
        b[3] = 0x80; // RA, NOERROR
        b[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]); // one answer, no authority/additional (EDNS dropped)
        let ans = [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1];
        b[end..end + ans.len()].copy_from_slice(&ans);
        let _ = s.send_to(&b[..end + ans.len()], from);
    }
}
RUST_EOF
rustc -O --edition 2021 -o "$WORK/dnsresp" "$WORK/dnsresp.rs" 2> "$WORK/rustc.log" || { cat "$WORK/rustc.log" >&2; exit 2; }

# ---------------------------------------------------------------- namespace and servers
ip netns add "$NS" || { log "cannot create namespace"; exit 2; }
nsx ip link set lo up
awk -v n="$NAMES" 'BEGIN{ for (i = 1; i <= n; i++) printf "n%d.bench.test A\n", i }' > "$WORK/queries"
echo "nameserver 127.0.0.2" > "$WORK/resolv.conf"
cat > "$WORK/tp.yaml" <<EOF
redirect:
  dns:
    enabled: true
    resolvConfigPath: $WORK/resolv.conf
EOF
chmod 644 "$WORK/queries" "$WORK/resolv.conf" "$WORK/tp.yaml"
cp "$TPROXYCTL_BIN" "$WORK/tproxyctl"; chmod 755 "$WORK/tproxyctl"

nsx "$WORK/dnsresp" 127.0.0.2:53 > "$WORK/dnsresp.log" 2>&1 &
pid_of() { # comm -> pid of that process in the namespace
  local p
  for p in $(ip netns pids "$NS" 2>/dev/null); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$1" ] && { echo "$p"; return 0; }
  done
  return 1
}
wait_udp() { # port addr
  local k
  for k in $(seq 150); do
    ip netns exec "$NS" ss -Hlun "sport = :$1" 2>/dev/null | grep -q "$2" && return 0
    sleep 0.1
  done
  return 1
}
wait_udp 53 127.0.0.2 || { cat "$WORK/dnsresp.log" >&2; log "upstream responder did not start"; exit 2; }

start_target() { # name -> prints the proxy's pid
  case "$1" in
    forwarder)
      nsx setpriv --reuid=$FWD_UID --regid=$FWD_UID --clear-groups -- "$WORK/tproxyctl" forwarder \
        --config "$WORK/tp.yaml" --redirect-inbound=false --redirect-outbound-port 15001 --kuma-dp-user $FWD_UID \
        --receipt "$WORK/no-receipt.json" --admin-address off ${FWD_ARGS:-} > "$WORK/forwarder.log" 2>&1 &
      wait_udp 15053 127.0.0.1 || { tail -5 "$WORK/forwarder.log" >&2; return 1; }
      pid_of tproxyctl ;;
    dnsmasq)
      nsx dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-negcache \
        --server=127.0.0.2 --cache-size=0 --dns-forward-max=1024 --listen-address=127.0.0.3 \
        --bind-interfaces --port=53 --user=nobody --pid-file= --log-facility=- > "$WORK/dnsmasq.log" 2>&1 &
      wait_udp 53 127.0.0.3 || { tail -5 "$WORK/dnsmasq.log" >&2; return 1; }
      pid_of dnsmasq ;;
  esac
}
addr_of() { case "$1" in forwarder) echo "127.0.0.1 15053" ;; dnsmasq) echo "127.0.0.3 53" ;; esac; }
cpu_ns() { local s=0 t a; for t in /proc/"$1"/task/*/schedstat; do read -r a _ < "$t" && s=$((s + a)); done; echo "$s"; }
median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2 }'; }

declare -A R
FWD_ARGS="$*"
for t in $TARGETS; do
  log "target $t"
  pid=$(start_target "$t") || { R[$t,note]="did not start"; continue; }
  read -r ip port < <(addr_of "$t")
  # warm-up (and a check that answers come back)
  out=$(nsx dnsperf -s "$ip" -p "$port" -d "$WORK/queries" -l 1 -q "$OUTSTANDING" 2>&1) || true
  if ! printf '%s' "$out" | grep -q 'NOERROR'; then
    log "$t answered nothing:"; printf '%s\n' "$out" | tail -15 >&2; R[$t,note]="no answers"; kill "$pid"; continue
  fi
  qs=""; lats=""; cpus=""; lost=0
  for i in $(seq "$REPEAT"); do
    c0=$(cpu_ns "$pid")
    out=$(nsx dnsperf -s "$ip" -p "$port" -d "$WORK/queries" -l "$SECS" -q "$OUTSTANDING" 2>&1)
    c1=$(cpu_ns "$pid")
    q=$(printf '%s' "$out" | awk '/Queries per second:/{print $4}')
    n=$(printf '%s' "$out" | awk '/Queries completed:/{print $3}')
    l=$(printf '%s' "$out" | awk '/Queries lost:/{print $3}')
    lost=$((lost + ${l:-0}))
    qs+="$q"$'\n'
    lats+="$(printf '%s' "$out" | awk '/Average Latency/{printf "%.1f", $4 * 1e6}')"$'\n'
    cpus+="$(awk -v a="$c0" -v b="$c1" -v n="${n:-0}" 'BEGIN{ if (n > 0) printf "%.1f", (b - a) / 1000 / n }')"$'\n'
  done
  R[$t,qps]=$(printf "%s" "$qs" | grep . | median | xargs printf "%.0f")
  R[$t,avg]=$(printf '%s' "$lats" | grep . | median)
  R[$t,cpu]=$(printf '%s' "$cpus" | grep . | median)
  R[$t,lost]=$lost
  # latency percentiles at a fixed rate, from dnsperf's per-answer report
  nsx dnsperf -s "$ip" -p "$port" -d "$WORK/queries" -l "$LAT_SECS" -Q "$RATE" -q "$OUTSTANDING" -v 2>/dev/null \
    | awk '$1 == ">" && $2 == "NOERROR" {print $NF * 1e6}' | sort -g > "$WORK/lat.$t"
  R[$t,p50]=$(awk '{a[NR]=$1} END{ if (NR) printf "%.0f", a[int((NR-1)*0.50)+1]; else print "-" }' "$WORK/lat.$t")
  R[$t,p99]=$(awk '{a[NR]=$1} END{ if (NR) printf "%.0f", a[int((NR-1)*0.99)+1]; else print "-" }' "$WORK/lat.$t")
  kill -TERM "$pid" 2>/dev/null; sleep 0.5; kill -KILL "$pid" 2>/dev/null || true
done

echo
echo "bench-dns: $(uname -r), PIN=$PIN, qps: dnsperf -q $OUTSTANDING for ${SECS}s x$REPEAT (median), latency: ${RATE} qps for ${LAT_SECS}s, $NAMES distinct names"
printf '%-10s %9s %6s %9s | %8s %8s | %11s %5s\n' target "qps" "x" "avg us" "p50 us" "p99 us" "cpu us/q" lost
echo "----------------------------------------------------------------------------"
base=${R[dnsmasq,qps]:-}
for t in $TARGETS; do
  if [ -n "${R[$t,note]:-}" ]; then printf '%-10s %s\n' "$t" "${R[$t,note]}"; continue; fi
  x=$(awk -v a="${R[$t,qps]}" -v b="$base" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "-" }')
  printf '%-10s %9s %6s %9s | %8s %8s | %11s %5s\n' "$t" "${R[$t,qps]}" "$x" "${R[$t,avg]}" "${R[$t,p50]}" "${R[$t,p99]}" "${R[$t,cpu]}" "${R[$t,lost]}"
done
echo "x = ratio to dnsmasq's qps; avg = dnsperf's mean latency in the qps probe; p50/p99 at ${RATE} qps;"
echo "cpu us/q = the proxy's CPU time per answered query during the qps probe."
if [ -n "$RESULTS_FILE" ]; then
  { printf 'target\tqps\tavg_us\tp50_us\tp99_us\tcpu_us_per_q\tlost\tnote\n'
    for t in $TARGETS; do
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${R[$t,qps]:-}" "${R[$t,avg]:-}" "${R[$t,p50]:-}" \
        "${R[$t,p99]:-}" "${R[$t,cpu]:-}" "${R[$t,lost]:-}" "${R[$t,note]:-}"
    done; } > "$RESULTS_FILE"
fi
