//! `tproxyctl completion <shell>`: print the completion script on stdout.

use std::io::Write;

use crate::Exit;
use crate::cli::CompletionArgs;
use crate::cli::generated::completion;

pub fn run(args: &CompletionArgs) -> anyhow::Result<Exit> {
    let mut out = std::io::stdout().lock();
    out.write_all(&completion(args.shell))?;
    out.flush()?;
    Ok(Exit::Success)
}
