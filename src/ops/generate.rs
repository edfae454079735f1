//! `tproxyctl generate dataplane`: render the Universal Dataplane resource
//! whose transparentProxying section matches the install configuration.

use crate::Exit;
use crate::cli::generate::GenerateDataplaneArgs;

pub fn run(_args: &GenerateDataplaneArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("generate dataplane is not available in this build")
}
