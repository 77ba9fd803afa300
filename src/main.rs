//! The `volley` binary: parse, resolve settings, read input, run, exit (or print
//! a completion script or the man page instead).

use std::process::ExitCode;

use clap::Parser;
use volley::cli::Cli;
use volley::config::Settings;
use volley::exit::ExitStatus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(document) = cli.document() {
        return ExitCode::from(volley::cli::generate::print(document).code());
    }
    let status = match Settings::resolve(cli) {
        Err(e) => fail(&e),
        Ok(settings) => match volley::input::load(&settings) {
            Err(e) => fail(&e),
            Ok(input) => match volley::run(settings, input) {
                Ok(summary) => ExitStatus::from_summary(&summary),
                Err(e) => fail(&e),
            },
        },
    };
    ExitCode::from(status.code())
}

fn fail(error: &dyn std::fmt::Display) -> ExitStatus {
    eprintln!("volley: {error}");
    ExitStatus::Usage
}
