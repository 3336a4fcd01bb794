//! `iblueprint import` and the JSON-lines export format.
//!
//! Import reads and checks everything before it writes anything: the format and schema
//! version, every record (decoded and re-validated by the domain types), references
//! (every key's owner, every bucket's key), and uniqueness (user ids, usernames, key ids,
//! key hashes). Only then does it write, in one transaction. On any problem it names the
//! problem and its place (line or table and record) and leaves the data file untouched.
//!
//! # The export format
//! One JSON object per line. The first line is a header:
//! `{"format":"iblueprint-export","format_version":1,"schema_version":1,"exported_at":"…","counts":{…}}`;
//! every other line is a record with a `type` of `user`, `key`, `buckets` or `audit`.
//! Keys carry their blake3 hash in hex, users their argon2id hash: no secret is ever in it.
//!
//! # Merging
//! With `--merge`, users and keys the data file lacks are added (keys get fresh sequence
//! numbers after the file's own, so they list as newest). Records the file already has are
//! kept as the file has them. A conflict refuses the whole import: a user id or username
//! that means another user, a key id with another owner or hash, a key hash under another
//! id, a key whose fixed content differs (what no change after creation touches: its
//! secret's ends, creation and expiry times, scopes, and whose rate-limit buckets it draws
//! from; see `fixed_differences`), a key the backup revokes earlier than the file does
//! (including one the file has not revoked, or is only rotating), or a user the backup shows
//! disabled and the file does not. A key's name, rate limit and usage may differ: the
//! file's are kept.
//! A merge never un-revokes, and never silently drops a revocation or a disabling either.
//! Audit events are not merged.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cli::{CliError, ImportArgs};
use crate::domain::token::redact;
use crate::domain::{Key, KeyId, Timestamp, User, UserId, Username};
use crate::store::snapshot::{Counts, ReadOnlyStore, Record, existing_records, read_foreign};
use crate::store::{SCHEMA_VERSION, Store, StoreError};

pub const EXPORT_FORMAT: &str = "iblueprint-export";
pub const EXPORT_FORMAT_VERSION: u32 = 1;
/// Longest line we read from an export: far above any real record, small enough that a
/// hostile file cannot make us buffer gigabytes.
const MAX_LINE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub format: String,
    pub format_version: u32,
    pub schema_version: u64,
    pub exported_at: Timestamp,
    pub counts: Counts,
}

impl ExportHeader {
    pub fn new(schema_version: u64, now: Timestamp, counts: Counts) -> Self {
        ExportHeader {
            format: EXPORT_FORMAT.to_owned(),
            format_version: EXPORT_FORMAT_VERSION,
            schema_version,
            exported_at: now,
            counts,
        }
    }
}

/// A problem with the file being imported, with its place.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("{0}")]
    File(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{} conflict(s) with the data file; nothing was imported:\n  {}", .0.len(), .0.join("\n  "))]
    Conflicts(Vec<String>),
}

/// Reads a whole export, checking the header, every line and the counts.
pub fn read_jsonl(source: impl Read) -> Result<(ExportHeader, Vec<Record>), ImportError> {
    let mut reader = BufReader::new(source);
    let mut line = String::new();
    let mut number = 0;
    let mut next_line = |line: &mut String, number: &mut usize| -> Result<bool, ImportError> {
        line.clear();
        *number += 1;
        let n = (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_line(line)
            .map_err(|e| ImportError::Line { line: *number, message: format!("unreadable: {e}") })?;
        if n as u64 > MAX_LINE_BYTES {
            return Err(ImportError::Line { line: *number, message: "line longer than 1 MiB".into() });
        }
        Ok(n > 0)
    };
    if !next_line(&mut line, &mut number)? {
        return Err(ImportError::File("the file is empty".into()));
    }
    let header: ExportHeader = serde_json::from_str(&line).map_err(|e| ImportError::Line {
        line: 1,
        message: redact(&format!("not an iblueprint export header: {e}")),
    })?;
    if header.format != EXPORT_FORMAT || header.format_version != EXPORT_FORMAT_VERSION {
        return Err(ImportError::Line {
            line: 1,
            message: redact(&format!(
                "format {} version {} is not one this binary reads ({EXPORT_FORMAT} version {EXPORT_FORMAT_VERSION})",
                header.format, header.format_version
            )),
        });
    }
    if header.schema_version > SCHEMA_VERSION {
        return Err(ImportError::Line {
            line: 1,
            message: format!(
                "exported from schema version {}, newer than this binary knows ({SCHEMA_VERSION}); upgrade iblueprint",
                header.schema_version
            ),
        });
    }
    let mut records = Vec::new();
    let mut counts = Counts::default();
    while next_line(&mut line, &mut number)? {
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line)
            .map_err(|e| ImportError::Line { line: number, message: redact(&e.to_string()) })?;
        counts.add(&record, header.exported_at);
        records.push(record);
    }
    if counts != header.counts {
        return Err(ImportError::File(format!(
            "the export is incomplete or altered (lines missing, added or repeated): the header promises {} but the file holds {}",
            header.counts, counts
        )));
    }
    Ok((header, records))
}

