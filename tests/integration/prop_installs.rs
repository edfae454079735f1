//! Property tests over the whole configuration space. Random VALID
//! configurations (ports, directions on/off, include/exclude ports, IPv4 and
//! IPv6 exclusions with host bits set, UID exclusions, virtual networks, every
//! DNS mode with or without the conntrack zone split and a DOCKER_OUTPUT
//! chain, IP family mode, comments, insert flags, LOG rules, INVALID-packet
//! drop, custom chain names, apply settings, firewalld persistence; given as
//! flags, environment and config file) go through the full install cycle of
//! [`crate::cycle`] on nft and legacy side by side. Random INVALID ones (one
//! bad value injected into a valid configuration) must exit 2 naming the
//! value, with the host, the receipt and direct.xml untouched.
//!
//! Case counts are small so CI stays fast: `PROPTEST_CASES=N` raises them
//! (and `PROPTEST_MAX_SHRINK_ITERS`, `PROPTEST_RNG_SEED` work as usual). A
//! failure prints the shrunk configuration as a shell command line.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use crate::common::*;
use crate::cycle::{CycleOpts, Foreign, Host, Invocation, Snapshot, cycle, failed};
use crate::require_kernel;

/// Valid cases per run (each is a full cycle on both backends, ~2-3 s).
const VALID_CASES: u32 = 6;
/// Invalid cases per run (one command and two snapshots each).
const INVALID_CASES: u32 = 24;
/// Shrinking steps of the valid property, bounded: each is a full cycle.
const VALID_SHRINK_ITERS: u32 = 64;
/// Shrinking stops after this long (milliseconds), so a red run stays
/// within the CI budget; the configuration printed is the smallest so far.
const SHRINK_MILLIS: u32 = 120_000;
/// Shrinking steps of the invalid property (a step is one command).
const INVALID_SHRINK_ITERS: u32 = 2000;

/// The runner configuration: our bounds unless the usual proptest
/// variables say otherwise; no regression files in the source tree.
fn config(cases: u32, shrink_iters: u32) -> Config {
    let set = |v: &str| std::env::var_os(v).is_some();
    let mut c = Config::default();
    if !set("PROPTEST_CASES") {
        c.cases = cases;
    }
    if !set("PROPTEST_MAX_SHRINK_ITERS") {
        c.max_shrink_iters = shrink_iters;
    }
    if !set("PROPTEST_MAX_SHRINK_TIME") {
        c.max_shrink_time = SHRINK_MILLIS;
    }
    c.failure_persistence = None;
    c
}

