//! The `tproxyctl` binary: parse the command line, hand it to the library and
//! turn the outcome into an exit code. This is the only place errors are printed.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = tproxyctl::cli::parse_args();
    match tproxyctl::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            if tproxyctl::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("Error: {}", tproxyctl::render_error(&err));
            tproxyctl::exit_code_for(&err).into()
        }
    }
}
