//! The record codec (`store::codec`): the bytes of every stored record type, as the store
//! decodes them, and the round trips the store and the export rely on.
//!
//! The first input byte picks one of two modes:
//! - decode: the rest, as raw bytes, fed to `codec::decode` as one of the five stored record
//!   types (users, keys, buckets, sessions, audit events). Decoding must never panic, and a record
//!   that decodes must round-trip: re-encoding gives bytes that decode to the same record
//!   and re-encode identically, and (for the types an export carries) its JSON export line
//!   imports back to the same record.
//! - build: a record assembled (via `arbitrary`) from arbitrary parts through the domain's own
//!   constructors (so it is a record the service could have written); encode→decode must
//!   be the identity, and so must export→import.
#![no_main]

use std::fmt::Debug;

use arbitrary::{Arbitrary, Unstructured};
use iblueprint::domain::ratelimit::{Bucket, Buckets};
use iblueprint::domain::session::Session;
use iblueprint::domain::{
    Action, Actor, AuditEvent, Key, KeyHash, KeyId, KeyName, RateLimit, Scope, Scopes, Timestamp, User, UserId,
    Username, base62,
};
use iblueprint::store::codec;
use iblueprint::store::snapshot::Record;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug)]
enum Kind {
    User,
    Key,
    Buckets,
    Session,
    Audit,
}

#[derive(Arbitrary, Debug)]
enum Raw {
    User(RawUser),
    Key(Box<RawKey>),
    Buckets(Option<(u64, u64)>, Option<(u64, u64)>),
    Session { user_id: [u8; 16], created_at: i64, expires_at: i64 },
    Audit(RawAudit),
}

#[derive(Arbitrary, Debug)]
struct RawUser {
    id: [u8; 16],
    username: String,
    password_hash: String,
    is_admin: bool,
    created_at: i64,
    disabled_at: Option<i64>,
}

#[derive(Arbitrary, Debug)]
struct RawKey {
    id: [u8; 16],
    user_id: [u8; 16],
    seq: u64,
    name: String,
    hash: [u8; 32],
    start: String,
    end: String,
    created_at: i64,
    last_used_at: Option<i64>,
    request_count: u64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    per_hour: Option<u64>,
    per_day: Option<u64>,
    scopes: Vec<String>,
    limit_id: [u8; 16],
}

#[derive(Arbitrary, Debug)]
struct RawAudit {
    at: i64,
    actor: RawActor,
    action: u8,
    user_id: Option<[u8; 16]>,
    key_id: Option<[u8; 16]>,
}

#[derive(Arbitrary, Debug)]
enum RawActor {
    Key([u8; 16], [u8; 16]),
    User([u8; 16]),
    Cli,
    Anonymous,
}

/// The limit id used for a decoded buckets record (the store takes it from the table key).
const LIMIT_ID: &str = "key_0123456789ABCDEF";

fuzz_target!(|data: &[u8]| {
    // Raw bytes for decoding rather than an `arbitrary` Vec<u8>, whose encoding interleaves
    // a continue flag with every byte and so hides the record layout from the mutator.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 6 {
        0 => decode(Kind::User, rest),
        1 => decode(Kind::Key, rest),
        2 => decode(Kind::Buckets, rest),
        3 => decode(Kind::Session, rest),
        4 => decode(Kind::Audit, rest),
        _ => {
            if let Ok(raw) = Raw::arbitrary_take_rest(Unstructured::new(rest)) {
                build(raw);
            }
        }
    }
});

fn decode(kind: Kind, bytes: &[u8]) {
    let record = match kind {
        Kind::User => decoded(bytes).map(Record::User),
        Kind::Key => decoded(bytes).map(Record::Key),
        Kind::Buckets => decoded(bytes).map(|buckets| Record::Buckets { limit_id: limit_id(), buckets }),
        Kind::Audit => decoded(bytes).map(|event| Record::Audit { seq: 1, event }),
        // Sessions are never exported: only the store round trip applies.
        Kind::Session => {
            decoded::<Session>(bytes);
            None
        }
    };
    if let Some(record) = record {
        exports_and_imports(&record);
    }
}

/// Decodes `bytes` as a `T` the way the store does; a record that decodes must survive
/// being written back.
fn decoded<T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) -> Option<T> {
    let record: T = codec::decode(bytes).ok()?;
    stores_and_loads(&record);
    Some(record)
}

fn stores_and_loads<T: Serialize + DeserializeOwned + PartialEq + Debug>(record: &T) {
    let bytes = codec::encode(record);
    let back: T = codec::decode(&bytes).unwrap_or_else(|err| panic!("{record:?} does not decode back: {err}"));
    assert_eq!(&back, record);
    assert_eq!(codec::encode(&back), bytes, "encoding is not deterministic");
}

