// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * tproxy.bpf.c - tproxyctl's eBPF redirection mode: the same contract as the
 * KUMA_MESH_* iptables rules (src/plan/mod.rs), without iptables.
 *
 *   outbound  cgroup/connect4|6   TCP connect -> 127.0.0.1|::1 : outbound port,
 *                                 the original destination kept by socket cookie
 *             sockops             once the source port is chosen, the original
 *                                 destination is filed under the connection as
 *                                 the proxy will see it (its peer address)
 *             cgroup/getsockopt   SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST answered
 *                                 from that entry, so proxies work unchanged
 *   inbound   sk_lookup           TCP arriving on a non-loopback interface for
 *                                 any non-excluded port is given to the socket
 *                                 listening on the inbound port (registered by
 *                                 sockops when it calls listen()); the accepted
 *                                 socket keeps the original destination as its
 *                                 local address, and getsockopt reports it
 *   DNS       cgroup/sendmsg4|6   UDP/53 to a resolv.conf server (or any) ->
 *             cgroup/connect4|6   loopback : DNS port, the server kept by cookie
 *             cgroup/recvmsg4|6   replies and the peer name show the server the
 *             cgroup/getpeername4|6  application asked
 *
 * Cgroup hooks run for every socket of every process in the cgroup, whatever
 * its network namespace; each program first checks that the socket lives in
 * the namespace tproxyctl was installed in (tp_config.netns_cookie), as
 * iptables rules only ever apply to their own namespace.
 *
 * Built by bpf/build.sh; the object is committed (bpf/tproxy.bpf.o).
 */

#include "include/tp_types.h"
#include "include/tp_maps.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tp_config);
} tp_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1); /* sized by the loader */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tp_port_key);
	__type(value, __u8);
} tp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1); /* sized by the loader */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tp_net4_key);
	__type(value, __u8);
} tp_nets4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1); /* sized by the loader */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tp_net6_key);
	__type(value, __u8);
} tp_nets6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TP_MAX_UID_RULES);
	__type(key, __u32);
	__type(value, struct tp_uid_rule);
} tp_uid_rules SEC(".maps");

/* socket cookie -> original destination: TCP from connect until sockops
 * files it by connection; UDP for as long as the socket talks to the DNS
 * proxy. LRU: a socket closed in between costs nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tp_orig);
} tp_cookie_orig SEC(".maps");

/* connection (as the proxy sees it) -> original destination */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tp_pair_key);
	__type(value, struct tp_orig);
} tp_pair_orig SEC(".maps");

/* the inbound listeners: 0 an AF_INET socket, 1 an AF_INET6 one */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} tp_listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TP_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} tp_stats SEC(".maps");

/* A destination or source in one shape for both families. */
struct view {
	__u32 ip[4]; /* network byte order, IPv4 mapped */
	__u16 port; /* host byte order */
	__u8 v4;
};

#define MAPPED_PREFIX tp_htonl(0x0000ffff)

static __always_inline const struct tp_config *config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&tp_config, &zero);
}

static __always_inline void count(__u32 index)
{
	__u64 *n = bpf_map_lookup_elem(&tp_stats, &index);
	if (n)
		*n += 1;
}

static __always_inline void view4(struct view *v, __u32 ip4, __u16 port)
{
	v->ip[0] = 0;
	v->ip[1] = 0;
	v->ip[2] = MAPPED_PREFIX;
	v->ip[3] = ip4;
	v->port = port;
	v->v4 = 1;
}

static __always_inline void view6(struct view *v, const __u32 *ip6, __u16 port)
{
	v->ip[0] = ip6[0];
	v->ip[1] = ip6[1];
	v->ip[2] = ip6[2];
	v->ip[3] = ip6[3];
	v->port = port;
	v->v4 = ip6[0] == 0 && ip6[1] == 0 && ip6[2] == MAPPED_PREFIX;
}

static __always_inline int is_loopback(const struct view *v)
{
	if (v->v4)
		return (tp_ntohl(v->ip[3]) >> 24) == 127;
	return v->ip[0] == 0 && v->ip[1] == 0 && v->ip[2] == 0 &&
	       v->ip[3] == tp_htonl(1);
}

static __always_inline int is_localhost(const struct view *v)
{
	if (v->v4)
		return v->ip[3] == tp_htonl(0x7f000001);
	return is_loopback(v);
}

