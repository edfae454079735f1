//! No command panics on any input: every subcommand, with non-UTF-8
//! environment variables, arguments and config bytes, and with random
//! argument vectors built from its own flags (read from its `--help`) and
//! values from a pool of valid, borderline and hostile ones, random
//! environment, random stdin and random config files. Each run must end
//! with exit 0, 1 or 2: never 101 (a panic), never a signal. A run that is
//! still going after a bound is a failure too, except the forwarder, which
//! serves until stopped, and the validator, which retries for ten seconds
//! when nothing answers (both are stopped after a moment). Runs happen in a throwaway namespace with a
//! working directory, receipt and direct.xml of their own; path values are
//! relative (no `/`), so nothing outside that directory is written.
//!
//! `PROPTEST_CASES=N` raises the number of random runs (default 96).

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use crate::common::*;
use crate::require_kernel;

const CASES: u32 = 96;
/// How long a command may run; the forwarder is stopped after `SERVING`.
const LIMIT: Duration = Duration::from_secs(30);
const SERVING: Duration = Duration::from_millis(700);

/// The subcommands, as argument prefixes.
const SUBCOMMANDS: &[&[&str]] = &[
    &["install", "transparent-proxy"],
    &["install", "transparent-proxy-validator"],
    &["uninstall", "transparent-proxy"],
    &["verify"],
    &["status"],
    &["generate", "dataplane"],
    &["forwarder"],
    &["completion"],
    &[],
];

/// Files every run finds in its working directory.
const VALID_CONFIG: &str = "kumaDPUser: daemon\nredirect:\n  inbound:\n    port: 15006\n    excludePorts: [22]\n  dns:\n    enabled: true\n    port: 15053\nipFamilyMode: ipv4\n";
const DATAPLANE: &str = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.5\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n";

/// The only `--iptables-executables` values drawn: the real tools, missing
/// ones, and programs without side effects. Random text there could name
/// any program on the PATH.
const EXECUTABLES: &[&str] = &[
    "iptables:/usr/sbin/iptables-nft,iptables-save:/usr/sbin/iptables-nft-save,iptables-restore:/usr/sbin/iptables-nft-restore",
    "iptables:/usr/sbin/iptables-legacy,iptables-save:/usr/sbin/iptables-legacy-save,iptables-restore:/usr/sbin/iptables-legacy-restore",
    "iptables-restore:/bin/false",
    "iptables-restore:/bin/true,iptables-save:/bin/true",
    "iptables:missing-tool",
    "nonsense",
    "",
];

/// The long and short flags a subcommand's `--help` lists.
fn flags_of(sub: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = sub.to_vec();
    args.push("--help");
    let out = Command::new(bin()).args(&args).output().expect("help runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut flags: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| {
            (w.starts_with("--") && w.len() > 2 && !w[2..].starts_with('-'))
                || (w.len() == 2 && w.starts_with('-') && w != &"--")
        })
        .map(str::to_string)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

/// One argument: a flag with or without a value, or a bare word.
#[derive(Clone, Debug)]
enum Arg {
    Flag(String),
    FlagValue(String, Vec<u8>),
    FlagEquals(String, Vec<u8>),
    Word(Vec<u8>),
}

/// One random run.
#[derive(Clone)]
struct Run {
    sub: usize,
    args: Vec<Arg>,
    env: Vec<(Vec<u8>, Vec<u8>)>,
    stdin: Vec<u8>,
    /// Content of `bytes.yaml` and of the non-UTF-8 named file.
    file: Vec<u8>,
}

