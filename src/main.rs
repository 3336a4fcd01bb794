//! The `iblueprint` binary: parse the command line, run, map the outcome to an exit code.
//! Everything else lives in the library; see `src/lib.rs` for the map.

use std::process::ExitCode;

use clap::Parser;
use iblueprint::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => iblueprint::serve::run(args),
        Command::Backup(args) => iblueprint::backup::run(args),
        Command::Import(args) => iblueprint::import::run(args),
        Command::Check(args) => iblueprint::check::run(args),
        Command::Users(command) => iblueprint::admin::run(command),
        Command::Keys(args) => iblueprint::client::run(args),
        Command::Version => {
            println!("iblueprint {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