/* 127.0.0.6 / ::6: the source of the proxy's inbound passthrough hops */
static __always_inline int is_passthrough(const struct view *v)
{
	if (v->v4)
		return v->ip[3] == tp_htonl(0x7f000006);
	return v->ip[0] == 0 && v->ip[1] == 0 && v->ip[2] == 0 &&
	       v->ip[3] == tp_htonl(6);
}

static __always_inline int in_nets(__u8 kind, const struct view *v)
{
	if (v->v4) {
		struct tp_net4_key k = {
			.prefixlen = 64, .kind = kind, .addr = v->ip[3]
		};
		return bpf_map_lookup_elem(&tp_nets4, &k) != 0;
	}
	struct tp_net6_key k = { .prefixlen = 160, .kind = kind };
	k.addr[0] = v->ip[0];
	k.addr[1] = v->ip[1];
	k.addr[2] = v->ip[2];
	k.addr[3] = v->ip[3];
	return bpf_map_lookup_elem(&tp_nets6, &k) != 0;
}

static __always_inline int port_listed(__u8 dir, __u16 port)
{
	struct tp_port_key k = { .port = port, .dir = dir };
	return bpf_map_lookup_elem(&tp_ports, &k) != 0;
}

/* One --exclude-outbound-ports-for-uids lookup, for bpf_loop: the verifier
 * checks the callback once, where an open-coded loop over the rules would
 * be walked rule by rule at every call site (it made loading take a second). */
struct uid_match {
	__u32 uid;
	__u16 port;
	__u8 proto;
	__u8 found;
};

static long uid_rule(__u32 index, void *data)
{
	struct uid_match *m = data;
	__u32 k = index;
	struct tp_uid_rule *r = bpf_map_lookup_elem(&tp_uid_rules, &k);
	if (!r)
		return 1;
	if ((r->protocols & m->proto) && m->uid >= r->uid_first &&
	    m->uid <= r->uid_last && m->port >= r->port_first &&
	    m->port <= r->port_last) {
		m->found = 1;
		return 1;
	}
	return 0;
}

static __always_inline int uid_excluded(const struct tp_config *cfg, __u32 uid,
					__u16 port, __u8 proto)
{
	__u32 n = cfg->uid_rule_count;
	if (!n)
		return 0;
	struct uid_match m = { .uid = uid, .port = port, .proto = proto };
	bpf_loop(n > TP_MAX_UID_RULES ? TP_MAX_UID_RULES : n, uid_rule, &m, 0);
	return m.found;
}

static __always_inline __u32 current_uid(void)
{
	return (__u32)bpf_get_current_uid_gid();
}

static __always_inline int our_netns(const struct tp_config *cfg, void *ctx)
{
	return bpf_get_netns_cookie(ctx) == cfg->netns_cookie;
}

/* The port an outbound TCP connect goes to instead, or 0: the nat OUTPUT
 * rules of src/plan/mod.rs, in their order. */
static __always_inline __u16 outbound_target(const struct tp_config *cfg,
					     const struct view *dst,
					     const struct view *src, __u32 uid)
{
	__u32 exempt = cfg->exempt_uid;
	if (!dst->v4 && !(cfg->flags & TP_F_IPV6))
		return 0;
	if (uid_excluded(cfg, uid, dst->port, TP_PROTO_TCP))
		return 0;
	if (in_nets(TP_NET_OUT_EXCLUDED, dst))
		return 0;
	/* DNS over TCP is not redirected when DNS redirection is on */
	if ((cfg->flags & TP_F_DNS) && dst->port == 53 && uid != exempt)
		return 0;
	if (!(cfg->flags & TP_F_OUTBOUND))
		return 0;
	if (!(cfg->flags & TP_F_OUT_INCLUDE) &&
	    port_listed(TP_DIR_OUT, dst->port))
		return 0;
	/* "-o lo": a local destination */
	int local = is_loopback(dst) || in_nets(TP_NET_LOCAL, dst);
	if (local && is_passthrough(src))
		return 0;
	if (local && !is_localhost(dst) && uid == exempt)
		return cfg->inbound_port;
	if (local || uid == exempt)
		return 0;
	if ((cfg->flags & TP_F_OUT_INCLUDE) &&
	    !port_listed(TP_DIR_OUT, dst->port))
		return 0;
	return cfg->outbound_port;
}

