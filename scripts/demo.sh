#!/usr/bin/env bash
# demo.sh - tproxyctl end to end, in throwaway network namespaces.
#
# Builds tproxyctl, creates a "host" namespace joined by a veth pair to a
# "network" namespace that holds a web server at 203.0.113.80, installs the
# transparent-proxy rules in the host, starts the bundled forwarder there as
# the exempt user, and shows:
#   - an application's connection to the web server being redirected to the
#     forwarder (port 15001), which sees its original destination and relays it;
#   - an inbound connection redirected to port 15006 and handed to the local
#     application from 127.0.0.6;
#   - status and verify;
# then uninstalls and removes everything. Run as root on Debian; the host's
# own rules are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (sudo scripts/demo.sh)" >&2; exit 2; }
missing=()
for pair in iptables-nft:iptables ip:iproute2 socat:socat setpriv:util-linux; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "demo.sh: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== building tproxyctl"
cargo build --release --quiet
# Where cargo put it: CARGO_TARGET_DIR, build.target-dir or ./target.
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
WORK=$(mktemp -d /tmp/tproxyctl-demo.XXXXXX)
chmod 755 "$WORK"
cp "$TARGET_DIR/release/tproxyctl" "$WORK/tproxyctl"
T="$WORK/tproxyctl"
HOST="tpdemo-host-$$"
NET="tpdemo-net-$$"
RECEIPT="$WORK/receipt.json"

cleanup() {
  for ns in "$HOST" "$NET"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

h() { ip netns exec "$HOST" "$@"; }
n() { ip netns exec "$NET" "$@"; }
say() { printf '\n== %s\n' "$*"; }

say "namespaces: $HOST (10.88.0.1, fd00:88::1) <-> $NET (web server 203.0.113.80, 2001:db8:88::80)"
ip netns add "$HOST"; ip netns add "$NET"
ip -n "$HOST" link set lo up; ip -n "$NET" link set lo up
ip -n "$HOST" link add eth0 type veth peer name eth0 netns "$NET"
ip -n "$HOST" addr add 10.88.0.1/24 dev eth0; ip -n "$HOST" -6 addr add fd00:88::1/64 dev eth0 nodad
ip -n "$NET" addr add 10.88.0.2/24 dev eth0; ip -n "$NET" -6 addr add fd00:88::2/64 dev eth0 nodad
ip -n "$HOST" link set eth0 up; ip -n "$NET" link set eth0 up
ip -n "$HOST" route add default via 10.88.0.2; ip -n "$HOST" -6 route add default via fd00:88::2
ip -n "$NET" route add default via 10.88.0.1; ip -n "$NET" -6 route add default via fd00:88::1
ip -n "$NET" addr add 203.0.113.80/32 dev lo; ip -n "$NET" -6 addr add 2001:db8:88::80/128 dev lo nodad
for l in TCP4-LISTEN TCP6-LISTEN; do
  n socat "$l:80,fork,reuseaddr$([ $l = TCP6-LISTEN ] && echo ,ipv6only=1)" \
    SYSTEM:'read line; echo "web server: hello, $SOCAT_PEERADDR"' >/dev/null 2>&1 &
done
# an application in the host, listening on 8080
for l in TCP4-LISTEN TCP6-LISTEN; do
  h socat "$l:8080,fork,reuseaddr$([ $l = TCP6-LISTEN ] && echo ,ipv6only=1)" \
    SYSTEM:'read line; echo "application on the host: hello, $SOCAT_PEERADDR"' >/dev/null 2>&1 &
done
sleep 0.3

say "tproxyctl install transparent-proxy --dry-run (first lines of the IPv4 rules)"
h "$T" install transparent-proxy --dry-run --kuma-dp-user daemon 2>/dev/null | sed -n '1,12p'

say "tproxyctl install transparent-proxy --kuma-dp-user daemon"
h "$T" install transparent-proxy --kuma-dp-user daemon --exclude-inbound-ports 22 --receipt "$RECEIPT"

say "tproxyctl forwarder --user daemon (running as the exempt user, access log on stdout)"
h "$T" forwarder --kuma-dp-user daemon --user daemon --receipt "$RECEIPT" --access-log - \
  > "$WORK/access.log" 2> "$WORK/forwarder.err" &
for _ in $(seq 1 50); do h ss -Hltn 'sport = :15001' | grep -q . && break; sleep 0.1; done
cat "$WORK/forwarder.err"

app() { # run a one-line TCP client as the application user (nobody)
  h setpriv --reuid=65534 --regid=65534 --clear-groups \
    bash -c "exec 3<>/dev/tcp/$1/$2 && echo hi >&3 && timeout 5 head -n1 <&3"
}

say "the application (user nobody) connects to 203.0.113.80:80 and [2001:db8:88::80]:80"
app 203.0.113.80 80
app 2001:db8:88::80 80
say "inbound: from the network to 10.88.0.1:8080 (redirected to 15006, handed over from 127.0.0.6)"
n bash -c 'exec 3<>/dev/tcp/10.88.0.1/8080 && echo hi >&3 && timeout 5 head -n1 <&3'
sleep 0.3
say "the forwarder's access log (one line per connection, with the original destination)"
cat "$WORK/access.log"
say "the forwarder's statistics (GET http://127.0.0.1:9901/stats, connections per cluster)"
h bash -c 'exec 3<>/dev/tcp/127.0.0.1/9901 && printf "GET /stats HTTP/1.0\r\n\r\n" >&3 && cat <&3' \
  | grep -E '^tproxyctl_cluster_(cx_total|bytes_sent_total)' || true

say "tproxyctl status"
h "$T" status --receipt "$RECEIPT" | grep -v '^ ' || true
say "tproxyctl verify (the installed rules, re-created in a throwaway namespace)"
"$T" verify --receipt "$RECEIPT" | tail -4

say "tproxyctl uninstall transparent-proxy"
h "$T" uninstall transparent-proxy --receipt "$RECEIPT"
echo "rules left in the host namespace: $(h iptables-save | grep -c '^-A' || true)"
say "done; the namespaces are removed on exit"
