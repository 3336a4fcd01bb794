//! `iblueprint check`: an offline consistency check of the data file (an fsck).
//!
//! The work is in [`crate::store::check`]; this is the command around it: what it prints,
//! and exit 1 with one line per problem when the file is not sound. It never writes to the
//! data file (see the store module for how), so it is safe on a production file or a backup.

use crate::cli::{CheckArgs, CliError};
use crate::store::check::check_file;

pub fn run(args: CheckArgs) -> Result<(), CliError> {
    let path = &args.data.data;
    let report = check_file(path, crate::clock::now()).map_err(|e| CliError::Runtime(e.into()))?;
    if report.recovered {
        println!(
            "{} was not shut down cleanly: redb's crash recovery ran on a private copy (the server does the same at its next start)",
            path.display()
        );
    }
    println!(
        "{}: {} users, {} keys ({} revoked), {} rate-limit states, {} audit events, {} sessions",
        path.display(),
        report.users,
        report.keys,
        report.revoked,
        report.buckets,
        report.audit,
        report.sessions
    );
    if report.problems.is_empty() {
        println!("ok: redb's integrity check passed, every record decodes, and the indexes agree with the records");
        return Ok(());
    }
    for problem in &report.problems {
        eprintln!("problem: {problem}");
    }
    Err(CliError::Runtime(anyhow::anyhow!(
        "{} has {} problem(s), listed above; restore the newest backup that passes `iblueprint check`",
        path.display(),
        report.problems.len()
    )))
}
