//! `install transparent-proxy --from-receipt [FILE]`: reads the receipt
//! (default: the `--receipt` file) and resolves the configuration it recorded
//! through [`crate::config::recorded`]. A receipt that is missing, unreadable
//! or not a tproxyctl receipt is invalid input (exit 2), reported before
//! anything on the host changes. The install itself runs as usual.

use std::path::{Path, PathBuf};

use crate::cli::InstallArgs;
use crate::config::{self, Config};
use crate::error::UsageError;
use crate::host::receipt;
use crate::ui;

/// What the install needs from the receipt.
pub struct FromReceipt {
    pub config: Config,
    /// The direct.xml the recorded install wrote to, if it used firewalld.
    pub firewalld_direct_file: Option<PathBuf>,
}

/// Loads the receipt named by `--from-receipt` (or the `--receipt` file) and
/// resolves its configuration; prints the warnings.
pub fn load(file: Option<&Path>, args: &InstallArgs) -> anyhow::Result<FromReceipt> {
    let path = match file {
        Some(p) => p.to_path_buf(),
        None => receipt::path_or_default(args.receipt.receipt.as_deref()),
    };
    let shown = path.display().to_string();
    let rec = match receipt::load(&path) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(UsageError::new(format!(
                "invalid value '{shown}' for --from-receipt: there is no install receipt there \
                 (it is written by a successful install; see --receipt)"
            ))
            .into());
        }
        Err(e) => {
            return Err(UsageError::new(format!(
                "invalid value '{shown}' for --from-receipt: {}",
                crate::render_error(&e)
            ))
            .into());
        }
    };
    let resolved = config::recorded::resolve(
        &rec.config,
        rec.uid,
        &shown,
        &args.apply,
        &config::process_env()?,
    )?;
    for w in &resolved.warnings {
        ui::warn(w);
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(rec.installed_at);
    ui::info(format!(
        "re-applying the configuration recorded in {shown} by the install of {} (kuma-dp UID {})",
        humantime::format_rfc3339_seconds(at),
        rec.uid
    ));
    Ok(FromReceipt {
        config: resolved.config,
        firewalld_direct_file: rec.firewalld.map(|f| f.path),
    })
}
