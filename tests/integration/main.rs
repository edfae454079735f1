//! Integration tests of the tproxyctl binary: command-line behaviour, dry-run
//! goldens, and kernel tests that install real rules in throwaway network
//! namespaces on both iptables backends and prove them with real traffic.

mod common;
mod cycle;

mod cli;
mod crashes;
mod dataplane;
mod dataplane_kuma;
mod ebpf;
mod ebpf_env;
mod ebpf_loader;
mod ebpf_object;
mod firewalld;
mod forwarder;
mod fwd_dns;
mod fwd_kernel;
mod fwd_mesh;
mod fwd_ops;
mod generated;
mod golden;
mod golden_installs;
mod hygiene;
mod json_contract;
mod kernel;
mod no_panic;
mod packaging;
mod prop_installs;
mod races;
mod readme;
mod txn;