/* True when a UDP datagram to dst goes to the DNS proxy instead. */
static __always_inline int dns_redirected(const struct tp_config *cfg,
					  const struct view *dst, __u32 uid)
{
	if (!(cfg->flags & TP_F_DNS) || dst->port != 53)
		return 0;
	if (!dst->v4 && !(cfg->flags & TP_F_IPV6))
		return 0;
	if (uid_excluded(cfg, uid, 53, TP_PROTO_UDP))
		return 0;
	if (in_nets(TP_NET_OUT_EXCLUDED, dst))
		return 0;
	if (uid == cfg->exempt_uid)
		return 0;
	if (!(cfg->flags & TP_F_DNS_ALL) && !in_nets(TP_NET_DNS_SERVER, dst))
		return 0;
	return 1;
}

static __always_inline void remember(void *ctx, const struct view *dst)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct tp_orig o = { .port = tp_htons(dst->port) };
	o.addr[0] = dst->ip[0];
	o.addr[1] = dst->ip[1];
	o.addr[2] = dst->ip[2];
	o.addr[3] = dst->ip[3];
	bpf_map_update_elem(&tp_cookie_orig, &cookie, &o, BPF_ANY);
}

/* connect4 and connect6 share this; it says where the socket goes instead
 * (port 0: nowhere else). */
static __always_inline __u16 connect_target(struct bpf_sock_addr *ctx,
					    const struct tp_config *cfg,
					    const struct view *dst)
{
	__u32 uid = current_uid();
	if (ctx->protocol == IPPROTO_UDP) {
		if (!dns_redirected(cfg, dst, uid))
			return 0;
		count(TP_STAT_DNS);
		return cfg->dns_port;
	}
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	struct view src = {};
	struct bpf_sock *sk = ctx->sk;
	if (sk) {
		__u32 family = CTX_READ(sk->family);
		__u32 ip4 = CTX_READ(sk->src_ip4);
		__u32 ip6[4] = { CTX_READ(sk->src_ip6[0]),
				 CTX_READ(sk->src_ip6[1]),
				 CTX_READ(sk->src_ip6[2]),
				 CTX_READ(sk->src_ip6[3]) };
		if (family == AF_INET)
			view4(&src, ip4, 0);
		else
			view6(&src, ip6, 0);
	}
	__u16 to = outbound_target(cfg, dst, &src, uid);
	if (to)
		count(to == cfg->outbound_port ? TP_STAT_OUTBOUND :
						 TP_STAT_HAIRPIN);
	return to;
}

SEC("cgroup/connect4")
int tp_connect4(struct bpf_sock_addr *ctx)
{
	const struct tp_config *cfg = config();
	if (!cfg || !our_netns(cfg, ctx))
		return 1;
	struct view dst;
	view4(&dst, ctx->user_ip4, tp_ntohs((__u16)ctx->user_port));
	__u16 to = connect_target(ctx, cfg, &dst);
	if (!to)
		return 1;
	remember(ctx, &dst);
	ctx->user_ip4 = tp_htonl(0x7f000001);
	ctx->user_port = tp_htons(to);
	return 1;
}

static __always_inline void to_loopback6(struct bpf_sock_addr *ctx, int v4,
					 __u16 port)
{
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	ctx->user_ip6[2] = v4 ? MAPPED_PREFIX : 0;
	ctx->user_ip6[3] = v4 ? tp_htonl(0x7f000001) : tp_htonl(1);
	ctx->user_port = tp_htons(port);
}

SEC("cgroup/connect6")
int tp_connect6(struct bpf_sock_addr *ctx)
{
	const struct tp_config *cfg = config();
	if (!cfg || !our_netns(cfg, ctx))
		return 1;
	struct view dst;
	__u32 ip6[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			 ctx->user_ip6[3] };
	view6(&dst, ip6, tp_ntohs((__u16)ctx->user_port));
	__u16 to = connect_target(ctx, cfg, &dst);
	if (!to)
		return 1;
	remember(ctx, &dst);
	to_loopback6(ctx, dst.v4, to);
	return 1;
}