/// Runs a property and panics with the minimal failing input and its reason.
fn check<S: Strategy>(
    what: &str,
    (cases, shrink_iters): (u32, u32),
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: fmt::Debug,
{
    let mut runner = TestRunner::new(config(cases, shrink_iters));
    match runner.run(&strategy, test) {
        Ok(()) => {}
        Err(TestError::Fail(reason, value)) => {
            panic!("{what}: minimal failing configuration:\n{value:?}\n\nwhy:\n{reason}")
        }
        Err(TestError::Abort(reason)) => panic!("{what}: aborted: {reason}"),
    }
}

// ----- the configuration space -----

#[derive(Clone, Debug)]
struct Flow {
    disabled: bool,
    port: Option<u16>,
    exclude_ports: Vec<u16>,
    include_ports: Vec<u16>,
    exclude_ips: Vec<String>,
    insert: bool,
}

#[derive(Clone, Debug)]
enum DnsMode {
    Off,
    /// `--redirect-dns` with these resolv.conf servers.
    Servers(Vec<String>),
    CaptureAll,
}

#[derive(Clone, Debug)]
struct Dns {
    mode: DnsMode,
    port: Option<u16>,
    skip_zone_split: bool,
    docker_output: bool,
}

/// One drawn configuration and the host it is installed on.
#[derive(Clone)]
struct Conf {
    ipv6_host: bool,
    family: Option<&'static str>,
    user: &'static str,
    inbound: Flow,
    outbound: Flow,
    uid_exclusions: Vec<String>,
    dns: Dns,
    vnets: Vec<String>,
    /// `None`: no LOG rules; `Some(level)`: `--iptables-logs` (and a level).
    log: Option<Option<u8>>,
    comments_off: bool,
    drop_invalid: bool,
    verbose: bool,
    /// Base of custom chain names, when set.
    chains: Option<String>,
    apply: Vec<String>,
    /// Config-only keys in a config file (else in the environment).
    in_file: bool,
    foreign: Foreign,
    /// `--store-firewalld`, and direct.xml's content before (None: no file).
    direct: Option<Option<&'static str>>,
}

const DIRECT_FOREIGN: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n  <rule ipv=\"ipv4\" table=\"filter\" chain=\"INPUT\" priority=\"0\">-p tcp --dport 2222 -j ACCEPT</rule>\n</direct>\n";

fn port() -> impl Strategy<Value = u16> {
    1u16..=65535
}

fn ip4() -> impl Strategy<Value = String> {
    (any::<u32>(), proptest::option::of(0u8..=32)).prop_map(|(a, p)| {
        let a = Ipv4Addr::from(a);
        match p {
            Some(p) => format!("{a}/{p}"),
            None => a.to_string(),
        }
    })
}

fn ip6() -> impl Strategy<Value = String> {
    (any::<u128>(), proptest::option::of(0u8..=128)).prop_map(|(a, p)| {
        let a = Ipv6Addr::from(a);
        match p {
            Some(p) => format!("{a}/{p}"),
            None => a.to_string(),
        }
    })
}

fn ip() -> impl Strategy<Value = String> {
    prop_oneof![ip4(), ip6()]
}

fn flow() -> impl Strategy<Value = Flow> {
    (
        prop::bool::weighted(0.15),
        proptest::option::of(port()),
        prop::collection::vec(port(), 0..4),
        prop::collection::vec(port(), 0..3),
        prop::collection::vec(ip(), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(disabled, port, exclude_ports, include_ports, exclude_ips, insert)| Flow {
                disabled,
                port,
                exclude_ports,
                include_ports,
                exclude_ips,
                insert,
            },
        )
}

/// `<protocol:>?<ports:>?<uids>` with every part optional where it may be.
fn uid_exclusion() -> impl Strategy<Value = String> {
    let proto = proptest::option::of(prop::sample::select(vec!["tcp", "udp", "tcp,udp", "*"]));
    let piece = prop_oneof![
        port().prop_map(|p| p.to_string()),
        (port(), port()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
    ];
    let ports = proptest::option::of(prop_oneof![
        Just("*".to_string()),
        prop::collection::vec(piece, 1..5).prop_map(|v| v.join(",")),
    ]);
    let uids = prop_oneof![
        (0u32..=u32::MAX - 1).prop_map(|u| u.to_string()),
        (0u32..=u32::MAX - 1, 0u32..=u32::MAX - 1).prop_map(|(a, b)| format!(
            "{}-{}",
            a.min(b),
            a.max(b)
        )),
    ];
    (proto, ports, uids).prop_map(|(proto, ports, uids)| match (proto, ports) {
        (None, None) => uids,
        (None, Some(p)) => format!("{p}:{uids}"),
        (Some(pr), p) => format!("{pr}:{}:{uids}", p.unwrap_or_default()),
    })
}

fn dns() -> impl Strategy<Value = Dns> {
    let mode = prop_oneof![
        Just(DnsMode::Off),
        prop::collection::vec(
            prop_oneof![
                any::<u32>().prop_map(|a| Ipv4Addr::from(a).to_string()),
                any::<u128>().prop_map(|a| Ipv6Addr::from(a).to_string()),
                Just("127.0.0.53".to_string()),
            ],
            0..3
        )
        .prop_map(DnsMode::Servers),
        Just(DnsMode::CaptureAll),
    ];
    (
        mode,
        proptest::option::of(port()),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(mode, port, skip_zone_split, docker_output)| Dns {
            mode,
            port,
            skip_zone_split,
            docker_output,
        })
}

fn vnet() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9._-]{0,10}",
        any::<bool>(),
        prop_oneof![ip4(), ip6()],
    )
        .prop_map(|(name, prefix, cidr)| {
            // a CIDR, not a bare address
            let cidr = if cidr.contains('/') {
                cidr
            } else if cidr.contains(':') {
                format!("{cidr}/128")
            } else {
                format!("{cidr}/32")
            };
            format!("{name}{}:{cidr}", if prefix { "+" } else { "" })
        })
        .prop_filter("a /0 virtual network is refused (bad_vnet)", |v| {
            !v.ends_with("/0")
        })
}

