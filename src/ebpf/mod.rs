//! eBPF redirection mode (SPEC §10): the only Rust code that talks to the
//! BPF system call. [`maps`] turns a configuration into map contents,
//! [`object`] is the embedded object and its programs, [`loader`] loads,
//! fills, attaches and pins them as a transaction and removes exactly what
//! it pinned, [`preflight`] checks the kernel before anything changes,
//! [`cgroup`] finds the cgroup2 hierarchy, [`sys`] holds the raw `bpf(2)`
//! calls aya does not offer.

pub mod cgroup;
pub mod loader;
pub mod maps;
pub mod object;
pub mod sys;