SEC("cgroup/sendmsg4")
int tp_sendmsg4(struct bpf_sock_addr *ctx)
{
	const struct tp_config *cfg = config();
	if (!cfg || !our_netns(cfg, ctx))
		return 1;
	struct view dst;
	view4(&dst, ctx->user_ip4, tp_ntohs((__u16)ctx->user_port));
	if (!dns_redirected(cfg, &dst, current_uid()))
		return 1;
	count(TP_STAT_DNS);
	remember(ctx, &dst);
	ctx->user_ip4 = tp_htonl(0x7f000001);
	ctx->user_port = tp_htons(cfg->dns_port);
	return 1;
}

SEC("cgroup/sendmsg6")
int tp_sendmsg6(struct bpf_sock_addr *ctx)
{
	const struct tp_config *cfg = config();
	if (!cfg || !our_netns(cfg, ctx))
		return 1;
	struct view dst;
	__u32 ip6[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			 ctx->user_ip6[3] };
	view6(&dst, ip6, tp_ntohs((__u16)ctx->user_port));
	if (!dns_redirected(cfg, &dst, current_uid()))
		return 1;
	count(TP_STAT_DNS);
	remember(ctx, &dst);
	to_loopback6(ctx, dst.v4, cfg->dns_port);
	return 1;
}

/* The DNS server the application asked, when `from` is the DNS proxy. */
static __always_inline const struct tp_orig *
dns_server_for(void *ctx, const struct tp_config *cfg, const struct view *from)
{
	if (from->port != cfg->dns_port || !is_localhost(from))
		return 0;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	return bpf_map_lookup_elem(&tp_cookie_orig, &cookie);
}

static __always_inline int restore4(struct bpf_sock_addr *ctx)
{
	const struct tp_config *cfg = config();
	if (!cfg || !our_netns(cfg, ctx))
		return 1;
	struct view from;
	view4(&from, ctx->user_ip4, tp_ntohs((__u16)ctx->user_port));
	const struct tp_orig *o = dns_server_for(ctx, cfg, &from);
	if (!o || o->addr[2] != MAPPED_PREFIX)
		return 1;
	ctx->user_ip4 = o->addr[3];
	ctx->user_port = o->port;
	return 1;
}

static __always_inline int restore6(struct bpf_sock_addr *ctx)
{
	const struct tp_config *cfg = config();
	if (!cfg || !our_netns(cfg, ctx))
		return 1;
	struct view from;
	__u32 ip6[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			 ctx->user_ip6[3] };
	view6(&from, ip6, tp_ntohs((__u16)ctx->user_port));
	const struct tp_orig *o = dns_server_for(ctx, cfg, &from);
	if (!o)
		return 1;
	ctx->user_ip6[0] = o->addr[0];
	ctx->user_ip6[1] = o->addr[1];
	ctx->user_ip6[2] = o->addr[2];
	ctx->user_ip6[3] = o->addr[3];
	ctx->user_port = o->port;
	return 1;
}

SEC("cgroup/recvmsg4")
int tp_recvmsg4(struct bpf_sock_addr *ctx)
{
	return restore4(ctx);
}

SEC("cgroup/recvmsg6")
int tp_recvmsg6(struct bpf_sock_addr *ctx)
{
	return restore6(ctx);
}

SEC("cgroup/getpeername4")
int tp_getpeername4(struct bpf_sock_addr *ctx)
{
	return restore4(ctx);
}

SEC("cgroup/getpeername6")
int tp_getpeername6(struct bpf_sock_addr *ctx)
{
	return restore6(ctx);
}