/// What `import` checks before it writes anything, for an export held in memory: the
/// header, every line, the counts and the records' consistency. No file and no store, so
/// the fuzz target (`tests/fuzz`) can feed it arbitrary bytes.
pub fn parse_jsonl(bytes: &[u8]) -> Result<Vec<Record>, ImportError> {
    let (_, records) = read_jsonl(bytes)?;
    validate(&records)?;
    Ok(records)
}

/// Reads a backup of either kind, detected from its first bytes.
pub fn read_backup(path: &Path) -> Result<Vec<Record>, ImportError> {
    let mut file = File::open(path).map_err(|e| ImportError::File(format!("cannot open {}: {e}", path.display())))?;
    let mut start = [0u8; 64];
    let n = file.read(&mut start).map_err(|e| ImportError::File(format!("cannot read {}: {e}", path.display())))?;
    let start = &start[..n];
    if start.starts_with(b"redb") {
        return read_foreign(path).map_err(|err| match err {
            StoreError::NewerSchema { .. } => err.into(),
            other => ImportError::File(format!("the redb backup is damaged or truncated: {other}")),
        });
    }
    if start.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let file = File::open(path).map_err(|e| ImportError::File(format!("cannot open {}: {e}", path.display())))?;
        return read_jsonl(file).map(|(_, records)| records);
    }
    Err(ImportError::File(format!(
        "{} is neither an iblueprint redb backup nor a jsonl export (empty, truncated or another kind of file)",
        path.display()
    )))
}

