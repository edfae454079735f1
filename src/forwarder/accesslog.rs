//! The access log: one line per finished connection — time, source, original
//! destination, cluster, bytes each way, duration and how it ended — to a
//! file or stdout. The file is opened after privileges are dropped (and
//! again on SIGHUP), as the user the forwarder runs as: a path it could not
//! write to as that user — a symlink planted towards a root-owned file, say —
//! is refused by the kernel, not written with root's rights.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use super::relay::Moved;

/// One finished connection.
pub struct Record<'a> {
    pub peer: SocketAddr,
    pub dst: SocketAddr,
    /// The cluster's name (`outbound:passthrough:ipv4`, a mesh service, …).
    pub cluster: &'a str,
    pub moved: Moved,
    pub duration: Duration,
    /// closed, reset, idle_timeout, drained, client_gone, connect_timeout,
    /// connect_failed, overflow, loop, blocked
    pub end: &'a str,
}

impl<'a> Record<'a> {
    pub fn refused(
        peer: SocketAddr,
        dst: SocketAddr,
        cluster: &'a str,
        started: Instant,
        why: &'a str,
    ) -> Self {
        Record {
            peer,
            dst,
            cluster,
            moved: Moved::default(),
            duration: started.elapsed(),
            end: why,
        }
    }

    /// `2025-01-02T03:04:05.678Z src=… dst=… cluster=… sent=N received=N duration_ms=N.NNN end=…`
    pub fn line(&self, now: SystemTime) -> String {
        let mut s = String::with_capacity(160);
        let _ = writeln!(
            s,
            "{} src={} dst={} cluster={} sent={} received={} duration_ms={:.3} end={}",
            humantime::format_rfc3339_millis(now),
            self.peer,
            self.dst,
            self.cluster,
            self.moved.sent,
            self.moved.received,
            self.duration.as_secs_f64() * 1000.0,
            self.end
        );
        s
    }
}

/// Where lines go.
pub struct AccessLog {
    out: Mutex<Box<dyn Write + Send>>,
}

impl AccessLog {
    /// `-` is stdout; anything else a file opened for appending (created
    /// with mode 0640), as the process's current user.
    pub fn open(spec: &str) -> anyhow::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let out: Box<dyn Write + Send> = if spec == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o640)
                    .open(spec)
                    .with_context(|| {
                        format!(
                            "opening access log {spec} as UID {}",
                            nix::unistd::geteuid()
                        )
                    })?,
            )
        };
        Ok(AccessLog {
            out: Mutex::new(out),
        })
    }

    /// Writes one line; a failing log never disturbs the data path.
    pub fn write(&self, rec: &Record<'_>) {
        let line = rec.line(SystemTime::now());
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_every_field() {
        let r = Record {
            peer: "10.0.0.2:40000".parse().unwrap(),
            dst: "[fd00::9]:443".parse().unwrap(),
            cluster: "outbound:passthrough:ipv6",
            moved: Moved {
                sent: 12,
                received: 34,
            },
            duration: Duration::from_micros(1500),
            end: "closed",
        };
        let l = r.line(SystemTime::UNIX_EPOCH);
        assert_eq!(
            l,
            "1970-01-01T00:00:00.000Z src=10.0.0.2:40000 dst=[fd00::9]:443 cluster=outbound:passthrough:ipv6 sent=12 received=34 duration_ms=1.500 end=closed\n"
        );
    }
}
