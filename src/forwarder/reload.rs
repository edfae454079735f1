//! SIGHUP: every file is read again — the configuration (`--config`, the
//! environment and flags as at start), `--forwarder-config`, the `--policy`
//! files (Mesh, MeshPassthrough, ProxyTemplate, MeshProxyPatch), the
//! Dataplane files and resolv.conf — into a complete new settings generation
//! built off the data path (a blocking thread), which then replaces the one
//! in force in one atomic swap. Open connections keep the settings they were
//! accepted with; listeners and their sockets stay, so nothing is refused
//! meanwhile. A bad file keeps the generation in force and says why; either
//! way the outcome is counted in `/stats`. The access log is reopened (for
//! log rotation). What needs sockets or privileges the running forwarder no
//! longer has — ports, addresses, user, workers, virtual networks — is kept
//! with a warning.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::bail;

use super::accesslog::AccessLog;
use super::options;
use super::proxy::Shared;
use super::settings::Settings;
use crate::cli::forwarder::ForwarderArgs;
use crate::ui;

/// Reloads with the arguments the forwarder was started with.
pub struct Reloader {
    args: ForwarderArgs,
}

/// A new generation and what goes with it.
struct Built {
    settings: Settings,
    warnings: Vec<String>,
    /// `None`: no access log; `Some(Err)`: it could not be reopened.
    access_log: Option<anyhow::Result<AccessLog>>,
}

impl Reloader {
    pub fn new(args: ForwarderArgs) -> Self {
        Reloader { args }
    }

    /// Reloads; never fails the forwarder.
    pub async fn reload(self: Arc<Self>, sh: &Arc<Shared>) {
        let current = sh.settings.load_full();
        let me = Arc::clone(&self);
        let from = Arc::clone(&current);
        let built = tokio::task::spawn_blocking(move || me.build(&from))
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the reload thread failed: {e}")));
        match built {
            Ok(b) => {
                b.warnings.iter().for_each(ui::warn);
                let generation = b.settings.generation;
                let summary = b
                    .settings
                    .opts
                    .mesh
                    .summary()
                    .unwrap_or_else(|| "no Dataplane files".to_string());
                sh.settings.store(Arc::new(b.settings));
                match b.access_log {
                    None => sh.access_log.store(None),
                    Some(Ok(l)) => sh.access_log.store(Some(Arc::new(l))),
                    Some(Err(e)) => ui::warn(format!(
                        "the access log was not reopened, it goes on to the old file: {}",
                        crate::render_error(&e)
                    )),
                }
                sh.stats.reloads.fetch_add(1, Relaxed);
                ui::info(format!(
                    "reloaded: settings generation {generation}; {summary}"
                ));
            }
            Err(e) => {
                sh.stats.reload_failures.fetch_add(1, Relaxed);
                ui::warn(format!(
                    "reload failed, the settings in force (generation {}) are kept: {}",
                    current.generation,
                    crate::render_error(&e)
                ));
            }
        }
    }

    /// Reads every file again and builds the next generation after `current`.
    fn build(&self, current: &Settings) -> anyhow::Result<Built> {
        let a = &self.args;
        let stdin = |p: &Path| p == Path::new("-");
        if a.tp
            .config
            .iter()
            .chain(&a.tp.config_file)
            .any(|c| c == "-")
            || a.fwd.dataplane.iter().any(|p| stdin(p))
            || a.fwd.local_dataplane.as_deref().is_some_and(stdin)
        {
            bail!("a file was read from standard input at start ('-'), which cannot be read again");
        }
        let resolved = crate::config::resolve_process(&a.tp, None)?;
        let mut opts = options::resolve(a, resolved.config, resolved.warnings)?;
        let mut warnings = std::mem::take(&mut opts.warnings);
        warnings.extend(opts.keep_fixed(&current.opts));
        let settings = Settings::build(opts, Some(current), &mut warnings)?;
        let access_log = settings.opts.access_log.as_deref().map(AccessLog::open);
        Ok(Built {
            settings,
            warnings,
            access_log,
        })
    }
}