SEC("sockops")
int tp_sockops(struct bpf_sock_ops *skops)
{
	const struct tp_config *cfg = config();
	if (!cfg)
		return 1;
	__u32 op = skops->op;
	if (op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
		/* the source port is chosen now; the proxy will see this
		 * connection from (local address, local port) */
		__u64 cookie = bpf_get_socket_cookie(skops);
		struct tp_orig *o = bpf_map_lookup_elem(&tp_cookie_orig, &cookie);
		if (!o)
			return 1;
		struct tp_pair_key k = {
			.netns_cookie = cfg->netns_cookie,
			.peer_port = (__u16)CTX_READ(skops->local_port),
			.local_port =
				tp_ntohs((__u16)(CTX_READ(skops->remote_port) >> 16)),
		};
		/* every field read before the branch (see CTX_READ) */
		__u32 family = CTX_READ(skops->family);
		__u32 ip4 = CTX_READ(skops->local_ip4);
		__u32 ip6[4] = { CTX_READ(skops->local_ip6[0]),
				 CTX_READ(skops->local_ip6[1]),
				 CTX_READ(skops->local_ip6[2]),
				 CTX_READ(skops->local_ip6[3]) };
		if (family == AF_INET) {
			k.peer[2] = MAPPED_PREFIX;
			k.peer[3] = ip4;
		} else {
			k.peer[0] = ip6[0];
			k.peer[1] = ip6[1];
			k.peer[2] = ip6[2];
			k.peer[3] = ip6[3];
		}
		struct tp_orig copy = *o;
		bpf_map_update_elem(&tp_pair_orig, &k, &copy, BPF_ANY);
		bpf_map_delete_elem(&tp_cookie_orig, &cookie);
		return 1;
	}
	if (op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
		if (skops->local_port != cfg->inbound_port ||
		    !our_netns(cfg, skops))
			return 1;
		__u32 slot = skops->family == AF_INET6 ? 1 : 0;
		if (bpf_sock_map_update(skops, &tp_listeners, &slot, BPF_ANY) ==
		    0)
			count(TP_STAT_LISTENER);
	}
	return 1;
}

SEC("cgroup/getsockopt")
int tp_getsockopt(struct bpf_sockopt *ctx)
{
	if (ctx->optname != SO_ORIGINAL_DST ||
	    (ctx->level != SOL_IP && ctx->level != SOL_IPV6))
		return 1;
	const struct tp_config *cfg = config();
	if (!cfg || !our_netns(cfg, ctx))
		return 1;
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	struct tp_pair_key k = {
		.netns_cookie = cfg->netns_cookie,
		.peer_port = tp_ntohs((__u16)sk->dst_port),
		.local_port = (__u16)sk->src_port,
	};
	__u32 family = CTX_READ(sk->family);
	__u32 ip4 = CTX_READ(sk->dst_ip4);
	__u32 ip6[4] = { CTX_READ(sk->dst_ip6[0]), CTX_READ(sk->dst_ip6[1]),
			 CTX_READ(sk->dst_ip6[2]), CTX_READ(sk->dst_ip6[3]) };
	if (family == AF_INET) {
		k.peer[2] = MAPPED_PREFIX;
		k.peer[3] = ip4;
	} else {
		k.peer[0] = ip6[0];
		k.peer[1] = ip6[1];
		k.peer[2] = ip6[2];
		k.peer[3] = ip6[3];
	}
	struct tp_orig *o = bpf_map_lookup_elem(&tp_pair_orig, &k);
	if (!o)
		return 1;
	void *optval = ctx->optval;
	void *end = ctx->optval_end;
	int v4 = o->addr[0] == 0 && o->addr[1] == 0 &&
		 o->addr[2] == MAPPED_PREFIX;
	int len;
	if (ctx->level == SOL_IP) {
		struct sockaddr_in *sa = optval;
		if (!v4 || (void *)(sa + 1) > end)
			return 1;
		sa->sin_family = AF_INET;
		sa->sin_port = o->port;
		sa->sin_addr = o->addr[3];
		__builtin_memset(sa->sin_zero, 0, sizeof(sa->sin_zero));
		len = sizeof(*sa);
	} else {
		struct sockaddr_in6 *sa = optval;
		if ((void *)(sa + 1) > end)
			return 1;
		sa->sin6_family = AF_INET6;
		sa->sin6_port = o->port;
		sa->sin6_flowinfo = 0;
		sa->sin6_addr[0] = o->addr[0];
		sa->sin6_addr[1] = o->addr[1];
		sa->sin6_addr[2] = o->addr[2];
		sa->sin6_addr[3] = o->addr[3];
		sa->sin6_scope_id = 0;
		len = sizeof(*sa);
	}
	ctx->optlen = len;
	/* Two separate context stores: clang would merge them into one
	 * 8-byte store, which the verifier rejects ("dereference of modified
	 * ctx ptr"). */
	asm volatile("" ::: "memory");
	ctx->retval = 0;
	count(TP_STAT_ORIGINAL_DST);
	return 1;
}

