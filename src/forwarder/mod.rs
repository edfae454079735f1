//! The bundled data plane: listeners on the redirect ports that relay each
//! connection to its original destination, with limits, timeouts, statistics
//! and a DNS proxy.

use crate::Exit;
use crate::cli::forwarder::ForwarderArgs;

pub fn run(_args: &ForwarderArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("the forwarder is not available in this build")
}