fn apply_flags() -> impl Strategy<Value = Vec<String>> {
    (
        proptest::option::of(0u32..=5),
        proptest::option::of(0u32..=1000),
        proptest::option::of(0u32..=3),
        proptest::option::of(prop::sample::select(vec!["0", "10ms", "100ms"])),
    )
        .prop_map(|(wait, interval, retries, sleep)| {
            let mut v = Vec::new();
            if let Some(w) = wait {
                v.extend(["--wait".to_string(), w.to_string()]);
            }
            if let Some(i) = interval {
                v.extend(["--wait-interval".to_string(), i.to_string()]);
            }
            if let Some(r) = retries {
                v.extend(["--max-retries".to_string(), r.to_string()]);
            }
            if let Some(s) = sleep {
                v.extend(["--sleep-between-retries".to_string(), s.to_string()]);
            }
            v
        })
}

fn conf() -> impl Strategy<Value = Conf> {
    let host = (
        any::<bool>(),
        proptest::option::of(prop::sample::select(vec!["dualstack", "ipv4", "IPv4"])),
        prop::sample::select(vec!["daemon", "1", "nobody", "65534"]),
        prop_oneof![Just(Foreign::All), Just(Foreign::None)],
        proptest::option::of(proptest::option::of(prop::sample::select(vec![
            "",
            "<direct/>\n",
            DIRECT_FOREIGN,
        ]))),
    );
    let flows = (flow(), flow(), prop::collection::vec(uid_exclusion(), 0..3));
    let extras = (
        dns(),
        prop::collection::vec(vnet(), 0..3),
        proptest::option::of(proptest::option::of(0u8..=7)),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        proptest::option::of("[A-Z][A-Z0-9]{0,5}"),
        apply_flags(),
        any::<bool>(),
    );
    (host, flows, extras).prop_map(
        |(
            (ipv6_host, family, user, foreign, direct),
            (inbound, outbound, uid_exclusions),
            (dns, vnets, log, (comments_off, drop_invalid, verbose), chains, apply, in_file),
        )| Conf {
            ipv6_host,
            family,
            user,
            inbound,
            outbound,
            uid_exclusions,
            dns,
            vnets,
            log,
            comments_off,
            drop_invalid,
            verbose,
            chains,
            apply,
            in_file,
            foreign,
            direct,
        },
    )
}

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// An invocation being built: flags, and the keys that have no flag (they
/// go to the environment or to a config file at the end).
struct Builder {
    inv: Invocation,
    /// (config file path, variable after KUMA_TRANSPARENT_PROXY_, value)
    keys: Vec<(&'static str, &'static str, serde_json::Value)>,
}

impl Builder {
    fn flag(&mut self, f: &str, v: Option<String>) {
        self.inv.args.push(f.to_string());
        self.inv.args.extend(v);
    }

    fn key(&mut self, path: &'static str, env: &'static str, v: serde_json::Value) {
        self.keys.push((path, env, v));
    }

    fn flow(&mut self, dir: &str, fl: &Flow) {
        let inbound = dir == "inbound";
        if fl.disabled {
            if inbound {
                self.flag("--redirect-inbound=false", None);
            } else {
                self.key(
                    "redirect.outbound.enabled",
                    "REDIRECT_OUTBOUND_ENABLED",
                    false.into(),
                );
            }
        }
        if let Some(p) = fl.port {
            self.flag(&format!("--redirect-{dir}-port"), Some(p.to_string()));
        }
        if !fl.exclude_ports.is_empty() {
            self.flag(
                &format!("--exclude-{dir}-ports"),
                Some(join(&fl.exclude_ports)),
            );
        }
        for ip in &fl.exclude_ips {
            self.flag(&format!("--exclude-{dir}-ips"), Some(ip.clone()));
        }
        if fl.insert {
            self.flag(&format!("--redirect-{dir}-insert-instead-of-append"), None);
        }
        if !fl.include_ports.is_empty() {
            let (path, env) = if inbound {
                (
                    "redirect.inbound.includePorts",
                    "REDIRECT_INBOUND_INCLUDE_PORTS",
                )
            } else {
                (
                    "redirect.outbound.includePorts",
                    "REDIRECT_OUTBOUND_INCLUDE_PORTS",
                )
            };
            self.key(path, env, join(&fl.include_ports).into());
        }
    }

