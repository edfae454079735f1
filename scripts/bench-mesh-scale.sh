#!/usr/bin/env bash
# bench-mesh-scale.sh - the forwarder with a large mesh: how start-up, memory
# and the per-connection / per-query lookups grow with the number of
# Dataplanes (issue 12).
#
# For each size (default: 1 1000 10000 50000 Dataplanes, SERVICES=500
# services, one inbound each) and each layout (one multi-document YAML file,
# and a directory with one file per Dataplane) it reports:
#   ready ms     start of `tproxyctl forwarder` until `GET /ready` answers 200
#                (median of RUNS starts), and the CPU time the process used
#                by then (user+sys, all threads; 10 ms resolution)
#   reload ms    SIGHUP until the forwarder logs the new settings generation
#                (median of RUNS reloads of the running forwarder)
#   rb cpu ms    CPU time of that rebuild (options, Dataplanes read, mesh
#                built, routing table, .mesh names), timed in process by
#                `examples/mesh_rebuild.rs` (median of RUNS)
#   rss2 MiB     VmRSS after the reloads
#   peak/rss MiB VmHWM and VmRSS of the forwarder once ready
#   B/DP         (VmRSS - VmRSS of the first size, the 1-Dataplane mesh) /
#                Dataplanes, and the same for the peak
#   dns p50 us   one `probe.mesh` A query at a time over a connected UDP socket
#                without EDNS (glibc's way) to the DNS proxy (127.0.0.1:15053)
#   conn p50 us  connect + 1-byte echo through the REDIRECT rules to a mesh
#                destination (the `probe` service, a Dataplane on a peer
#                namespace behind a veth), as an application UID
#                (both: the lowest p50 of five runs, other load only adds)
#   route ns     mean cost of one routing decision (up to 1024 mesh
#                destinations spread over the table, in turn) and of one
#   answer ns    `probe.mesh` answer, in process (`mesh_rebuild --lookups`):
#                the lookups every connection and query pays, without the
#                network's noise
# Every mesh also holds the `probe` Dataplane and this proxy's own
# Dataplane, whose reachableBackends name every service (so the refs index is
# used). Rules come from `tproxyctl install transparent-proxy` and the
# forwarder runs with `--user`, as docs/forwarder.md says, in throwaway network
# namespaces that are removed on exit.
#
# Usage (root): scripts/bench-mesh-scale.sh [SIZE...]
#   RUNS=3 SERVICES=500 LAYOUTS="file dir" DNS_N=2000 CONN_N=1000 LOOKUPS=2000000
#   PIN=0 (CPUs of the latency probes, the echo server and the probed
#   forwarder; "none": not pinned)
#   KEEP_WORKDIR=1 keeps the generated files.
# Wall-clock figures need a quiet machine; on a busy one compare the CPU
# column and the growth between sizes, and use
#   valgrind --tool=callgrind target/release/examples/mesh_rebuild --dataplane FILE --repeat 1
# for repeatable instruction counts.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
SERVICES=${SERVICES:-500}
LAYOUTS=${LAYOUTS:-"file dir"}
DNS_N=${DNS_N:-2000}
CONN_N=${CONN_N:-1000}
LOOKUPS=${LOOKUPS:-2000000}
PIN=${PIN:-0}
# The latency probes, the echo server and (while probed) the forwarder share
# these CPUs: wake-ups across CPUs make p50 bimodal from run to run.
pin=""
[ "$PIN" = none ] || pin="taskset -c $PIN"
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1 1000 10000 50000)
[ "$(id -u)" = 0 ] || { echo "bench-mesh-scale: must run as root" >&2; exit 2; }
for c in ip setpriv rustc awk taskset; do
  command -v "$c" >/dev/null || { echo "bench-mesh-scale: $c is required" >&2; exit 2; }
done

cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tproxyctl --example mesh_rebuild
target=${CARGO_TARGET_DIR:-$root/target}/release
WORK=$(mktemp -d /tmp/meshbench.XXXXXX)
chmod 755 "$WORK"   # the forwarder runs as the exempt user
cp "$target/tproxyctl" "$target/examples/mesh_rebuild" "$WORK/"
NS="meshbench-$$"
PEER="meshbench-peer-$$"
FWD_PID=""
cleanup() {
  local p
  for ns in "$NS" "$PEER"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  if [ -n "${KEEP_WORKDIR:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
log() { printf '[mesh-scale] %s\n' "$*" >&2; }

# ------------------------------------------------------------------ probe
cat > "$WORK/probe.rs" <<'RUST'
// probe: readiness poll, DNS and connection-setup latency (std only).
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn die(m: &str) -> ! { eprintln!("probe: {m}"); std::process::exit(2) }
fn arg(a: &[String], i: usize) -> &str { a.get(i).map(String::as_str).unwrap_or_else(|| die("missing argument")) }
fn addr(s: &str) -> SocketAddr { s.parse().unwrap_or_else(|_| die(&format!("bad address {s}"))) }
fn report(what: &str, mut v: Vec<u64>) {
    v.sort_unstable();
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    println!("{what} p50={:.1} p90={:.1} p99={:.1} n={}", p(0.5), p(0.9), p(0.99), v.len());
}

// Polls GET /ready every millisecond until it answers 200.
fn ready(admin: SocketAddr, timeout: Duration) {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if let Ok(mut s) = TcpStream::connect_timeout(&admin, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut b = [0u8; 12];
            if s.read_exact(&mut b).is_ok() && &b == b"HTTP/1.1 200" { return; }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    die("not ready in time")
}

// One A query at a time, no EDNS, over a connected UDP socket.
fn dns(server: SocketAddr, name: &str, n: usize) {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut v = Vec::with_capacity(n);
    let mut buf = [0u8; 1500];
    for i in 0..(n + n / 10) {
        let id = (i as u16).to_be_bytes();
        let mut q = vec![id[0], id[1], 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.trim_end_matches('.').split('.') { q.push(l.len() as u8); q.extend_from_slice(l.as_bytes()); }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let t = Instant::now();
        s.send(&q).unwrap();
        let m = s.recv(&mut buf).unwrap_or_else(|e| die(&format!("query {i}: {e}")));
        let took = t.elapsed().as_nanos() as u64;
        if m < 12 || buf[..2] != id || buf[3] & 0x0f != 0 || buf[7] == 0 { die(&format!("query {i}: no answer for {name}")); }
        if i >= n / 10 { v.push(took); }
    }
    report("dns_us", v);
}

// Connect, send one byte, read its echo, close; timed to the echo.
fn conn(target: SocketAddr, n: usize) {
    let mut v = Vec::with_capacity(n);
    for i in 0..(n + n / 10) {
        let t = Instant::now();
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2)).unwrap_or_else(|e| die(&format!("connect {i}: {e}")));
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 1];
        s.write_all(b"x").and_then(|_| s.read_exact(&mut b)).unwrap_or_else(|e| die(&format!("echo {i}: {e}")));
        let took = t.elapsed().as_nanos() as u64;
        drop(s);
        if i >= n / 10 { v.push(took); }
    }
    report("conn_us", v);
}

// Echo server: a few threads, one connection at a time each.
fn echo(listen: SocketAddr) {
    let l = TcpListener::bind(listen).unwrap_or_else(|e| die(&format!("bind {listen}: {e}")));
    let hs: Vec<_> = (0..4).map(|_| {
        let l = l.try_clone().unwrap();
        std::thread::spawn(move || loop {
            let Ok((mut s, _)) = l.accept() else { continue };
            let _ = s.set_nodelay(true);
            let mut b = [0u8; 4096];
            while let Ok(n) = s.read(&mut b) { if n == 0 || s.write_all(&b[..n]).is_err() { break; } }
        })
    }).collect();
    for h in hs { let _ = h.join(); }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

// SIGHUP to the forwarder, then the time until its log says the new
// settings generation is in force.
fn reload(log: &str, pid: i32) {
    let count = || {
        let t = std::fs::read_to_string(log).unwrap_or_default();
        if t.contains("reload failed") { die(&format!("reload failed:\n{t}")); }
        t.matches("reloaded: settings generation").count()
    };
    let before = count();
    let t = Instant::now();
    // SAFETY: kill(2) with a PID and SIGHUP (1).
    if unsafe { kill(pid, 1) } != 0 { die("kill failed"); }
    while count() == before {
        if t.elapsed() > Duration::from_secs(600) { die("no reload in time"); }
        std::thread::sleep(Duration::from_micros(500));
    }
    println!("reload_ms={:.1}", t.elapsed().as_secs_f64() * 1000.0);
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match arg(&a, 1) {
        "reload" => reload(arg(&a, 2), arg(&a, 3).parse().unwrap()),
        "ready" => ready(addr(arg(&a, 2)), Duration::from_secs(600)),
        "dns" => dns(addr(arg(&a, 2)), arg(&a, 3), arg(&a, 4).parse().unwrap()),
        "conn" => conn(addr(arg(&a, 2)), arg(&a, 3).parse().unwrap()),
        "echo" => echo(addr(arg(&a, 2))),
        other => die(&format!("unknown mode {other}")),
    }
}
RUST
rustc -O --edition 2021 -o "$WORK/probe" "$WORK/probe.rs"

# ------------------------------------------------------------ namespaces
# NS: the host under test (rules, forwarder, clients), 172.31.255.1.
# PEER: the other VMs: 172.31.255.2 and the probe Dataplane's 10.99.0.1.
ip netns add "$NS"
ip netns add "$PEER"
ip -n "$NS" link set lo up
ip -n "$PEER" link set lo up
ip -n "$NS" link add va type veth peer name vb netns "$PEER"
ip -n "$NS" addr add 172.31.255.1/30 dev va
ip -n "$PEER" addr add 172.31.255.2/30 dev vb
ip -n "$NS" link set va up
ip -n "$PEER" link set vb up
ip -n "$NS" route add default via 172.31.255.2
# Thousands of short connections per size (client and forwarder share the
# 4-tuple space towards the probe): the namespace's own port range and
# TIME_WAIT reuse keep them from running out of ports.
ip netns exec "$NS" sysctl -q -w net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1
ip -n "$PEER" addr add 10.99.0.1/32 dev lo
ip -n "$PEER" route add default via 172.31.255.1
ip netns exec "$PEER" $pin "$WORK/probe" echo 10.99.0.1:8080 &
disown   # killed with the namespace on exit

cat > "$WORK/resolv.conf" <<EOF
nameserver 172.31.255.2
EOF
cat > "$WORK/config.yaml" <<EOF
kumaDPUser: daemon
redirect:
  dns:
    enabled: true
    resolvConfigPath: $WORK/resolv.conf
EOF
ip netns exec "$NS" "$WORK/tproxyctl" install transparent-proxy --config "$WORK/config.yaml" \
  --receipt "$WORK/receipt.json" >/dev/null 2>"$WORK/install.log" \
  || { cat "$WORK/install.log" >&2; exit 1; }

# --------------------------------------------------------------- meshes
# Dataplane i: dp-i at 10.(100 + i/65536).(i/256%256).(i%256), inbound 8080 of
# svc-(i % SERVICES), delivering to 127.0.0.1:80.
generate() { # n dir-or-empty
  awk -v n="$1" -v services="$SERVICES" -v dir="$2" '
    function addr(i) { return "10." (100 + int(i / 65536)) "." int(i / 256) % 256 "." i % 256 }
    BEGIN {
      for (i = 0; i < n; i++) {
        doc = sprintf("type: Dataplane\nmesh: default\nname: dp-%d\nnetworking:\n  address: %s\n  inbound:\n  - port: 8080\n    servicePort: 80\n    serviceAddress: 127.0.0.1\n    tags:\n      kuma.io/service: svc-%d\n      kuma.io/protocol: http\n      version: v1\n", i, addr(i), i % services)
        if (dir != "") { f = sprintf("%s/dp-%06d.yaml", dir, i); printf "%s", doc > f; close(f) }
        else { if (i > 0) printf "---\n"; printf "%s", doc }
      }
    }'
}
probe_dp='type: Dataplane
mesh: default
name: probe-1
networking:
  address: 10.99.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: probe
'
{
  printf 'type: Dataplane\nmesh: default\nname: this-proxy\nnetworking:\n  address: 172.31.255.1\n  inbound:\n  - port: 9000\n    tags:\n      kuma.io/service: this-proxy\n'
  printf '  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n    reachableBackends:\n      refs:\n'
  printf '      - kind: MeshService\n        name: probe\n'
  for ((s = 0; s < SERVICES; s++)); do printf '      - kind: MeshService\n        name: svc-%d\n' "$s"; done
} > "$WORK/local.yaml"

median() { sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Starts the forwarder on the mesh at $1, waits for /ready; sets FWD_PID and
# prints "wall_ms cpu_ms".
start_forwarder() {
  local t0 t1 tick cpu
  t0=$(date +%s%N)
  ip netns exec "$NS" "$WORK/tproxyctl" forwarder --config "$WORK/config.yaml" \
    --receipt "$WORK/receipt.json" --user daemon \
    --dataplane "$1" --local-dataplane "$WORK/local.yaml" \
    </dev/null >/dev/null 2>"$WORK/forwarder.log" &
  FWD_PID=$!
  ip netns exec "$NS" "$WORK/probe" ready 127.0.0.1:9901 \
    || { cat "$WORK/forwarder.log" >&2; exit 1; }
  t1=$(date +%s%N)
  tick=$(getconf CLK_TCK)
  cpu=$(awk -v t="$tick" '{print ($14 + $15) * 1000 / t}' "/proc/$FWD_PID/stat")
  echo "$(( (t1 - t0) / 1000000 )) $cpu"
}
stop_forwarder() {
  kill -TERM "$FWD_PID" 2>/dev/null || true
  wait "$FWD_PID" 2>/dev/null || true
  FWD_PID=""
}
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
# The lowest p50 of five runs: other load on the machine only adds.
p50_of() { for _ in 1 2 3 4 5; do "$@" | sed -n 's/.*p50=\([0-9.]*\).*/\1/p'; done | sort -n | head -1; }

printf '%-6s %7s %9s %8s %9s %9s %9s %8s %7s %9s %9s %10s %10s %9s %9s\n' \
  layout DPs "ready ms" "cpu ms" "reload ms" "rb cpu ms" "peak MiB" "rss MiB" "B/DP" "peak B/DP" \
  "rss2 MiB" "dns p50us" "conn p50us" "route ns" "answer ns"
base_rss=""; base_hwm=""
for layout in $LAYOUTS; do
  for n in "${SIZES[@]}"; do
    gen=$(( n > 1 ? n - 1 : 0 ))   # plus the probe Dataplane
    path="$WORK/mesh-$layout-$n"
    if [ "$layout" = dir ]; then
      mkdir -p "$path"
      generate "$gen" "$path"
      printf '%s' "$probe_dp" > "$path/probe.yaml"
    else
      path="$path.yaml"
      { generate "$gen" ""; [ "$gen" -gt 0 ] && echo "---"; printf '%s' "$probe_dp"; } > "$path"
    fi
    walls=(); cpus=()
    for ((r = 0; r < RUNS; r++)); do
      start_forwarder "$path" > "$WORK/started"
      read -r w c < "$WORK/started"
      walls+=("$w"); cpus+=("$c")
      if (( r < RUNS - 1 )); then stop_forwarder; fi
    done
    hwm=$(status_kib "$FWD_PID" VmHWM); rss=$(status_kib "$FWD_PID" VmRSS)
    [ -n "$base_rss" ] || { base_rss=$rss; base_hwm=$hwm; }
    [ -z "$pin" ] || taskset -a -p -c "$PIN" "$FWD_PID" >/dev/null
    dns=$(p50_of ip netns exec "$NS" $pin setpriv --reuid 65534 --regid 65534 --clear-groups \
      "$WORK/probe" dns 127.0.0.1:15053 probe.mesh "$DNS_N")
    conn=$(p50_of ip netns exec "$NS" $pin setpriv --reuid 65534 --regid 65534 --clear-groups \
      "$WORK/probe" conn 10.99.0.1:8080 "$CONN_N")
    reloads=()
    for ((r = 0; r < RUNS; r++)); do
      reloads+=("$("$WORK/probe" reload "$WORK/forwarder.log" "$FWD_PID" | sed -n 's/^reload_ms=//p')")
    done
    reload=$(printf '%s\n' "${reloads[@]}" | median)
    reload_rss=$(status_kib "$FWD_PID" VmRSS)
    stop_forwarder
    ip netns exec "$NS" "$WORK/mesh_rebuild" --config "$WORK/config.yaml" \
      --receipt "$WORK/receipt.json" --dataplane "$path" --local-dataplane "$WORK/local.yaml" \
      --repeat "$RUNS" --lookups "$LOOKUPS" --lookup-service probe > "$WORK/rebuild"
    read -r _ rebuild_cpu < <(sed -n 's/^rebuild_ms=\([0-9.]*\) cpu_ms=\([0-9.]*\).*/\1 \2/p' "$WORK/rebuild")
    read -r route_ns answer_ns < <(sed -n 's/^route_ns=\([0-9.]*\) answer_ns=\([0-9.]*\).*/\1 \2/p' "$WORK/rebuild")
    awk -v l="$layout" -v n="$n" -v w="$(printf '%s\n' "${walls[@]}" | median)" \
        -v c="$(printf '%s\n' "${cpus[@]}" | median)" -v rb="$reload" -v rbc="$rebuild_cpu" \
        -v rrss="$reload_rss" \
        -v hwm="$hwm" -v rss="$rss" -v brss="$base_rss" -v bhwm="$base_hwm" \
        -v dns="$dns" -v conn="$conn" -v rns="$route_ns" -v ans="$answer_ns" 'BEGIN {
      per = n > 1 ? (rss - brss) * 1024 / n : 0; pper = n > 1 ? (hwm - bhwm) * 1024 / n : 0
      printf "%-6s %7d %9.0f %8.0f %9.1f %9.1f %9.1f %8.1f %7.0f %9.0f %9.1f %10.1f %10.1f %9.1f %9.0f\n",
        l, n, w, c, rb, rbc, hwm / 1024, rss / 1024, per, pper, rrss / 1024, dns, conn, rns, ans }'
    rm -rf "$path"
  done
done
