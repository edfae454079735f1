//! Times what a forwarder start (and a SIGHUP reload) does with the mesh's
//! files, without binding anything: resolve the options (policies, Dataplane
//! files: read, parse, validate, build the mesh), then the routing table and
//! clusters and the `.mesh` names. Takes the forwarder's own flags; prints
//! the median of `--repeat` runs (wall and CPU time of the process, all
//! threads) in milliseconds, and with `--phases` each phase alone. Used by
//! `scripts/bench-mesh-scale.sh`; run it under `perf record` or
//! `valgrind --tool=callgrind` to see where start-up time goes.
//!
//! ```text
//! cargo run --release --example mesh_rebuild -- --dataplane mesh.yaml --repeat 5 --phases
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use tproxyctl::cli::forwarder::ForwarderArgs;
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
        let opts = options::resolve(&args.fwd, resolved.config, resolved.warnings)?;
        let (router, clusters) = route::build(&opts);
        let names = dns::MeshNames::new(&opts.mesh);
        total.push(t.elapsed());
        total_cpu.push(cpu() - c);
        drop((router, clusters, names));
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
    Ok(())
}