    fn dns(&mut self, dns: &Dns) {
        match &dns.mode {
            DnsMode::Off => {}
            DnsMode::Servers(servers) => {
                self.flag("--redirect-dns", None);
                let text: String = servers
                    .iter()
                    .map(|s| format!("nameserver {s}\n"))
                    .collect();
                self.inv.files.push(("resolv.conf".into(), text));
                self.inv.env.push((
                    "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_RESOLV_CONFIG_PATH".into(),
                    "{dir}/resolv.conf".into(),
                ));
            }
            DnsMode::CaptureAll => self.flag("--redirect-all-dns-traffic", None),
        }
        if let Some(p) = dns.port {
            self.flag("--redirect-dns-port", Some(p.to_string()));
        }
        if dns.skip_zone_split {
            self.flag("--skip-dns-conntrack-zone-split", None);
        }
        if dns.docker_output {
            self.inv
                .setup
                .push("{iptables} -t nat -N DOCKER_OUTPUT".into());
        }
    }

    fn chains(&mut self, base: &str) {
        for (path, env, tail) in [
            (
                "redirect.inbound.chainName",
                "REDIRECT_INBOUND_CHAIN_NAME",
                "XI",
            ),
            (
                "redirect.outbound.chainName",
                "REDIRECT_OUTBOUND_CHAIN_NAME",
                "XO",
            ),
            (
                "redirect.inbound.redirectChainName",
                "REDIRECT_INBOUND_REDIRECT_CHAIN_NAME",
                "XIR",
            ),
            (
                "redirect.outbound.redirectChainName",
                "REDIRECT_OUTBOUND_REDIRECT_CHAIN_NAME",
                "XOR",
            ),
        ] {
            self.key(path, env, format!("{base}_{tail}").into());
        }
    }

    /// The keys without a flag into a JSON config file (`in_file`) or the
    /// environment.
    fn finish(mut self, in_file: bool) -> Invocation {
        if in_file && !self.keys.is_empty() {
            let mut doc = serde_json::json!({});
            for (path, _, value) in &self.keys {
                let (parents, leaf) = path.rsplit_once('.').unwrap_or(("", path));
                let mut at = &mut doc;
                for p in parents.split('.').filter(|p| !p.is_empty()) {
                    at = at
                        .as_object_mut()
                        .expect("object")
                        .entry(p.to_string())
                        .or_insert_with(|| serde_json::json!({}));
                }
                at[leaf] = match value {
                    // lists of ports are lists in a file
                    serde_json::Value::String(s) if path.ends_with("Ports") => s
                        .split(',')
                        .map(|p| serde_json::Value::from(p.parse::<u16>().expect("port")))
                        .collect(),
                    v => v.clone(),
                };
            }
            self.inv.files.push(("config.json".into(), doc.to_string()));
            self.inv
                .args
                .extend(["--config".into(), "{dir}/config.json".into()]);
        } else {
            for (_, env, value) in self.keys {
                let text = match value {
                    serde_json::Value::String(s) => s,
                    v => v.to_string(),
                };
                self.inv
                    .env
                    .push((format!("KUMA_TRANSPARENT_PROXY_{env}"), text));
            }
        }
        self.inv
    }
}

impl Conf {
    /// The command line, environment and files of this configuration.
    fn invocation(&self) -> Invocation {
        let mut b = Builder {
            inv: Invocation {
                ipv6_host: self.ipv6_host,
                ..Invocation::default()
            },
            keys: Vec::new(),
        };
        b.flag("--kuma-dp-user", Some(self.user.to_string()));
        if let Some(f) = self.family {
            b.flag("--ip-family-mode", Some(f.to_string()));
        }
        b.flow("inbound", &self.inbound);
        b.flow("outbound", &self.outbound);
        for u in &self.uid_exclusions {
            b.flag("--exclude-outbound-ports-for-uids", Some(u.clone()));
        }
        b.dns(&self.dns);
        for v in &self.vnets {
            b.flag("--vnet", Some(v.clone()));
        }
        if let Some(level) = self.log {
            b.flag("--iptables-logs", None);
            if let Some(l) = level {
                b.key("log.level", "LOG_LEVEL", l.into());
            }
        }
        for (on, f) in [
            (self.comments_off, "--disable-comments"),
            (self.drop_invalid, "--drop-invalid-packets"),
            (self.verbose, "--verbose"),
        ] {
            if on {
                b.flag(f, None);
            }
        }
        if let Some(base) = &self.chains {
            b.chains(base);
        }
        b.inv.args.extend(self.apply.iter().cloned());
        b.finish(self.in_file)
    }

