//! The `updater` binary: parse arguments, run, map the outcome to an exit code. All the work
//! lives in the library.

use std::process::ExitCode;

use clap::Parser;
use updater::{cli::Cli, ExitStatus};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; clap picks the right stream and code.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                ExitStatus::Usage.code()
            } else {
                0
            });
        }
    };
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(ExitStatus::Usage.code());
        }
    };
    match updater::run(&config) {
        Ok(status) => ExitCode::from(status.code()),
        Err(e) => {
            log::error!("{e:#}");
            // The logger may be filtered (-q keeps errors) but make sure the reason is seen
            // even if logging was never set up.
            if !log::log_enabled!(log::Level::Error) {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(ExitStatus::Failure.code())
        }
    }
}