fn words(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    if v.is_ascii() && !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() && c != '\'') {
        s.into_owned()
    } else {
        // bash's $'…' quoting shows every byte
        let mut out = String::from("$'");
        for b in v {
            if b.is_ascii_alphanumeric() || b" -_.:,=+@%/".contains(b) {
                out.push(*b as char);
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        out.push('\'');
        out
    }
}

impl Run {
    fn argv(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = SUBCOMMANDS[self.sub].iter().map(OsString::from).collect();
        for a in &self.args {
            match a {
                Arg::Flag(f) => v.push(f.into()),
                Arg::FlagValue(f, val) => {
                    v.push(f.into());
                    v.push(OsString::from_vec(val.clone()));
                }
                Arg::FlagEquals(f, val) => {
                    let mut b = f.as_bytes().to_vec();
                    b.push(b'=');
                    b.extend(val);
                    v.push(OsString::from_vec(b));
                }
                Arg::Word(w) => v.push(OsString::from_vec(w.clone())),
            }
        }
        v
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.file[..self.file.len().min(80)];
        writeln!(
            f,
            "# in a directory holding valid.yaml, dp.yaml, dir/, and bytes.yaml and $'\\xff.yaml' ({} bytes: {}{})",
            self.file.len(),
            words(shown),
            if shown.len() < self.file.len() {
                "…"
            } else {
                ""
            }
        )?;
        let mut line: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{}={}", words(k), words(v)))
            .collect();
        line.push("tproxyctl".into());
        line.extend(self.argv().iter().map(|a| words(a.as_bytes())));
        if !self.stdin.is_empty() {
            line.push(format!("<<< {}", words(&self.stdin)));
        }
        write!(f, "{}", line.join(" "))
    }
}

/// Values: valid, borderline, hostile; relative paths only.
fn value(flag: &str) -> BoxedStrategy<Vec<u8>> {
    if flag.contains("executables") {
        return prop::sample::select(EXECUTABLES)
            .prop_map(|s| s.as_bytes().to_vec())
            .boxed();
    }
    let fixed = prop::sample::select(vec![
        "",
        "0",
        "1",
        "-1",
        "65535",
        "65536",
        "4294967295",
        "4294967296",
        "18446744073709551616",
        "1e400",
        "true",
        "false",
        "yes",
        "ipv4",
        "dualstack",
        "IPv6",
        "tcp:22:1000",
        "udp:*:0-4294967294",
        "10.0.0.0/8",
        "fd00::/8",
        "::1/64",
        "0.0.0.0/0",
        "docker0:172.17.0.0/16",
        "br+:fd01::/64",
        "2s",
        "500ms",
        "1h",
        "-1s",
        "2000000000",
        "a,b,,c",
        "22,,80",
        "-",
        "--",
        "=",
        ":",
        "kuma.io/service=web",
        "daemon",
        "nobody",
        "root",
        "text",
        "json",
        "yaml",
        "bash",
        "zsh",
        "fish",
        "127.0.0.1:0",
        "[::1]:0",
        "valid.yaml",
        "dp.yaml",
        "bytes.yaml",
        "missing.yaml",
        "dir",
        "receipt.json",
        "direct.xml",
        "{{name}}",
        "{{#x}}",
        "web",
        " 15006",
    ])
    .prop_map(|s| s.as_bytes().to_vec());
    prop_oneof![
        6 => fixed,
        2 => "[ -.0-~]{0,24}".prop_map(String::into_bytes),
        2 => prop::collection::vec(1u8..=255, 0..24)
            .prop_map(|v| v.into_iter().filter(|b| *b != b'/').collect()),
        1 => Just(b"\xff.yaml".to_vec()),
        1 => (1usize..2000).prop_map(|n| {
            (1..=n).map(|p| (p % 65535 + 1).to_string()).collect::<Vec<_>>().join(",").into_bytes()
        }),
        1 => (1usize..20000).prop_map(|n| vec![b'x'; n]),
    ]
    .boxed()
}

fn arg(flags: &[String]) -> BoxedStrategy<Arg> {
    let flag = prop::sample::select(flags.to_vec());
    prop_oneof![
        2 => flag.clone().prop_map(Arg::Flag),
        4 => flag.clone().prop_flat_map(|f| value(&f).prop_map(move |v| Arg::FlagValue(f.clone(), v))),
        1 => flag.prop_flat_map(|f| value(&f).prop_map(move |v| Arg::FlagEquals(f.clone(), v))),
        1 => value("").prop_map(Arg::Word),
    ]
    .boxed()
}

fn env_entry() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT",
            "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_ENABLED",
            "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_RESOLV_CONFIG_PATH",
            "KUMA_TRANSPARENT_PROXY_REDIRECT_OUTBOUND_EXCLUDE_PORTS_FOR_UIDS",
            "KUMA_TRANSPARENT_PROXY_REDIRECT_VNET_NETWORKS",
            "KUMA_TRANSPARENT_PROXY_IP_FAMILY_MODE",
            "KUMA_TRANSPARENT_PROXY_LOG_LEVEL",
            "KUMA_TRANSPARENT_PROXY_KUMA_DP_USER",
            "KUMA_TRANSPARENT_PROXY_RETRY_SLEEP_BETWEEN_RETRIES",
            "KUMA_TRANSPARENT_PROXY_UNKNOWN_KEY",
            "TPROXYCTL_RECEIPT",
            "TPROXYCTL_FIREWALLD_DIRECT_FILE",
            "FOO",
            "LANG",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        // any name the kernel takes: no NUL, no '='
        prop::collection::vec(1u8..=255, 1..12)
            .prop_map(|v| v.into_iter().filter(|b| *b != b'=').collect::<Vec<u8>>())
            .prop_filter("a name", |v| !v.is_empty()),
    ];
    (key, value(""))
}

