/* SPDX-License-Identifier: MIT OR GPL-2.0-only */
/*
 * tp_maps.h - the layout of every map value and key the programs share with
 * tproxyctl (src/ebpf/maps.rs mirrors these structs with #[repr(C)] and a
 * test checks their sizes against the object's BTF).
 */
#ifndef TP_MAPS_H
#define TP_MAPS_H

#include "tp_types.h"

/* tp_config: one entry, written by the installer. */
struct tp_config {
	__u64 netns_cookie; /* only sockets of this network namespace */
	__u32 exempt_uid; /* the kuma-dp user: never redirected */
	__u32 flags; /* TP_F_* */
	__u16 outbound_port;
	__u16 inbound_port;
	__u16 dns_port;
	__u16 uid_rule_count; /* entries used in tp_uid_rules */
	__u32 inbound_ifindex; /* 0: every interface but loopback */
	__u32 pad;
};

#define TP_F_OUTBOUND (1u << 0) /* redirect outbound TCP */
#define TP_F_INBOUND (1u << 1) /* redirect inbound TCP */
#define TP_F_DNS (1u << 2) /* redirect UDP/53 to the resolv.conf servers */
#define TP_F_DNS_ALL (1u << 3) /* ... to any server */
#define TP_F_IPV6 (1u << 4) /* native IPv6 too (ipFamilyMode dualstack) */
#define TP_F_OUT_INCLUDE (1u << 5) /* tp_ports DIR_OUT lists included ports */
#define TP_F_IN_INCLUDE (1u << 6) /* tp_ports DIR_IN lists included ports */

/* tp_ports: a port listed for a direction; what "listed" means is
 * TP_F_*_INCLUDE (redirect only these) or else "excluded". */
struct tp_port_key {
	__u16 port; /* host byte order */
	__u8 dir; /* TP_DIR_* */
	__u8 pad;
};
#define TP_DIR_OUT 0
#define TP_DIR_IN 1

/* tp_nets4 / tp_nets6: longest-prefix-match tries of addresses by kind.
 * The key's prefix length counts the 32 bits of kind+pad first. */
struct tp_net4_key {
	__u32 prefixlen;
	__u8 kind; /* TP_NET_* */
	__u8 pad[3];
	__u32 addr; /* network byte order */
};
struct tp_net6_key {
	__u32 prefixlen;
	__u8 kind;
	__u8 pad[3];
	__u32 addr[4];
};
#define TP_NET_OUT_EXCLUDED 1 /* outbound destination not redirected */
#define TP_NET_IN_EXCLUDED 2 /* inbound source not redirected */
#define TP_NET_DNS_SERVER 3 /* a resolv.conf name server */
#define TP_NET_LOCAL 4 /* an address of this instance (besides loopback) */

/* tp_uid_rules: --exclude-outbound-ports-for-uids, one entry per protocol
 * set, port range and UID range. */
struct tp_uid_rule {
	__u32 uid_first;
	__u32 uid_last;
	__u16 port_first;
	__u16 port_last;
	__u8 protocols; /* TP_PROTO_* bits */
	__u8 pad[3];
};
#define TP_PROTO_TCP 1
#define TP_PROTO_UDP 2
#define TP_MAX_UID_RULES 256

/* An original destination: IPv6, or IPv4 as ::ffff:a.b.c.d. */
struct tp_orig {
	__u32 addr[4]; /* network byte order */
	__u16 port; /* network byte order */
	__u16 pad;
};

/* tp_pair_orig key: the redirected connection as the proxy's accepted
 * socket sees it (its peer, and its own local port). */
struct tp_pair_key {
	__u64 netns_cookie;
	__u32 peer[4]; /* network byte order, IPv4 mapped */
	__u16 peer_port; /* host byte order */
	__u16 local_port; /* host byte order */
	__u32 pad;
};

/* tp_stats: per-CPU counters, indexes below. */
#define TP_STAT_OUTBOUND 0 /* outbound connects redirected */
#define TP_STAT_HAIRPIN 1 /* kuma-dp to a local address, to the inbound port */
#define TP_STAT_DNS 2 /* UDP/53 sends redirected to the DNS port */
#define TP_STAT_INBOUND 3 /* inbound connections given to the inbound port */
#define TP_STAT_INBOUND_NO_LISTENER 4 /* ... refused: nothing listens */
#define TP_STAT_ORIGINAL_DST 5 /* SO_ORIGINAL_DST answered */
#define TP_STAT_LISTENER 6 /* inbound listeners registered */
#define TP_STAT_COUNT 8

#endif
