//! The one-time hand-over of a new key's secret from the POST that made it to the GET that
//! shows it (Post/Redirect/Get, so reloading the page never creates another key).
//!
//! The token waits here, in memory only, bound to the session that made it, for at most
//! [`TTL`]; showing it takes it out. Nothing here is written to disk or logged, and a
//! restart forgets it (the key then simply has to be rotated to get a secret again).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::session::Secret;
use crate::domain::{KeyId, Timestamp, Token};

/// How long a new secret waits to be shown.
pub const TTL: Duration = Duration::from_secs(300);
/// Bound on waiting secrets; past it the oldest-expiring are dropped.
const MAX_WAITING: usize = 10_000;

/// Why the secret was made, for the page that shows it.
pub enum Origin {
    Created,
    /// Rotated from `previous`, which stops working at `cutoff` (now, or after the grace).
    Rotated {
        previous: KeyId,
        cutoff: Timestamp,
    },
}

pub struct Pending {
    pub token: Token,
    pub origin: Origin,
    until: Instant,
}

#[derive(Default)]
pub struct Reveals(Mutex<HashMap<([u8; 32], String), Pending>>);

impl Reveals {
    pub fn put(&self, session: &Secret, key_id: &KeyId, token: Token, origin: Origin) {
        let now = Instant::now();
        let mut waiting = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        waiting.retain(|_, pending| pending.until > now);
        if waiting.len() >= MAX_WAITING {
            let mut by_age: Vec<_> = waiting.iter().map(|(k, p)| (p.until, k.clone())).collect();
            by_age.sort_unstable_by_key(|(until, _)| *until);
            for (_, key) in by_age.into_iter().take(waiting.len() + 1 - MAX_WAITING) {
                waiting.remove(&key);
            }
        }
        waiting.insert((session.hash(), key_id.to_string()), Pending { token, origin, until: now + TTL });
    }

    /// The waiting secret of `key_id` for this session, taken out: a second call gets `None`.
    pub fn take(&self, session: &Secret, key_id: &str) -> Option<Pending> {
        let mut waiting = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let pending = waiting.remove(&(session.hash(), key_id.to_owned()))?;
        (pending.until > Instant::now()).then_some(pending)
    }
}