/* Where an inbound connection goes: the listener on the inbound port, or
 * refused (RST) when nothing listens there, as a REDIRECT to a closed port
 * would be. */
SEC("sk_lookup")
int tp_sk_lookup(struct bpf_sk_lookup *ctx)
{
	const struct tp_config *cfg = config();
	if (!cfg || ctx->protocol != IPPROTO_TCP ||
	    !(cfg->flags & TP_F_INBOUND))
		return SK_PASS;
	__u32 ifindex = ctx->ingress_ifindex;
	if (cfg->inbound_ifindex ? ifindex != cfg->inbound_ifindex :
				   ifindex == LOOPBACK_IFINDEX)
		return SK_PASS;
	__u16 port = (__u16)ctx->local_port;
	if (port == cfg->inbound_port)
		return SK_PASS;
	/* every field read before the branches (see CTX_READ) */
	__u32 family = CTX_READ(ctx->family);
	__u16 remote_port = tp_ntohs(CTX_READ(ctx->remote_port));
	__u32 remote4 = CTX_READ(ctx->remote_ip4);
	__u32 remote6[4] = { CTX_READ(ctx->remote_ip6[0]),
			     CTX_READ(ctx->remote_ip6[1]),
			     CTX_READ(ctx->remote_ip6[2]),
			     CTX_READ(ctx->remote_ip6[3]) };
	__u32 local4 = CTX_READ(ctx->local_ip4);
	__u32 local6[4] = { CTX_READ(ctx->local_ip6[0]),
			    CTX_READ(ctx->local_ip6[1]),
			    CTX_READ(ctx->local_ip6[2]),
			    CTX_READ(ctx->local_ip6[3]) };
	struct view src;
	if (family == AF_INET) {
		view4(&src, remote4, remote_port);
	} else {
		if (!(cfg->flags & TP_F_IPV6))
			return SK_PASS;
		view6(&src, remote6, remote_port);
	}
	/* PREROUTING never sees this host's own connections, and sk_lookup
	 * does: a connection to a local address from this host (the proxy's
	 * passthrough hop from 127.0.0.6 / ::6, an application calling its own
	 * address) arrives with the interface of the address, not loopback,
	 * so it is told by its source. */
	if (is_loopback(&src) || is_passthrough(&src) ||
	    in_nets(TP_NET_LOCAL, &src))
		return SK_PASS;
	if (in_nets(TP_NET_IN_EXCLUDED, &src))
		return SK_PASS;
	int listed = port_listed(TP_DIR_IN, port);
	if ((cfg->flags & TP_F_IN_INCLUDE) ? !listed : listed)
		return SK_PASS;

	/* an AF_INET listener first for IPv4, then a dual-stack AF_INET6 one */
	__u32 slot = family == AF_INET ? 0 : 1;
	struct bpf_sock *sk = bpf_map_lookup_elem(&tp_listeners, &slot);
	long err = -1;
	if (sk) {
		err = bpf_sk_assign(ctx, sk, 0);
		bpf_sk_release(sk);
	}
	if (err && family == AF_INET) {
		slot = 1;
		sk = bpf_map_lookup_elem(&tp_listeners, &slot);
		if (sk) {
			err = bpf_sk_assign(ctx, sk, 0);
			bpf_sk_release(sk);
		}
	}
	if (err) {
		count(TP_STAT_INBOUND_NO_LISTENER);
		return SK_DROP;
	}
	struct tp_pair_key k = {
		.netns_cookie = cfg->netns_cookie,
		.peer_port = src.port,
		.local_port = port,
	};
	k.peer[0] = src.ip[0];
	k.peer[1] = src.ip[1];
	k.peer[2] = src.ip[2];
	k.peer[3] = src.ip[3];
	struct tp_orig o = { .port = tp_htons(port) };
	if (family == AF_INET) {
		o.addr[2] = MAPPED_PREFIX;
		o.addr[3] = local4;
	} else {
		o.addr[0] = local6[0];
		o.addr[1] = local6[1];
		o.addr[2] = local6[2];
		o.addr[3] = local6[3];
	}
	bpf_map_update_elem(&tp_pair_orig, &k, &o, BPF_ANY);
	count(TP_STAT_INBOUND);
	return SK_PASS;
}
