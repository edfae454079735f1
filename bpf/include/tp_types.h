/* SPDX-License-Identifier: (GPL-2.0-only WITH Linux-syscall-note) OR MIT */
/*
 * tp_types.h - the only kernel types the tproxyctl BPF programs use.
 *
 * Every type here is a BPF program *context* or a UAPI constant from
 * <linux/bpf.h>. Context fields are not kernel-internal structs: the
 * verifier rewrites each access by its offset, so their layout is a stable
 * ABI and no CO-RE relocation (nor a full vmlinux.h) is needed. Declaring
 * them here, rather than including the build machine's <linux/bpf.h> and
 * libbpf's headers, keeps the object's BTF independent of the installed
 * kernel headers: the object is a function of these sources and the clang
 * version only (see bpf/build.sh).
 *
 * Structs are cut after the last field the programs read; their offsets are
 * those of <linux/bpf.h>. A wrong offset would not go unnoticed: the verifier
 * checks every context access by offset and size at load time, which every
 * kernel test does.
 */
#ifndef TP_TYPES_H
#define TP_TYPES_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef __u16 __be16;
typedef __u32 __be32;

#define __bpf_md_ptr(type, name)                                               \
	union {                                                                \
		type name;                                                     \
		__u64 : 64;                                                    \
	} __attribute__((aligned(8)))

/* struct bpf_sock (uapi/linux/bpf.h) */
struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 mark;
	__u32 priority;
	__u32 src_ip4;
	__u32 src_ip6[4];
	__u32 src_port; /* host byte order */
	__be16 dst_port; /* network byte order */
	__u16 : 16;
	__u32 dst_ip4;
	__u32 dst_ip6[4];
	__u32 state;
	__s32 rx_queue_mapping;
};

/* struct bpf_sock_addr: cgroup connect, sendmsg, recvmsg, getpeername */
struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4; /* network byte order */
	__u32 user_ip6[4]; /* network byte order */
	__u32 user_port; /* network byte order */
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 msg_src_ip4;
	__u32 msg_src_ip6[4];
	__bpf_md_ptr(struct bpf_sock *, sk);
};

/* struct bpf_sock_ops, cut after local_port */
struct bpf_sock_ops {
	__u32 op;
	union {
		__u32 args[4];
		__u32 reply;
		__u32 replylong[4];
	};
	__u32 family;
	__u32 remote_ip4; /* network byte order */
	__u32 local_ip4; /* network byte order */
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port; /* network byte order, shifted left 16 */
	__u32 local_port; /* host byte order */
};

/* struct bpf_sockopt: cgroup getsockopt */
struct bpf_sockopt {
	__bpf_md_ptr(struct bpf_sock *, sk);
	__bpf_md_ptr(void *, optval);
	__bpf_md_ptr(void *, optval_end);
	__s32 level;
	__s32 optname;
	__s32 optlen;
	__s32 retval;
};

/* struct bpf_sk_lookup */
struct bpf_sk_lookup {
	union {
		__bpf_md_ptr(struct bpf_sock *, sk);
		__u64 cookie;
	};
	__u32 family;
	__u32 protocol;
	__u32 remote_ip4; /* network byte order */
	__u32 remote_ip6[4]; /* network byte order */
	__be16 remote_port; /* network byte order */
	__u16 : 16;
	__u32 local_ip4; /* network byte order */
	__u32 local_ip6[4]; /* network byte order */
	__u32 local_port; /* host byte order */
	__u32 ingress_ifindex;
};

/* What getsockopt(SOL_IP, SO_ORIGINAL_DST) and (SOL_IPV6,
 * IP6T_SO_ORIGINAL_DST) return. */
struct sockaddr_in {
	__u16 sin_family;
	__be16 sin_port;
	__be32 sin_addr;
	__u8 sin_zero[8];
};

struct sockaddr_in6 {
	__u16 sin6_family;
	__be16 sin6_port;
	__be32 sin6_flowinfo;
	__u32 sin6_addr[4];
	__u32 sin6_scope_id;
};

/* enum bpf_map_type */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_LPM_TRIE 11
#define BPF_MAP_TYPE_SOCKMAP 15

#define BPF_ANY 0
#define BPF_F_NO_PREALLOC 1

/* enum bpf_sock_ops_cb: called whatever the callback flags are */
#define BPF_SOCK_OPS_TCP_CONNECT_CB 3
#define BPF_SOCK_OPS_TCP_LISTEN_CB 11

/* sk_lookup verdicts */
#define SK_DROP 0
#define SK_PASS 1

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define SOL_IP 0
#define SOL_IPV6 41
/* SO_ORIGINAL_DST (linux/netfilter_ipv4.h) == IP6T_SO_ORIGINAL_DST */
#define SO_ORIGINAL_DST 80
/* include/linux/netdevice.h: loopback is interface 1 in every namespace */
#define LOOPBACK_IFINDEX 1

/* Helpers, by number (enum bpf_func_id). */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key,
				   const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_get_current_uid_gid)(void) = (void *)15;
static __u64 (*bpf_get_socket_cookie)(void *ctx) = (void *)46;
static long (*bpf_sock_map_update)(struct bpf_sock_ops *skops, void *map,
				   void *key, __u64 flags) = (void *)53;
static long (*bpf_sk_release)(void *sock) = (void *)86;
static __u64 (*bpf_get_netns_cookie)(void *ctx) = (void *)122;
static long (*bpf_sk_assign)(void *ctx, void *sk, __u64 flags) = (void *)124;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx,
			__u64 flags) = (void *)181;

/* libbpf's map-definition and section conventions (bpf_helpers.h) */
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define __always_inline inline __attribute__((always_inline))

/* A context read the compiler keeps where it is written: clang otherwise
 * merges reads of different fields behind a branch into one load through a
 * moved context pointer, which the verifier rejects ("dereference of
 * modified ctx ptr"). */
#define CTX_READ(field) (*(volatile __typeof__(field) *)&(field))

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define tp_htons(x) __builtin_bswap16(x)
#define tp_htonl(x) __builtin_bswap32(x)
#else
#define tp_htons(x) (x)
#define tp_htonl(x) (x)
#endif
#define tp_ntohs(x) tp_htons(x)
#define tp_ntohl(x) tp_htonl(x)

#endif