/// The export writes each record as one JSON line; import must read it back unchanged.
fn exports_and_imports(record: &Record) {
    let line = serde_json::to_string(record).unwrap_or_else(|err| panic!("{record:?} does not export: {err}"));
    let back: Record =
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("export line {line} does not import: {err}"));
    assert_eq!(&back, record);
}

fn build(raw: Raw) {
    match raw {
        Raw::User(raw) => {
            let user = User {
                id: user_id(&raw.id),
                username: Username::parse(&raw.username).unwrap_or_else(|_| username("u")),
                password_hash: raw.password_hash,
                is_admin: raw.is_admin,
                created_at: Timestamp::from_unix(raw.created_at),
                disabled_at: raw.disabled_at.map(Timestamp::from_unix),
            };
            stores_and_loads(&user);
            exports_and_imports(&Record::User(user));
        }
        Raw::Key(raw) => {
            let scopes: Vec<Scope> = raw.scopes.iter().filter_map(|s| Scope::parse(s).ok()).collect();
            let key = Key {
                id: key_id(&raw.id),
                user_id: user_id(&raw.user_id),
                seq: raw.seq,
                name: KeyName::parse(&raw.name).unwrap_or_else(|_| key_name("k")),
                hash: KeyHash(raw.hash),
                start: raw.start,
                end: raw.end,
                created_at: Timestamp::from_unix(raw.created_at),
                last_used_at: raw.last_used_at.map(Timestamp::from_unix),
                request_count: raw.request_count,
                expires_at: raw.expires_at.map(Timestamp::from_unix),
                revoked_at: raw.revoked_at.map(Timestamp::from_unix),
                rate_limit: RateLimit::new(raw.per_hour, raw.per_day).unwrap_or_default(),
                scopes: Scopes::try_from(scopes).unwrap_or_default(),
                limit_id: key_id(&raw.limit_id),
            };
            stores_and_loads(&key);
            exports_and_imports(&Record::Key(key));
        }
        Raw::Buckets(hour, day) => {
            let bucket = |(units, updated_ms)| Bucket { units, updated_ms };
            let buckets = Buckets { hour: hour.map(bucket), day: day.map(bucket) };
            stores_and_loads(&buckets);
            exports_and_imports(&Record::Buckets { limit_id: limit_id(), buckets });
        }
        Raw::Session { user_id: id, created_at, expires_at } => stores_and_loads(&Session {
            user_id: user_id(&id),
            created_at: Timestamp::from_unix(created_at),
            expires_at: Timestamp::from_unix(expires_at),
        }),
        Raw::Audit(raw) => {
            const ACTIONS: [Action; 10] = [
                Action::KeyCreated,
                Action::KeyUpdated,
                Action::KeyRotated,
                Action::KeyRevoked,
                Action::UserCreated,
                Action::UserDisabled,
                Action::UserEnabled,
                Action::PasswordChanged,
                Action::Login,
                Action::LoginFailed,
            ];
            let event = AuditEvent {
                at: Timestamp::from_unix(raw.at),
                actor: match raw.actor {
                    RawActor::Key(user, key) => Actor::Key { user_id: user_id(&user), key_id: key_id(&key) },
                    RawActor::User(user) => Actor::User(user_id(&user)),
                    RawActor::Cli => Actor::Cli,
                    RawActor::Anonymous => Actor::Anonymous,
                },
                action: ACTIONS[usize::from(raw.action) % ACTIONS.len()],
                user_id: raw.user_id.as_ref().map(user_id),
                key_id: raw.key_id.as_ref().map(key_id),
            };
            stores_and_loads(&event);
            exports_and_imports(&Record::Audit { seq: 1, event });
        }
    }
}

/// 16 arbitrary bytes as the 16 base62 characters of a public id.
fn id_chars(raw: &[u8; 16]) -> String {
    raw.iter().map(|&b| char::from(base62::ALPHABET[usize::from(b) % 62])).collect()
}

fn user_id(raw: &[u8; 16]) -> UserId {
    UserId::parse(&format!("usr_{}", id_chars(raw))).expect("a base62 user id parses")
}

fn key_id(raw: &[u8; 16]) -> KeyId {
    KeyId::parse(&format!("key_{}", id_chars(raw))).expect("a base62 key id parses")
}

fn limit_id() -> KeyId {
    KeyId::parse(LIMIT_ID).expect("a fixed key id parses")
}

fn username(name: &str) -> Username {
    Username::parse(name).expect("a fixed username parses")
}

fn key_name(name: &str) -> KeyName {
    KeyName::parse(name).expect("a fixed key name parses")
}