fn run_strategy(flags: Vec<Vec<String>>) -> impl Strategy<Value = Run> {
    (0..SUBCOMMANDS.len()).prop_flat_map(move |sub| {
        let f = if flags[sub].is_empty() {
            vec!["--help".to_string()]
        } else {
            flags[sub].clone()
        };
        (
            Just(sub),
            prop::collection::vec(arg(&f), 0..6),
            prop::collection::vec(env_entry(), 0..3),
            prop_oneof![
                3 => Just(Vec::new()),
                1 => prop::collection::vec(any::<u8>(), 0..64),
                1 => Just(VALID_CONFIG.as_bytes().to_vec()),
            ],
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..256),
                // a valid config with one value replaced by random text
                ("[ -~]{0,12}", 0usize..8).prop_map(|(v, i)| {
                    let mut lines: Vec<String> = VALID_CONFIG.lines().map(str::to_string).collect();
                    let i = i % lines.len();
                    if let Some((k, _)) = lines[i].clone().split_once(':') {
                        lines[i] = format!("{k}: {v}");
                    }
                    lines.join("\n").into_bytes()
                }),
            ],
        )
            .prop_map(|(sub, args, env, stdin, file)| Run {
                sub,
                args,
                env,
                stdin,
                file,
            })
    })
}

/// A namespace whose rules redirect root's connections to 127.0.0.6 to
/// port 15006, so the validator (`--validation-server-port 15006`) passes
/// at once instead of retrying for ten seconds. Keep the directory (it
/// holds the receipt) as long as the namespace.
fn validating_namespace(tag: &str) -> (Netns, tempfile::TempDir) {
    let ns = Netns::new(tag);
    let dir = tempfile::tempdir().expect("temp dir");
    ns.tproxyctl_ok(&[
        "install",
        "transparent-proxy",
        "--kuma-dp-user",
        "root",
        "--ip-family-mode",
        "ipv4",
        "--receipt",
        &receipt_path(&dir),
    ]);
    (ns, dir)
}

/// Runs one command in `ns` from a fresh working directory; `Err` unless it
/// ended with 0, 1 or 2 in time (or is the forwarder or validator, still
/// serving or retrying).
fn run_one(ns: &Netns, run: &Run) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("valid.yaml"), VALID_CONFIG).unwrap();
    std::fs::write(d.join("dp.yaml"), DATAPLANE).unwrap();
    std::fs::write(d.join("bytes.yaml"), &run.file).unwrap();
    std::fs::write(d.join(OsString::from_vec(b"\xff.yaml".to_vec())), &run.file).unwrap();
    std::fs::create_dir(d.join("dir")).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, bin()])
        .args(run.argv())
        .current_dir(d)
        .env("TPROXYCTL_RECEIPT", d.join("receipt.json"))
        .env("TPROXYCTL_FIREWALLD_DIRECT_FILE", d.join("direct.xml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &run.env {
        let k = OsString::from_vec(k.clone());
        let v = OsString::from_vec(v.clone());
        // paths from the environment stay in the directory too
        if k == "TPROXYCTL_RECEIPT" || k == "TPROXYCTL_FIREWALLD_DIRECT_FILE" {
            cmd.env(&k, d.join(&v));
        } else {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().expect("tproxyctl starts");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = stdin.write_all(&run.stdin);
    }
    // drain output on threads so a chatty command cannot block on a pipe
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out_pipe, &mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err_pipe, &mut b);
        b
    });
    // the forwarder serves until stopped; the validator retries a closed
    // port for ten seconds: past their start-up (where input is read) both
    // are left alone
    let forwarder = SUBCOMMANDS[run.sub] == ["forwarder"]
        || SUBCOMMANDS[run.sub] == ["install", "transparent-proxy-validator"];
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        let limit = if forwarder { SERVING } else { LIMIT };
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let err = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    let _ = out_t.join();
    match status {
        None if forwarder => Ok(()),
        None => Err(format!("still running after {LIMIT:?}; stderr:\n{err}")),
        Some(s) => match s.code() {
            Some(0..=2) => Ok(()),
            Some(c) => Err(format!("exit {c}; stderr:\n{err}")),
            None => Err(format!("killed by a signal ({s:?}); stderr:\n{err}")),
        },
    }
}

