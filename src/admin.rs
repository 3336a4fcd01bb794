//! `iblueprint users …`: user administration straight on the data file, for first-run
//! setup and for the machine's operator. The server must be stopped (the store refuses a
//! second writer with a message that says so).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;

use crate::cli::{CliError, KeySpecArgs, UsersCommand};
use crate::domain::{Actor, KeyName, KeySpec, RateLimit, Scopes, Timestamp, Username, time::parse_duration};
use crate::service::{Service, ServiceError, ServiceSettings};
use crate::store::Store;

pub fn run(command: UsersCommand) -> Result<(), CliError> {
    let now_ms = crate::clock::now_millis();
    let now = Timestamp::from_millis(now_ms);
    match command {
        UsersCommand::Add { name, admin, password_stdin, data } => {
            // A new data file is created only once the password is known to be acceptable,
            // so a refused `add` leaves nothing behind; an existing file is opened first so a
            // running server is reported before anyone types a password.
            let creating = !data.data.exists();
            let (service, password) = if creating {
                Username::parse(&name).map_err(|e| CliError::usage(format!("username: {e}")))?;
                let password = read_password(password_stdin)?;
                crate::password::validate(&password).map_err(|e| CliError::usage(format!("password: {e}")))?;
                (open(Store::open(&data.data))?, password)
            } else {
                let service = open(Store::open(&data.data))?;
                (service, read_password(password_stdin)?)
            };
            let user = service.add_user(&name, &password, admin, Actor::Cli, now).map_err(service_error)?;
            if creating {
                eprintln!("created a new data file at {}", data.data.display());
            }
            let role = if user.is_admin { "admin" } else { "member" };
            println!("added {role} {} ({})", user.username, user.id);
        }
        UsersCommand::List { data } => {
            let service = open(Store::open_existing(&data.data))?;
            let users = service.users().map_err(service_error)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{:<24} {:<7} {:<9} {:<21} ID", "USERNAME", "ROLE", "STATUS", "CREATED").context("stdout")?;
            for user in users {
                let role = if user.is_admin { "admin" } else { "member" };
                let status = if user.is_disabled() { "disabled" } else { "active" };
                writeln!(
                    out,
                    "{:<24} {role:<7} {status:<9} {:<21} {}",
                    user.username.as_str(),
                    user.created_at.to_string(),
                    user.id
                )
                .context("stdout")?;
            }
        }
        UsersCommand::Passwd { name, password_stdin, data } => {
            let service = open(Store::open_existing(&data.data))?;
            // Look the user up first so a typo fails before anyone types a password.
            service.user_by_name(&name).map_err(|e| user_error(e, &name))?;
            let password = read_password(password_stdin)?;
            let user = service.set_password(&name, &password, Actor::Cli, now).map_err(|e| user_error(e, &name))?;
            println!("password changed for {}", user.username);
        }
        UsersCommand::Disable { name, data } => {
            let service = open(Store::open_existing(&data.data))?;
            let user = service.set_disabled(&name, true, Actor::Cli, now).map_err(|e| user_error(e, &name))?;
            println!("disabled {}: their keys and sessions stop working now", user.username);
        }
        UsersCommand::Enable { name, data } => {
            let service = open(Store::open_existing(&data.data))?;
            let user = service.set_disabled(&name, false, Actor::Cli, now).map_err(|e| user_error(e, &name))?;
            println!("enabled {}", user.username);
        }
        UsersCommand::IssueKey {
            name,
            key_name,
            spec: KeySpecArgs { scopes, per_hour, per_day, expires_in },
            data,
        } => {
            let spec = KeySpec {
                name: KeyName::parse(&key_name).map_err(|e| CliError::usage(format!("--name: the key name {e}")))?,
                expires_at: expires_in
                    .as_deref()
                    .map(|d| parse_duration(d).map(|s| Timestamp::at_least_seconds_after(now_ms, s)))
                    .transpose()
                    .map_err(|e| CliError::usage(format!("--expires-in: {e}")))?,
                rate_limit: RateLimit::new(per_hour, per_day)
                    .map_err(|(field, e)| CliError::usage(format!("--{}: {e}", field.replace('_', "-"))))?,
                scopes: Scopes::parse(&scopes).map_err(|e| CliError::usage(format!("--scope: {e}")))?,
            };
            let service = open(Store::open_existing(&data.data))?;
            let user = service.user_by_name(&name).map_err(|e| user_error(e, &name))?;
            let created = service.create_key(&user.id, spec, None, Actor::Cli, now).map_err(service_error)?;
            eprintln!(
                "created key {} ({}) for {}; the secret below is shown only this once",
                created.key.id, created.key.name, user.username
            );
            if user.is_disabled() {
                // Allowed (the operator may be preparing the account), but not silently.
                eprintln!(
                    "note: {0} is disabled, so this key is refused (403 user_disabled) until `iblueprint users enable {0}`",
                    user.username
                );
            }
            println!("{}", created.token.expose_secret());
        }
    }
    Ok(())
}

fn open(store: Result<Store, crate::store::StoreError>) -> Result<Service, CliError> {
    let store = store.map_err(|e| CliError::Runtime(e.into()))?;
    Ok(Service::new(store, ServiceSettings::default()))
}

fn user_error(err: ServiceError, name: &str) -> CliError {
    match err {
        ServiceError::NotFound => {
            CliError::Runtime(anyhow::anyhow!("no user named {name}; `iblueprint users list` shows them"))
        }
        other => service_error(other),
    }
}

fn service_error(err: ServiceError) -> CliError {
    match err {
        ServiceError::Invalid { .. } => CliError::usage(err),
        other => CliError::Runtime(other.into()),
    }
}

/// The new password: one line of stdin with `--password-stdin`, else asked twice at the
/// terminal without echo.
fn read_password(from_stdin: bool) -> Result<String, CliError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage("no terminal to ask for a password; pipe it in and pass --password-stdin"));
    }
    let first = rpassword::prompt_password("New password: ").context("reading the password")?;
    let second = rpassword::prompt_password("Repeat it: ").context("reading the password")?;
    if first != second {
        return Err(CliError::usage("the two passwords differ; nothing was changed"));
    }
    Ok(first)
}
