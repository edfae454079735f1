//! Integration tests of the tproxyctl binary: command-line behaviour, dry-run
//! goldens, and kernel tests that install real rules in throwaway network
//! namespaces on both iptables backends and prove them with real traffic.

mod common;

mod cli;
mod dataplane;
mod ebpf;
mod ebpf_env;
mod ebpf_loader;
mod ebpf_object;
mod firewalld;
mod forwarder;
mod fwd_kernel;
mod fwd_mesh;
mod generated;
mod golden;
mod kernel;
mod readme;
mod txn;
