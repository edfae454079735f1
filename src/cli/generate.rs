//! Flags of `tproxyctl generate dataplane`: the Dataplane's own fields and
//! template inputs, plus the shared transparent-proxy configuration.

use clap::Args;

use super::TpFlags;

#[derive(Debug, Args)]
pub struct GenerateDataplaneArgs {
    #[command(flatten)]
    pub tp: TpFlags,
}