/// Checks that the records form a consistent database on their own.
pub fn validate(records: &[Record]) -> Result<(), ImportError> {
    let mut problems = Vec::new();
    let mut user_ids = HashSet::new();
    let mut usernames = HashSet::new();
    let mut key_ids = HashSet::new();
    let mut hashes = HashSet::new();
    let mut seqs = HashSet::new();
    let mut audit = HashSet::new();
    for record in records {
        match record {
            Record::User(user) => {
                if !user_ids.insert(&user.id) {
                    problems.push(format!("user id {} appears twice", user.id));
                }
                if !usernames.insert(&user.username) {
                    problems.push(format!("username {} appears twice", user.username));
                }
            }
            Record::Key(key) => {
                if !key_ids.insert(&key.id) {
                    problems.push(format!("key id {} appears twice", key.id));
                }
                if !hashes.insert(key.hash) {
                    problems.push(format!("key {} has the same hash as another key", key.id));
                }
                if key.seq == 0 || key.seq == u64::MAX {
                    problems.push(format!("key {} has an impossible sequence number {}", key.id, key.seq));
                }
                if !seqs.insert((&key.user_id, key.seq)) {
                    problems.push(format!("key {} repeats another key's sequence number", key.id));
                }
            }
            Record::Audit { seq, .. } => {
                if !audit.insert(*seq) {
                    problems.push(format!("audit event {seq} appears twice"));
                }
            }
            Record::Buckets { .. } => {}
        }
    }
    for record in records {
        match record {
            Record::Key(key) if !user_ids.contains(&key.user_id) => {
                problems.push(format!("key {} belongs to user {}, who is not in the backup", key.id, key.user_id));
            }
            Record::Buckets { limit_id, .. } if !key_ids.contains(limit_id) => {
                problems.push(format!("rate-limit state for {limit_id}, a key that is not in the backup"));
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ImportError::File(format!("the backup is inconsistent:\n  {}", problems.join("\n  "))))
    }
}

/// What a merge adds, and what stops it.
pub struct MergePlan {
    pub add: Vec<Record>,
    pub conflicts: Vec<String>,
}

/// Plans merging `incoming` into a data file holding `existing`. Pure; public for the fuzz
/// target, which checks that merging a valid backup into itself adds nothing.
pub fn plan_merge(incoming: Vec<Record>, existing: &[Record]) -> MergePlan {
    let mut users_by_id: HashMap<&UserId, &User> = HashMap::new();
    let mut users_by_name: HashMap<&Username, &User> = HashMap::new();
    let mut keys_by_id: HashMap<&KeyId, &Key> = HashMap::new();
    let mut keys_by_hash: HashMap<[u8; 32], &Key> = HashMap::new();
    for record in existing {
        match record {
            Record::User(u) => {
                users_by_id.insert(&u.id, u);
                users_by_name.insert(&u.username, u);
            }
            Record::Key(k) => {
                keys_by_id.insert(&k.id, k);
                keys_by_hash.insert(k.hash.0, k);
            }
            _ => {}
        }
    }
    let mut add = Vec::new();
    let mut conflicts = Vec::new();
    let mut added_keys = HashSet::new();
    for record in &incoming {
        match record {
            Record::User(user) => match (users_by_id.get(&user.id), users_by_name.get(&user.username)) {
                (None, None) => add.push(record.clone()),
                (Some(have), _) if have.username != user.username => conflicts.push(format!(
                    "user id {} is {} in the backup but {} in the data file",
                    user.id, user.username, have.username
                )),
                (None, Some(have)) => conflicts.push(format!(
                    "username {} is user {} in the backup but user {} in the data file",
                    user.username, user.id, have.id
                )),
                (Some(have), _) if user.is_disabled() && !have.is_disabled() => conflicts.push(format!(
                    "user {} is disabled in the backup but not in the data file; disable them first if that is intended",
                    user.username
                )),
                _ => {}
            },
            Record::Key(key) => match (keys_by_id.get(&key.id), keys_by_hash.get(&key.hash.0)) {
                (None, None) => {
                    added_keys.insert(key.id.clone());
                    add.push(record.clone());
                }
                (None, Some(have)) => conflicts.push(format!(
                    "key {} in the backup has the same secret hash as key {} in the data file",
                    key.id, have.id
                )),
                (Some(have), _) => conflicts.extend(key_conflict(key, have)),
            },
            _ => {}
        }
    }
    // Rate-limit states travel with the keys they belong to.
    for record in incoming {
        if let Record::Buckets { limit_id, .. } = &record
            && added_keys.contains(limit_id)
        {
            add.push(record);
        }
    }
    MergePlan { add, conflicts }
}

/// Why the backup's record of a key the data file also has (same id) refuses the merge, if
/// it does. The two may differ only as one key's record can differ from itself later or
/// earlier in its life; the file's record is kept either way.
fn key_conflict(backup: &Key, file: &Key) -> Option<String> {
    if backup.user_id != file.user_id || backup.hash != file.hash {
        return Some(format!("key id {} has another owner or secret in the data file", backup.id));
    }
    let fields = fixed_differences(backup, file);
    if !fields.is_empty() {
        return Some(format!(
            "key {} differs from the data file's in {}, which never change after a key is created",
            backup.id,
            fields.join(", ")
        ));
    }
    if stops_earlier(backup.revoked_at, file.revoked_at) {
        return Some(format!(
            "key {} stops working earlier in the backup than in the data file; revoke it first if that is intended",
            backup.id
        ));
    }
    None
}

/// The fields, besides owner and hash, that are fixed when a key is created and that the two
/// records of one key disagree on. Nothing changes these after the key is first stored:
/// `start` and `end` are the ends of its secret (they go with the hash); `created_at` is
/// the creation; `expires_at` and `scopes` are part of what was asked for (updates take a
/// name and a rate limit only, and a rotation gives them to the successor, leaving the old
/// key's alone); `limit_id` is its own id or, for a rotation's successor, its
/// predecessor's, set before it is stored.
///
/// Not compared, because they legitimately differ between two copies of one key: `seq`
/// (each file's own order; a merge renumbers the keys it adds), `name` and `rate_limit`
/// (an owner may change them at any time), `last_used_at` and `request_count` (usage,
/// written by the limiter), and `revoked_at`, which only ever moves earlier (revoking cuts
/// a grace period short, and never revives a key), so only a backup that stops the key
/// earlier than the file conflicts ([`stops_earlier`]). Rate-limit levels are not part of
/// the record; the file keeps its own.
fn fixed_differences(backup: &Key, file: &Key) -> Vec<&'static str> {
    [
        ("start", backup.start != file.start),
        ("end", backup.end != file.end),
        ("created_at", backup.created_at != file.created_at),
        ("expires_at", backup.expires_at != file.expires_at),
        ("scopes", backup.scopes != file.scopes),
        ("limit_id", backup.limit_id != file.limit_id),
    ]
    .into_iter()
    .filter_map(|(field, differs)| differs.then_some(field))
    .collect()
}

