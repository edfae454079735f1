//! Times what a forwarder start (and a SIGHUP reload) does with the mesh's
//! files, without binding anything: resolve the options (policies, Dataplane
//! files: read, parse, validate, build the mesh), then the settings
//! generation built from them (routing table, clusters, `.mesh` names,
//! resolv.conf) — the same calls as `reload.rs`. Takes the forwarder's own flags; prints
//! the median of `--repeat` runs (wall and CPU time of the process, all
//! threads) in milliseconds, and with `--phases` each phase alone. Used by
//! `scripts/bench-mesh-scale.sh`; run it under `perf record` or
//! `valgrind --tool=callgrind` to see where start-up time goes.
//!
//! ```text
//! cargo run --release --example mesh_rebuild -- --dataplane mesh.yaml --repeat 5 --phases
//! ```

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tproxyctl::cli::forwarder::ForwarderArgs;
use tproxyctl::forwarder::settings::Settings;
use tproxyctl::forwarder::{dns, mesh, options, route};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    fwd: ForwarderArgs,
    /// Runs; the median is printed.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Also time the phases (read and parse, build, tables) one by one.
    #[arg(long)]
    phases: bool,
    /// Then time this many routing decisions (mesh destinations, in turn)
    /// and a tenth as many `.mesh` answers, and print the mean of each.
    #[arg(long, default_value_t = 0)]
    lookups: usize,
    /// The service whose `<service>.mesh` name is asked [default: the first].
    #[arg(long)]
    lookup_service: Option<String>,
}

/// CPU time of the whole process (every thread) so far.
fn cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().map_or(f64::NAN, ms)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let files = &args.fwd.fwd.dataplane;
    let (mut total, mut total_cpu) = (vec![], vec![]);
    let (mut parse, mut build, mut tables) = (vec![], vec![], vec![]);
    for _ in 0..args.repeat.max(1) {
        // The whole rebuild, as a reload does it.
        let (t, c) = (Instant::now(), cpu());
        let resolved = tproxyctl::config::resolve_process(&args.fwd.tp, None)?;
        let mut opts = options::resolve(&args.fwd, resolved.config, resolved.warnings)?;
        let mut warnings = std::mem::take(&mut opts.warnings);
        let settings = Settings::build(opts, None, &mut warnings)?;
        total.push(t.elapsed());
        total_cpu.push(cpu() - c);
        let opts = settings.opts.clone();
        drop(settings);
        if !args.phases {
            continue;
        }

        // Its phases.
        let t = Instant::now();
        let mut all = Vec::new();
        for f in files {
            all.extend(mesh::read_files(f, "--dataplane")?);
        }
        parse.push(t.elapsed());
        let t = Instant::now();
        let m = mesh::build(all, None, &|_| false, &mut Vec::new())?;
        build.push(t.elapsed());
        let t = Instant::now();
        let mut o = opts.clone();
        o.mesh = m;
        let built = (route::build(&o), dns::MeshNames::new(&o.mesh));
        tables.push(t.elapsed());
        drop(built);
    }
    let n = files.len();
    println!(
        "rebuild_ms={:.1} cpu_ms={:.1} parse_ms={:.1} build_ms={:.1} tables_ms={:.1} files={n} repeat={}",
        median(total),
        median(total_cpu),
        median(parse),
        median(build),
        median(tables),
        args.repeat.max(1)
    );
    if args.lookups > 0 {
        lookups(&args)?;
    }
    Ok(())
}

/// Mean cost of one routing decision and one `.mesh` answer: what every
/// connection and every mesh query pays, which must not grow with the mesh.
fn lookups(args: &Args) -> anyhow::Result<()> {
    let resolved = tproxyctl::config::resolve_process(&args.fwd.tp, None)?;
    let mut opts = options::resolve(&args.fwd, resolved.config, resolved.warnings)?;
    let mut warnings = std::mem::take(&mut opts.warnings);
    let settings = Settings::build(opts, None, &mut warnings)?;
    let (opts, router, names) = (&settings.opts, &settings.router, &settings.names);
    // Up to 1024 mesh destinations spread over the whole table.
    let all: Vec<SocketAddr> = opts
        .mesh
        .services
        .iter()
        .flat_map(|s| s.endpoints.iter().copied())
        .collect();
    anyhow::ensure!(!all.is_empty(), "the mesh has no reachable endpoint");
    let step = all.len().div_ceil(1024);
    let dsts: Vec<SocketAddr> = all.iter().step_by(step).copied().collect();
    let n = args.lookups;
    let t = Instant::now();
    for i in 0..n {
        black_box(router.route(black_box(dsts[i % dsts.len()]), false));
    }
    let route_ns = t.elapsed().as_nanos() as f64 / n as f64;

    let service = match &args.lookup_service {
        Some(s) => s.clone(),
        None => opts.mesh.services[0].name.clone(),
    };
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_ascii(format!("{service}.mesh."))?,
        RecordType::A,
    ));
    let m = (n / 10).max(1);
    let t = Instant::now();
    for _ in 0..m {
        // 512 bytes: a glibc client's UDP answer, no EDNS.
        black_box(names.answer(black_box(&q), 512));
    }
    let answer_ns = t.elapsed().as_nanos() as f64 / m as f64;
    println!(
        "route_ns={route_ns:.1} answer_ns={answer_ns:.1} destinations={} service={service}",
        dsts.len()
    );
    Ok(())
}