/// The inputs the issue names, on every subcommand: a non-UTF-8 variable
/// of our own and a foreign one (and a non-UTF-8 name), non-UTF-8
/// arguments, and config files with non-UTF-8 names and bytes.
#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn non_utf8_environment_arguments_and_config_bytes_never_panic() {
    require_kernel!();
    let (ns, _receipt) = validating_namespace("np8");
    let ff = || b"\xff".to_vec();
    // (subcommand, arguments that make it do its work, flags given \xff values)
    let table: &[(usize, &[&str], &[&str])] = &[
        (
            0,
            &["--dry-run"],
            &[
                "--config",
                "--redirect-inbound-port",
                "--kuma-dp-user",
                "--vnet",
                "--receipt",
            ],
        ),
        (
            1,
            &[
                "--validation-server-port",
                "15006",
                "--ip-family-mode",
                "ipv4",
            ],
            &["--transparent-proxy-config", "--ip-family-mode"],
        ),
        (
            2,
            &["--dry-run"],
            &["--config", "--exclude-inbound-ips", "--receipt"],
        ),
        (3, &[], &["--receipt", "--output"]),
        (4, &[], &["--receipt", "--dataplane"]),
        (
            5,
            &["--name", "web", "--address", "10.0.0.5", "--port", "8080"],
            &["--config", "--template", "--tag", "--check"],
        ),
        (
            6,
            &["--workers", "1"],
            &["--config", "--policy", "--user", "--access-log"],
        ),
        (7, &["bash"], &[]),
    ];
    let mut failures = Vec::new();
    for (sub, base, flags) in table {
        let base: Vec<Arg> = base
            .iter()
            .map(|w| Arg::Word(w.as_bytes().to_vec()))
            .collect();
        let with = |extra: Vec<Arg>, env: Vec<(Vec<u8>, Vec<u8>)>| Run {
            sub: *sub,
            args: base.iter().cloned().chain(extra).collect(),
            env,
            stdin: Vec::new(),
            file: b"redirect:\n  inbound:\n    port: \xff\n".to_vec(),
        };
        let mut runs = vec![
            with(vec![], vec![(b"FOO".to_vec(), ff())]),
            with(vec![], vec![(ff(), b"1".to_vec())]),
            with(
                vec![],
                vec![(
                    b"KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT".to_vec(),
                    ff(),
                )],
            ),
            with(
                vec![],
                vec![(b"KUMA_TRANSPARENT_PROXY_KUMA_DP_USER".to_vec(), ff())],
            ),
            with(vec![], vec![(b"TPROXYCTL_RECEIPT".to_vec(), ff())]),
            with(vec![Arg::Word(ff())], vec![]),
            with(vec![Arg::Flag("--\u{ff}".into())], vec![]),
        ];
        for flag in *flags {
            runs.push(with(vec![Arg::FlagValue(flag.to_string(), ff())], vec![]));
            runs.push(with(
                vec![Arg::FlagValue(flag.to_string(), b"\xff.yaml".to_vec())],
                vec![],
            ));
            runs.push(with(
                vec![Arg::FlagEquals(flag.to_string(), b"bytes.yaml".to_vec())],
                vec![],
            ));
        }
        for run in runs {
            if let Err(e) = run_one(&ns, &run) {
                failures.push(format!("{run:?}\n  {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} run(s) panicked or died:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Random argument vectors, environment, stdin and config bytes for every
/// subcommand.
#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn random_inputs_never_panic() {
    require_kernel!();
    let (ns, _receipt) = validating_namespace("npr");
    let flags: Vec<Vec<String>> = SUBCOMMANDS.iter().map(|s| flags_of(s)).collect();
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES;
    }
    config.failure_persistence = None;
    let mut runner = TestRunner::new(config);
    let result = runner.run(&run_strategy(flags), |run| {
        run_one(&ns, &run).map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, run)) => {
            panic!("minimal failing run:\n{run:?}\n\n{why}")
        }
        Err(TestError::Abort(why)) => panic!("aborted: {why}"),
    }
}