    fn opts(&self) -> CycleOpts {
        CycleOpts {
            foreign: self.foreign,
            direct: self.direct.map(|d| d.map(str::to_string)),
        }
    }
}

impl fmt::Debug for Conf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# foreign rules: {:?}", self.foreign)?;
        if let Some(d) = &self.direct {
            writeln!(
                f,
                "# --store-firewalld --firewalld-direct-file {{dir}}/direct.xml, initially {}",
                match d {
                    None => "absent".to_string(),
                    Some(t) => format!("{t:?}"),
                }
            )?;
        }
        write!(f, "{}", self.invocation())
    }
}

/// Random valid configurations install, read back, re-install as a no-op
/// and uninstall to the exact previous state, on nft and legacy.
#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn random_valid_configurations_install_and_uninstall_exactly() {
    require_kernel!();
    check(
        "valid configurations",
        (VALID_CASES, VALID_SHRINK_ITERS),
        conf(),
        |c: Conf| {
            let inv = c.invocation();
            let opts = c.opts();
            let results: Vec<Result<(), String>> = std::thread::scope(|s| {
                let handles: Vec<_> = Backend::ALL
                    .iter()
                    .map(|&b| {
                        let (inv, opts) = (&inv, &opts);
                        s.spawn(move || cycle("pv", inv, b, opts))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("cycle thread"))
                    .collect()
            });
            let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(TestCaseError::fail(errors.join("\n\n")))
            }
        },
    );
}

// ----- invalid configurations -----

/// One bad value, where it goes, and the text the error must show.
#[derive(Clone, Debug)]
enum Bad {
    /// A flag and its value (`None`: the flag alone, e.g. `--x=bad`).
    Flag(&'static str, Option<String>),
    /// `KUMA_TRANSPARENT_PROXY_<name>=value`.
    Env(&'static str, String),
    /// A config file with this content.
    File(String),
}

impl Bad {
    /// Flags of the base configuration that set the same key as this bad
    /// environment variable or file: they would win over it, so they go.
    fn shadowing_flags(&self) -> &'static [&'static str] {
        match self {
            Bad::Env("REDIRECT_DNS_PORT", _) => &["--redirect-dns-port"],
            Bad::Env("REDIRECT_INBOUND_PORT", _) => &["--redirect-inbound-port"],
            Bad::Env("REDIRECT_OUTBOUND_EXCLUDE_PORTS", _) => &["--exclude-outbound-ports"],
            Bad::Env("REDIRECT_INBOUND_ENABLED", _) => &["--redirect-inbound=false"],
            Bad::File(_) => &[
                "--redirect-inbound-port",
                "--redirect-dns",
                "--redirect-all-dns-traffic",
                "--ip-family-mode",
                "--exclude-outbound-ports",
            ],
            _ => &[],
        }
    }

    /// Texts of which the error message must contain one: the value in
    /// quotes as typed or trimmed, or one of its comma-separated pieces in
    /// quotes (a list error may name the bad piece); the file's name for a
    /// file. Empty when the value is empty.
    fn needles(&self) -> Vec<String> {
        let v = match self {
            Bad::Flag(f, None) => f.split_once('=').map(|(_, v)| v).unwrap_or(f),
            Bad::Flag(_, Some(v)) | Bad::Env(_, v) => v.as_str(),
            Bad::File(_) => return vec!["bad-config.json".into()],
        };
        if v.trim().is_empty() {
            return Vec::new();
        }
        let mut n = vec![format!("'{v}'"), format!("'{}'", v.trim())];
        n.extend(
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| format!("'{p}'")),
        );
        n.sort();
        n.dedup();
        n
    }
}

fn bad_port() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "65536",
            "-1",
            "1.5",
            "abc",
            " 15006",
            "15006 ",
            "0x10",
            "+80",
            "",
            "1e3",
            "99999999999999999999",
        ])
        .prop_map(str::to_string),
        (65536u64..=u64::MAX).prop_map(|n| n.to_string()),
    ]
}

fn bad_ip() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "10.0.0.1/33",
            "300.1.1.1",
            "fd00::/129",
            "abc",
            "10.0.0.0/8/8",
            "1.2.3",
            "10.0.0.1,",
            "fd00:::1",
            "10.0.0.1/-1",
        ])
        .prop_map(str::to_string),
        (any::<u32>(), 33u32..=255).prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a))),
    ]
}