/// Whether a revocation time in the backup cuts a key off before the data file's does
/// (`None` is never).
fn stops_earlier(backup: Option<Timestamp>, file: Option<Timestamp>) -> bool {
    match (backup, file) {
        (Some(backup), Some(file)) => backup < file,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

pub fn run(args: ImportArgs) -> Result<(), CliError> {
    let now = crate::clock::now();
    let target = &args.data.data;
    let runtime = |e: ImportError| CliError::Runtime(anyhow::anyhow!("{}: {e}", args.file.display()));
    let records = read_backup(&args.file).map_err(runtime)?;
    validate(&records).map_err(runtime)?;

    let exists = target.exists();
    if exists && !args.merge {
        return Err(CliError::usage(format!(
            "the data file {} already exists; pass --merge to add the users and keys it lacks, or --data a new path",
            target.display()
        )));
    }
    let (to_write, verb) = if exists {
        // Plan through a read-only open: even opening redb for writing rewrites bytes in
        // the file, and a dry run or a refused merge must leave it byte-identical. It is
        // refused while a server holds the file, whatever the mode: import needs the server
        // stopped (SPEC §1), and a dry run or a merge that adds nothing must not report
        // success where the real run would be refused.
        let existing = ReadOnlyStore::open_unheld(target)
            .and_then(|store| existing_records(&store.read()?))
            .map_err(|e| CliError::Runtime(e.into()))?;
        let plan = plan_merge(records.clone(), &existing);
        if !plan.conflicts.is_empty() {
            return Err(runtime(ImportError::Conflicts(plan.conflicts)));
        }
        if !args.dry_run && !plan.add.is_empty() {
            // A server may have started since the read-only look (the writable open refuses
            // it too). Plan again under the write lock, so nothing can have changed since.
            let store = Store::open(target).map_err(|e| CliError::Runtime(e.into()))?;
            let existing = existing_records(&store.read().map_err(|e| CliError::Runtime(e.into()))?)
                .map_err(|e| CliError::Runtime(e.into()))?;
            let plan = plan_merge(records, &existing);
            if !plan.conflicts.is_empty() {
                return Err(runtime(ImportError::Conflicts(plan.conflicts)));
            }
            write_merge(&store, &plan.add).map_err(|e| CliError::Runtime(e.into()))?;
        }
        (plan.add, "merged")
    } else {
        if !args.dry_run {
            write_new(target, &records).map_err(|e| CliError::Runtime(e.into()))?;
        }
        (records, "imported")
    };
    let mut counts = Counts::default();
    to_write.iter().for_each(|r| counts.add(r, now));
    let prefix = if args.dry_run { "dry run: would have " } else { "" };
    println!("{prefix}{verb} {counts} into {}", target.display());
    Ok(())
}

/// Restores into a new data file in one transaction; a failure removes the new file.
fn write_new(target: &Path, records: &[Record]) -> Result<(), StoreError> {
    let store = Store::open(target)?;
    let written = store.write(|tx| records.iter().try_for_each(|r| tx.restore(r)));
    if written.is_err() {
        drop(store);
        let _ = std::fs::remove_file(target);
    }
    written
}

fn write_merge(store: &Store, add: &[Record]) -> Result<(), StoreError> {
    store.write(|tx| {
        let mut keys: Vec<&Key> =
            add.iter().filter_map(|r| if let Record::Key(k) = r { Some(k) } else { None }).collect();
        keys.sort_by_key(|k| k.seq);
        for record in add.iter().filter(|r| !matches!(r, Record::Key(_))) {
            tx.restore(record)?;
        }
        for key in keys {
            let mut key = key.clone();
            key.seq = tx.take_key_seq()?;
            tx.restore(&Record::Key(key))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{self, user};
    use crate::domain::{RateLimit, Token};

    fn key(owner: &User) -> Key {
        let mut key = fixtures::key(&owner.id, RateLimit::UNLIMITED);
        key.seq = 1;
        key
    }

    #[test]
    fn a_merge_never_keeps_a_key_working_longer_than_the_backup_says() {
        let alice = user("alice");
        let mut in_file = key(&alice);
        in_file.revoked_at = Some(Timestamp::from_unix(5_000)); // rotating until 5000
        let mut in_backup = in_file.clone();
        in_backup.revoked_at = Some(Timestamp::from_unix(1_000));
        let existing = vec![Record::User(alice.clone()), Record::Key(in_file.clone())];
        let plan = plan_merge(vec![Record::User(alice.clone()), Record::Key(in_backup)], &existing);
        assert_eq!(plan.conflicts.len(), 1, "{:?}", plan.conflicts);
        // The other way round (the file already revokes earlier) is fine: the file wins.
        let mut later = in_file.clone();
        later.revoked_at = Some(Timestamp::from_unix(9_000));
        assert!(plan_merge(vec![Record::Key(later)], &existing).conflicts.is_empty());
    }

    #[test]
    fn a_key_conflicts_on_what_is_fixed_at_creation_and_not_on_what_changes_later() {
        let alice = user("alice");
        let in_file = key(&alice);
        let existing = vec![Record::User(alice.clone()), Record::Key(in_file.clone())];
        let conflicts_with = |field: &str, edit: fn(&mut Key)| {
            let mut in_backup = in_file.clone();
            edit(&mut in_backup);
            let plan = plan_merge(vec![Record::Key(in_backup)], &existing);
            assert_eq!(plan.conflicts.len(), 1, "{field}: {:?}", plan.conflicts);
            assert!(plan.conflicts[0].contains(&format!("in {field},")), "{field}: {:?}", plan.conflicts);
        };
        conflicts_with("start", |k| k.start = "ibp_zzzz".into());
        conflicts_with("end", |k| k.end = "zzzz".into());
        conflicts_with("created_at", |k| k.created_at = Timestamp::from_unix(7));
        conflicts_with("expires_at", |k| k.expires_at = Some(Timestamp::from_unix(9_000)));
        conflicts_with("scopes", |k| k.scopes = crate::domain::Scopes::parse(&["keys:read"]).unwrap());
        conflicts_with("limit_id", |k| k.limit_id = KeyId::parse("key_0000000000000000").unwrap());

        let mut lived = in_file.clone();
        lived.seq = 99;
        lived.name = crate::domain::KeyName::parse("renamed").unwrap();
        lived.rate_limit = RateLimit::new(Some(5), None).unwrap();
        lived.last_used_at = Some(Timestamp::from_unix(100));
        lived.request_count = 42;
        let plan = plan_merge(vec![Record::Key(lived)], &existing);
        assert!(plan.conflicts.is_empty() && plan.add.is_empty(), "{:?}", plan.conflicts);
        // A file that revoked the key after the backup was taken keeps its revocation.
        let mut revoked = in_file.clone();
        revoked.revoked_at = Some(Timestamp::from_unix(50));
        let plan = plan_merge(vec![Record::Key(in_file)], &[Record::User(alice), Record::Key(revoked)]);
        assert!(plan.conflicts.is_empty() && plan.add.is_empty(), "{:?}", plan.conflicts);
    }

    #[test]
    fn a_merge_never_drops_a_disabling() {
        let alice = user("alice");
        let mut disabled = alice.clone();
        disabled.disabled_at = Some(Timestamp::from_unix(10));
        let plan = plan_merge(vec![Record::User(disabled)], &[Record::User(alice)]);
        assert_eq!(plan.conflicts.len(), 1, "{:?}", plan.conflicts);
        assert!(plan.add.is_empty());
    }

    #[test]
    fn header_errors_never_quote_a_token() {
        let token = Token::generate(&mut getrandom::SysRng).unwrap();
        let secret = token.expose_secret();
        let counts = r#"{"users":0,"keys":0,"revoked":0,"buckets":0,"audit":0}"#;
        let wrong_type = format!(r#"{{"format":"iblueprint-export","format_version":"{secret}"}}"#);
        let wrong_format = format!(
            r#"{{"format":"{secret}","format_version":1,"schema_version":1,"exported_at":"2026-11-26T10:00:00Z","counts":{counts}}}"#
        );
        for header in [wrong_type, wrong_format] {
            let err = parse_jsonl(header.as_bytes()).unwrap_err().to_string();
            assert!(err.starts_with("line 1:") && !err.contains(secret), "{err}");
        }
    }

    #[test]
    fn impossible_sequence_numbers_are_refused() {
        let alice = user("alice");
        let mut broken = key(&alice);
        broken.seq = u64::MAX;
        assert!(validate(&[Record::User(alice), Record::Key(broken)]).is_err());
    }
}
