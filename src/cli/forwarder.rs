//! Flags of `tproxyctl forwarder`: the shared transparent-proxy configuration
//! plus the forwarder's own limits, addresses and logging.

use clap::Args;

use super::{ReceiptArg, TpFlags};

#[derive(Debug, Args)]
pub struct ForwarderArgs {
    #[command(flatten)]
    pub tp: TpFlags,
    #[command(flatten)]
    pub receipt: ReceiptArg,
}