fn bad_uid_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "tcp:22:",
            "sctp:22:1000",
            "22:abc",
            "1-0",
            "*",
            "4294967295",
            "tcp:0:1000",
            "a:b:c:d",
            "tcp:70000:1",
            "1,2",
            "tcp:1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16:1",
        ])
        .prop_map(str::to_string),
        (4294967295u64..=u64::MAX).prop_map(|n| n.to_string()),
    ]
}

fn bad_vnet() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "docker0",
        "docker0:",
        ":10.0.0.0/8",
        "docker0:300.0.0.0/8",
        "a'b:10.0.0.0/8",
        "abcdefghijklmnop:10.0.0.0/8",
        "docker0:10.0.0.1",
        "docker0:0.0.0.2/0",
        "docker0:::/0",
        "+:10.0.0.0/8",
    ])
    .prop_map(str::to_string)
}

fn bad() -> impl Strategy<Value = Bad> {
    let port_flag = prop::sample::select(vec![
        "--redirect-inbound-port",
        "--redirect-outbound-port",
        "--redirect-dns-port",
    ]);
    let list_flag =
        prop::sample::select(vec!["--exclude-inbound-ports", "--exclude-outbound-ports"]);
    let ip_flag = prop::sample::select(vec!["--exclude-inbound-ips", "--exclude-outbound-ips"]);
    let bool_flag = prop::sample::select(vec![
        "--redirect-dns=yes",
        "--redirect-inbound=maybe",
        "--disable-comments=2",
        "--iptables-logs=on",
        "--drop-invalid-packets=",
    ]);
    prop_oneof![
        (port_flag, bad_port()).prop_map(|(f, v)| Bad::Flag(f, Some(v))),
        (
            list_flag,
            // port lists trim their pieces and skip empty ones, as kumactl's do
            prop::sample::select(vec![
                "0",
                "65536",
                "-1",
                "1.5",
                "abc",
                "0x10",
                "+80",
                "1e3",
                "99999999999999999999",
                "22,abc",
                "1-2",
                "22,+80",
                "80,0",
            ])
            .prop_map(str::to_string)
        )
            .prop_map(|(f, v)| Bad::Flag(f, Some(v))),
        (ip_flag, bad_ip()).prop_map(|(f, v)| Bad::Flag(f, Some(v))),
        bad_uid_entry().prop_map(|v| Bad::Flag("--exclude-outbound-ports-for-uids", Some(v))),
        bad_vnet().prop_map(|v| Bad::Flag("--vnet", Some(v))),
        prop::sample::select(vec!["ipv6", "dual", "v4", "ip"])
            .prop_map(|v| Bad::Flag("--ip-family-mode", Some(v.to_string()))),
        bool_flag.prop_map(|f| Bad::Flag(f, None)),
        prop::sample::select(vec!["no-such-user-tpt", "-1", "4294967296"])
            .prop_map(|v| Bad::Flag("--kuma-dp-user", Some(v.to_string()))),
        prop::sample::select(vec!["x", "4294967296", "1.5"])
            .prop_map(|v| Bad::Flag("--wait", Some(v.to_string()))),
        prop::sample::select(vec!["1001", "x", "-2"])
            .prop_map(|v| Bad::Flag("--max-retries", Some(v.to_string()))),
        prop::sample::select(vec!["abc", "-1s", "5 parsecs"])
            .prop_map(|v| Bad::Flag("--sleep-between-retries", Some(v.to_string()))),
        (
            prop::sample::select(vec![
                "REDIRECT_DNS_PORT",
                "REDIRECT_INBOUND_PORT",
                "REDIRECT_OUTBOUND_EXCLUDE_PORTS",
            ]),
            // values kumactl's environment parsing rejects whatever its trimming
            prop::sample::select(vec![
                "0",
                "65536",
                "-1",
                "abc",
                "1.5",
                "99999999999999999999"
            ])
            .prop_map(str::to_string),
        )
            .prop_map(|(k, v)| Bad::Env(k, v)),
        (8u32..=300).prop_map(|l| Bad::Env("LOG_LEVEL", l.to_string())),
        prop::sample::select(vec!["nope", "yes", "2"])
            .prop_map(|v| Bad::Env("REDIRECT_INBOUND_ENABLED", v.to_string())),
        prop::sample::select(vec![
            "A_VERY_LONG_CHAIN_NAME_SUFFIX_X",
            "has space",
            "bad/char",
            "quote\"d",
        ])
        .prop_map(|v| Bad::Env("REDIRECT_INBOUND_CHAIN_NAME", v.to_string())),
        prop::sample::select(vec![
            "{\"redirect\": {\"inbound\": {\"port\": \"15006\"}}}",
            "{\"redirect\": {\"inbound\": {\"port\": [1]}}}",
            "{\"redirect\": {\"inbound\": {\"excludePortsForUIDs\": [\"1000\"]}}}",
            "{\"redirect\": {\"dns\": {\"enabled\": \"maybe\"}}}",
            "redirect: [",
            "{\"ipFamilyMode\": 4}",
            "{\"redirect\": {\"outbound\": {\"excludePorts\": [0]}}}",
        ])
        .prop_map(|v| Bad::File(v.to_string())),
    ]
}

