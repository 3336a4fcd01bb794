//! Load-test seeding: a fresh data file with one user and N keys, for `benches/http/run.sh`.
//!
//! ```text
//! cargo run --release --example seed -- --data FILE --keys N \
//!     [--per-hour H] [--per-day D] --secrets-out FILE --secrets K
//! ```
//!
//! Creates the user `bench` (its password is random, hashed once with argon2id, and thrown
//! away: nobody signs in as it), then N keys with no scopes and the given rate limits, in
//! write transactions of [`BATCH`] keys through the same `Store::write` /
//! `WriteTxn::insert_key` path the service uses. K of the secrets, spread evenly across the
//! whole key set, are written one per line to `--secrets-out` (mode 0600): that file holds
//! live secrets and belongs in the benchmark's temporary directory only.
//!
//! A benchmark tool, never used by the server. It refuses to touch an existing data file.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use getrandom::SysRng;
use iblueprint::domain::{Key, KeyId, KeyName, KeySpec, RateLimit, Scopes, Token, User, UserId, Username};
use iblueprint::store::Store;

/// Keys per write transaction.
const BATCH: usize = 20_000;

const USAGE: &str = "usage: seed --data FILE --keys N [--per-hour H] [--per-day D] --secrets-out FILE --secrets K";

struct Args {
    data: PathBuf,
    keys: usize,
    per_hour: Option<u64>,
    per_day: Option<u64>,
    secrets_out: PathBuf,
    secrets: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut data = None;
    let mut keys = None;
    let mut per_hour = None;
    let mut per_day = None;
    let mut secrets_out = None;
    let mut secrets = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(flag) = args.next() {
        let flag = flag.to_str().with_context(|| format!("unexpected argument {flag:?}\n{USAGE}"))?.to_owned();
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| -> anyhow::Result<u64> {
            value
                .to_str()
                .and_then(|v| v.parse::<u64>().ok())
                .with_context(|| format!("{what} must be a whole number, not {value:?}"))
        };
        match flag.as_str() {
            "--data" => data = Some(PathBuf::from(&value)),
            "--keys" => keys = Some(usize::try_from(number("--keys")?)?),
            "--per-hour" => per_hour = Some(number("--per-hour")?),
            "--per-day" => per_day = Some(number("--per-day")?),
            "--secrets-out" => secrets_out = Some(PathBuf::from(&value)),
            "--secrets" => secrets = Some(usize::try_from(number("--secrets")?)?),
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    let args = Args {
        data: data.with_context(|| format!("--data is required\n{USAGE}"))?,
        keys: keys.with_context(|| format!("--keys is required\n{USAGE}"))?,
        per_hour,
        per_day,
        secrets_out: secrets_out.with_context(|| format!("--secrets-out is required\n{USAGE}"))?,
        secrets: secrets.with_context(|| format!("--secrets is required\n{USAGE}"))?,
    };
    if args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    if args.secrets == 0 || args.secrets > args.keys {
        bail!("--secrets must be from 1 to --keys ({})", args.keys);
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if args.data.exists() {
        bail!("{} already exists; seed only writes a fresh data file", args.data.display());
    }
    let rate_limit = RateLimit::new(args.per_hour, args.per_day)
        .map_err(|(field, err)| anyhow::anyhow!("--{}: {err}", field.replace('_', "-")))?;
    let started = Instant::now();

    let store = Store::open(&args.data).with_context(|| format!("creating {}", args.data.display()))?;
    let now = iblueprint::clock::now();
    // Nobody signs in as this user; the password exists only to be hashed like a real one.
    let password = Token::generate(&mut SysRng).context("the OS random number generator failed")?;
    let password_hash = iblueprint::password::hash(password.expose_secret()).context("hashing the password")?;
    let user = User {
        id: UserId::generate(&mut SysRng)?,
        username: Username::parse("bench")?,
        password_hash,
        is_admin: false,
        created_at: now,
        disabled_at: None,
    };
    store.write(|tx| tx.put_user(&user))?;

    let secrets_file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.secrets_out)
        .with_context(|| format!("creating {} (it must not exist yet)", args.secrets_out.display()))?;
    let mut secrets_out = BufWriter::new(secrets_file);
    // Keep every `stride`-th secret, so the kept keys are spread across the whole set.
    let stride = args.keys / args.secrets;
    let name = KeyName::parse("bench")?;

    let mut written = 0usize;
    let mut kept = 0usize;
    let inserting = Instant::now();
    while written < args.keys {
        let batch = BATCH.min(args.keys - written);
        let mut keys = Vec::with_capacity(batch);
        for i in written..written + batch {
            let token = Token::generate(&mut SysRng)?;
            let spec = KeySpec { name: name.clone(), expires_at: None, rate_limit, scopes: Scopes::default() };
            keys.push(Key::new(KeyId::generate(&mut SysRng)?, user.id.clone(), &token, spec, now));
            if i.is_multiple_of(stride) && kept < args.secrets {
                writeln!(secrets_out, "{}", token.expose_secret())?;
                kept += 1;
            }
        }
        store.write(|tx| {
            for key in &mut keys {
                tx.insert_key(key)?;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        written += batch;
        if written.is_multiple_of(200_000) || written == args.keys {
            eprintln!("seed: {written} keys ({:.1} s)", inserting.elapsed().as_secs_f64());
        }
    }
    secrets_out.flush()?;
    secrets_out.get_ref().sync_all()?;
    drop(store);

    let size = std::fs::metadata(&args.data)?.len();
    println!(
        "seed: {} keys in {:.2} s ({:.0} keys/s, {} transactions of up to {BATCH}); {kept} secrets → {}; data file {} bytes ({:.1} MiB)",
        args.keys,
        started.elapsed().as_secs_f64(),
        args.keys as f64 / inserting.elapsed().as_secs_f64(),
        args.keys.div_ceil(BATCH),
        args.secrets_out.display(),
        size,
        size as f64 / (1024.0 * 1024.0),
    );
    Ok(())
}
