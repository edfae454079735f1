//! Every dry-run golden configuration installed for real, on nft and on
//! legacy, in a namespace that already holds foreign rules: the installed
//! rules equal the kernel's form of the plan, foreign rules keep order and
//! counters (policy counters too), an identical re-install is a no-op that
//! says so, and uninstall gives back exactly the state before (see
//! [`crate::cycle`]).

use crate::common::*;
use crate::cycle::{CycleOpts, Invocation, cycle};
use crate::golden;
use crate::require_kernel;

fn all_goldens_install(backend: Backend) {
    let mut failures = Vec::new();
    let cases = golden::cases();
    for case in &cases {
        let mut args = vec!["--kuma-dp-user".to_string(), EXEMPT_USER.to_string()];
        args.extend(case.args.iter().cloned());
        let inv = Invocation {
            ipv6_host: case.ipv6,
            setup: case.setup.clone(),
            env: case.env.clone(),
            args,
            files: Vec::new(),
        };
        if let Err(e) = cycle("gi", &inv, backend, &CycleOpts::default()) {
            failures.push(format!("=== golden case {}\n{e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden configurations do not install cleanly on {}:\n{}",
        failures.len(),
        cases.len(),
        backend.name(),
        failures.join("\n")
    );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn golden_configurations_install_and_uninstall_exactly_nft() {
    require_kernel!();
    all_goldens_install(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn golden_configurations_install_and_uninstall_exactly_legacy() {
    require_kernel!();
    all_goldens_install(Backend::Legacy);
}