/// A valid configuration with one bad value, and the backend it runs on.
#[derive(Clone)]
struct Invalid {
    base: Conf,
    bad: Bad,
    backend: Backend,
}

impl Invalid {
    fn invocation(&self) -> Invocation {
        let mut inv = self.base.invocation();
        for f in self.bad.shadowing_flags() {
            while let Some(i) = inv.args.iter().position(|a| a == f) {
                inv.args.remove(i);
                // a flag written with `=` or without a value stands alone
                if !f.contains('=') && inv.args.get(i).is_some_and(|v| !v.starts_with("--")) {
                    inv.args.remove(i);
                }
            }
        }
        match &self.bad {
            Bad::Flag(f, v) => {
                inv.args.push(f.to_string());
                inv.args.extend(v.clone());
            }
            Bad::Env(k, v) => inv
                .env
                .push((format!("KUMA_TRANSPARENT_PROXY_{k}"), v.clone())),
            Bad::File(text) => {
                // named differently from the base configuration's file
                inv.files.push(("bad-config.json".into(), text.clone()));
                inv.args
                    .extend(["--config".into(), "{dir}/bad-config.json".into()]);
            }
        }
        inv
    }
}

impl fmt::Debug for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# bad value: {:?} ({} backend)",
            self.bad,
            self.backend.name()
        )?;
        write!(f, "{}", self.invocation())
    }
}

fn invalid() -> impl Strategy<Value = Invalid> {
    (
        conf(),
        bad(),
        prop_oneof![Just(Backend::Nft), Just(Backend::Legacy)],
    )
        .prop_map(|(base, bad, backend)| Invalid { base, bad, backend })
}

/// One bad value anywhere: exit 2, the value named, nothing on the host
/// changed (both backends, both families, counters, nft handles, `::6`),
/// no receipt, direct.xml untouched.
#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn random_invalid_configurations_exit_2_and_change_nothing() {
    require_kernel!();
    check(
        "invalid configurations",
        (INVALID_CASES, INVALID_SHRINK_ITERS),
        invalid(),
        |c: Invalid| {
            let inv = c.invocation();
            let host = Host::new("pi", &inv, c.backend, c.base.foreign);
            let mut extra: Vec<String> = Vec::new();
            if let Some(initial) = c.base.direct {
                if let Some(text) = initial {
                    std::fs::write(host.direct_file(), text).expect("write direct.xml");
                }
                extra.extend([
                    "--store-firewalld".into(),
                    "--firewalld-direct-file".into(),
                    host.direct_file(),
                ]);
            }
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let args = host.install_args(&extra);
            let direct_before = std::fs::read(host.direct_file()).ok();
            let before: Snapshot = host.snapshot();
            let out = host.run(&args);
            let line = host.describe(&args);
            let mut problems = Vec::new();
            if out.status.code() != Some(2) {
                problems.push(failed("expected exit 2", &out));
            } else {
                let needles = c.bad.needles();
                let err = stderr(&out);
                if !needles.is_empty() && !needles.iter().any(|n| err.contains(n.as_str())) {
                    problems.push(failed(
                        &format!("the error names none of {needles:?}"),
                        &out,
                    ));
                }
            }
            if let Err(e) = host.snapshot().diff(&before, "the host changed") {
                problems.push(e);
            }
            if std::path::Path::new(&host.receipt()).exists() {
                problems.push("a receipt was written".into());
            }
            if std::fs::read(host.direct_file()).ok() != direct_before {
                problems.push("direct.xml changed".into());
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(TestCaseError::fail(format!(
                    "{line}\n- {}",
                    problems.join("\n- ")
                )))
            }
        },
    );
}
