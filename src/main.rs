//! The `updater` binary: parse arguments, run, map the outcome to an exit code. All the work
//! lives in the library; every byte printed goes through `updater::output`.

use std::process::ExitCode;

use clap::Parser;
use updater::output::{self, Stream};
use updater::{cli::Cli, ExitStatus};

fn main() -> ExitCode {
    let code = run();
    ExitCode::from(output::finish(code))
}

fn run() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors: they go to stdout and exit 0.
            let stream = if e.use_stderr() {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            let terminal = match stream {
                Stream::Stdout => std::io::IsTerminal::is_terminal(&std::io::stdout()),
                Stream::Stderr => std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let text = if terminal {
                e.render().ansi().to_string()
            } else {
                e.render().to_string()
            };
            output::write_bytes(stream, text.as_bytes());
            return if e.use_stderr() {
                ExitStatus::Usage.code()
            } else {
                0
            };
        }
    };
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            output::err(&format!("error: {}", output::escape(&format!("{e:#}"))));
            return ExitStatus::Usage.code();
        }
    };
    match updater::run(&config) {
        Ok(status) => status.code(),
        Err(e) => {
            log::error!("{e:#}");
            // The logger may be filtered (-q keeps errors) but make sure the reason is seen
            // even if logging was never set up.
            if !log::log_enabled!(log::Level::Error) {
                output::err(&format!("error: {}", output::escape(&format!("{e:#}"))));
            }
            ExitStatus::Failure.code()
        }
    }
}
