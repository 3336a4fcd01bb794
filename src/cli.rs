//! The command line: argument definitions and the exit-code contract.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error. Every error is one
//! line on stderr that says what to do next.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_DATA: &str = "./data/iblueprint.redb";

#[derive(Parser, Debug)]
#[command(name = "iblueprint", version, about = "Self-hosted API keys: issue, verify, rate-limit, revoke.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API (defaults: 127.0.0.1:8080, data in ./data/iblueprint.redb).
    Serve(ServeArgs),
    /// Write a consistent copy of the data file, even while the server runs.
    Backup(BackupArgs),
    /// Restore a backup (redb or jsonl) into a new data file, or merge it into one.
    Import(ImportArgs),
    /// Check a data file or a redb backup offline (an fsck); exit 1 if anything is wrong.
    ///
    /// Runs redb's integrity check (after crash recovery, if the file was not shut down
    /// cleanly), decodes every record, and checks the indexes against the records. It works
    /// on a private copy and never writes to the file; a file a running server holds is
    /// refused (stop the server, or check a backup).
    Check(CheckArgs),
    /// Manage users directly on the data file (the server must be stopped).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage your own API keys through a running server (reads IBLUEPRINT_API_KEY and
    /// IBLUEPRINT_URL).
    Keys(KeysArgs),
    /// Print the version.
    Version,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A TOML config file (see config/iblueprint.toml).
    #[arg(long, env = "IBLUEPRINT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 or [::]:443.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The redb data file.
    #[arg(long, value_name = "FILE")]
    pub data: Option<String>,
    /// `pretty` for people, `json` for log collectors.
    #[arg(long, value_name = "pretty|json")]
    pub log_format: Option<String>,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write the backup. An existing file is refused unless --force.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub data: DataArg,
    /// `redb`: a data file you can restore by copying it into place; `jsonl`: a portable,
    /// human-readable export.
    #[arg(long, value_enum, default_value_t = BackupFormat::Redb)]
    pub format: BackupFormat,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupFormat {
    Redb,
    Jsonl,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A backup made by `iblueprint backup` (redb or jsonl; detected from the content).
    pub file: PathBuf,
    #[command(flatten)]
    pub data: DataArg,
    /// Add the users and keys the data file lacks, instead of requiring a new data file.
    #[arg(long)]
    pub merge: bool,
    /// Check everything and report what would happen; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub data: DataArg,
}

/// What a new key may carry, for `users issue-key` and `keys create` alike.
#[derive(Args, Debug, Clone)]
pub struct KeySpecArgs {
    /// A scope to grant (repeatable), e.g. keys:read, keys:write, billing:read. Through
    /// `keys create`, at most those of the key you act as.
    #[arg(long = "scope", value_name = "S")]
    pub scopes: Vec<String>,
    /// Requests per hour. With only one of the two limits, the other period is unlimited;
    /// with neither, `users issue-key` makes an unlimited key and `keys create` gets the
    /// server's default limits.
    #[arg(long, value_name = "N")]
    pub per_hour: Option<u64>,
    /// Requests per day (see --per-hour).
    #[arg(long, value_name = "N")]
    pub per_day: Option<u64>,
    /// Expire the key after this long: 30s, 15m, 12h, 7d.
    #[arg(long, value_name = "DUR")]
    pub expires_in: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DataArg {
    /// The redb data file.
    #[arg(long, env = "IBLUEPRINT_DATA", value_name = "FILE", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Add a user (creates the data file if it does not exist yet).
    Add {
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// List users.
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Set a user's password.
    Passwd {
        name: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// Disable a user: all of their keys stop working at once.
    Disable {
        name: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Enable a disabled user again.
    Enable {
        name: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Create an API key for a user and print its secret (once) on standard output.
    IssueKey {
        name: String,
        /// The key's name.
        #[arg(long = "name", value_name = "KEYNAME")]
        key_name: String,
        #[command(flatten)]
        spec: KeySpecArgs,
        #[command(flatten)]
        data: DataArg,
    },
}

/// `iblueprint keys …`: the HTTP client for a running server (see `src/client.rs`).
#[derive(Args, Debug)]
#[command(after_help = "Environment:\n  IBLUEPRINT_API_KEY  the key to act as (required; never printed)\n  \
IBLUEPRINT_URL      the server, default http://127.0.0.1:8080 (proxy variables are not used)")]
pub struct KeysArgs {
    /// Print the server's JSON instead of a table (create and rotate: the whole response,
    /// secret included).
    #[arg(long, global = true)]
    pub json: bool,
    /// Trust the CA certificate(s) in this PEM file for https, besides the system's.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Show the key in IBLUEPRINT_API_KEY and its user.
    Whoami,
    /// List your keys, newest first (needs keys:read).
    List,
    /// Create a key and print its secret (once) on standard output (needs keys:write).
    Create {
        /// The key's name (1 to 100 characters).
        name: String,
        #[command(flatten)]
        spec: KeySpecArgs,
    },
    /// Show one key (needs keys:read).
    Show {
        /// The key's id, `key_…`.
        id: String,
    },
    /// Revoke a key, at once and for good (needs keys:write).
    Revoke {
        /// The key's id, `key_…`.
        id: String,
    },
    /// Replace a key with a new one of the same name, scopes, limits and expiry, and print
    /// the new secret (once) on standard output (needs keys:write).
    Rotate {
        /// The key's id, `key_…`.
        id: String,
        /// Keep the old key working this long (at most 7d): 30s, 15m, 12h, 7d. Default: revoke it now.
        #[arg(long, value_name = "DUR")]
        grace: Option<String>,
    },
}

/// A failed command, carrying its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or configuration: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Something failed while doing the work: exit 1.
    #[error("{0:#}")]
    Runtime(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }

    pub fn usage(message: impl std::fmt::Display) -> Self {
        CliError::Usage(message.to_string())
    }
}
