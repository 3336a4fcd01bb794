//! What the templates show: the page chrome (top bar, sidebar, messages), and keys, users,
//! times and limits formatted for people. Everything here is plain data; askama escapes it.

use crate::domain::{Key, KeyStatus, RateLimit, Timestamp, User};

/// The signed-in user as the top bar shows them.
pub struct Viewer {
    pub username: String,
    pub initials: String,
    pub is_admin: bool,
}

/// What every page's layout needs.
pub struct Chrome {
    pub viewer: Option<Viewer>,
    /// The form token for this page's forms (the session's, or the pre-session cookie's).
    pub csrf: String,
    /// Which sidebar entry is current: `keys`, `profile`, `users`, `audit`, or empty.
    pub section: &'static str,
    pub notice: Option<&'static str>,
    pub flash_error: Option<String>,
}

impl Chrome {
    pub fn anonymous(csrf: String) -> Self {
        Chrome { viewer: None, csrf, section: "", notice: None, flash_error: None }
    }

    pub fn signed_in(user: &User, csrf: String, section: &'static str) -> Self {
        Chrome {
            viewer: Some(Viewer {
                username: user.username.to_string(),
                initials: initials(user.username.as_str()),
                is_admin: user.is_admin,
            }),
            csrf,
            section,
            notice: None,
            flash_error: None,
        }
    }

    pub fn with_notice(mut self, notice: Option<&'static str>) -> Self {
        self.notice = notice;
        self
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.flash_error = Some(error.into());
        self
    }
}

/// Up to two letters for the avatar: `alice` → `A`, `alice.smith@corp` → `AS`.
pub fn initials(username: &str) -> String {
    let local = username.split('@').next().unwrap_or(username);
    let letters: String =
        local.split(['.', '_', '-']).filter_map(|part| part.chars().next()).take(2).collect::<String>().to_uppercase();
    if letters.is_empty() { username.chars().take(1).collect::<String>().to_uppercase() } else { letters }
}

/// The fixed messages a redirect may ask a page to show (`?notice=…`). Only these exist,
/// so a link cannot put arbitrary text on the page.
pub fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "welcome" => "Your administrator account is ready, and you are signed in.",
        "signed_out" => "You have signed out.",
        "key_revoked" => "The key was revoked. Requests that use it now get 403.",
        "password_changed" => "Your password was changed. Your other sessions have been signed out.",
        "user_added" => "The user was added. Give them their temporary password; they can change it under Profile.",
        "user_disabled" => "The user was disabled. Their keys and sessions stopped working.",
        "user_enabled" => "The user was enabled again.",
        _ => return None,
    })
}

/// A time for people (`2026-11-26 08:14 UTC`, also as its `date` and `clock` halves for
/// narrow table cells) and for machines (RFC 3339, in `datetime` and `title`).
pub struct When {
    pub iso: String,
    pub text: String,
    pub date: String,
    pub clock: String,
}

impl When {
    pub fn new(at: Timestamp) -> Self {
        let iso = at.to_string();
        // `2026-11-26T08:14:00Z`: date, space, hours and minutes.
        let (date, clock) = match (iso.get(..10), iso.get(11..16)) {
            (Some(date), Some(time)) if iso.len() == 20 => (date.to_owned(), format!("{time} UTC")),
            _ => (iso.clone(), String::new()),
        };
        let text = if clock.is_empty() { date.clone() } else { format!("{date} {clock}") };
        When { iso, text, date, clock }
    }
}

/// `1234567` → `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `100/h · 1,000/d`, `100/h`, `1,000/d` or `Unlimited`.
pub fn limits(limit: RateLimit) -> String {
    let parts: Vec<String> = [(limit.per_hour(), "h"), (limit.per_day(), "d")]
        .into_iter()
        .filter_map(|(n, unit)| n.map(|n| format!("{}/{unit}", grouped(u64::from(n)))))
        .collect();
    if parts.is_empty() { "Unlimited".to_owned() } else { parts.join(" · ") }
}

/// One key as the table, the confirmation page and the secret page show it.
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub start: String,
    pub end: String,
    pub created: When,
    pub last_used: Option<When>,
    /// `1 request`, `1,234 requests`.
    pub requests: String,
    pub expires: Option<When>,
    pub limits: String,
    /// `active`, `rotating`, `revoked` or `expired`: the badge's class and `data-status`.
    pub status: &'static str,
    pub status_text: &'static str,
    /// For a key rotated with a grace period: when it stops working.
    pub revokes_at: Option<When>,
    pub scopes: Vec<String>,
    pub can_rotate: bool,
    pub can_revoke: bool,
}

impl KeyRow {
    pub fn new(key: &Key, now: Timestamp) -> Self {
        let status = key.status(now);
        KeyRow {
            id: key.id.to_string(),
            name: key.name.to_string(),
            start: key.start.clone(),
            end: key.end.clone(),
            created: When::new(key.created_at),
            last_used: key.last_used_at.map(When::new),
            requests: match key.request_count {
                1 => "1 request".to_owned(),
                n => format!("{} requests", grouped(n)),
            },
            expires: key.expires_at.map(When::new),
            limits: limits(key.rate_limit),
            status: status.label(),
            status_text: match status {
                KeyStatus::Active => "Active",
                KeyStatus::RevokesAt(_) => "Rotating",
                KeyStatus::Revoked => "Revoked",
                KeyStatus::Expired => "Expired",
            },
            revokes_at: match status {
                KeyStatus::RevokesAt(at) => Some(When::new(at)),
                _ => None,
            },
            scopes: key.scopes.iter().map(|s| s.to_string()).collect(),
            can_rotate: status == KeyStatus::Active,
            can_revoke: status != KeyStatus::Revoked,
        }
    }

    pub fn has_menu(&self) -> bool {
        self.can_rotate || self.can_revoke
    }
}

/// Error messages by form field, plus the fields' names for `aria-invalid`.
#[derive(Default)]
pub struct FieldErrors(Vec<(&'static str, String)>);

impl FieldErrors {
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, m)| m.as_str())
    }

    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An `<option>` of a `<select>`.
pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

pub fn choices(options: &[(&'static str, &'static str)], selected: &str) -> Vec<Choice> {
    options.iter().map(|&(value, label)| Choice { value, label, selected: value == selected }).collect()
}

/// Makes a sentence of a service message: "must be …" gets the field's `label` in front
/// ("The password must be …."); a message that names its subject is capitalised.
pub fn sentence(label: &str, message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    if ["must ", "is ", "cannot "].iter().any(|verb| message.starts_with(verb)) {
        return format!("{label} {message}.");
    }
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => format!("{label} is not valid."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_take_up_to_two_parts_of_the_local_name() {
        assert_eq!(initials("alice"), "A");
        assert_eq!(initials("alice.smith@corp.example"), "AS");
        assert_eq!(initials("ops-bot_2"), "OB");
        assert_eq!(initials("9lives"), "9");
    }

    #[test]
    fn numbers_and_limits_read_like_prose() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(limits(RateLimit::UNLIMITED), "Unlimited");
        assert_eq!(limits(RateLimit::new(Some(100), Some(1000)).unwrap()), "100/h · 1,000/d");
        assert_eq!(limits(RateLimit::new(None, Some(5)).unwrap()), "5/d");
    }

    #[test]
    fn times_show_minutes_in_utc() {
        let when = When::new(Timestamp::from_unix(1_795_681_440));
        assert_eq!(when.iso, "2026-11-26T08:24:00Z");
        assert_eq!(when.text, "2026-11-26 08:24 UTC");
        assert_eq!((when.date.as_str(), when.clock.as_str()), ("2026-11-26", "08:24 UTC"));
    }

    #[test]
    fn service_messages_become_sentences() {
        assert_eq!(
            sentence("The password", "must be at least 8 characters"),
            "The password must be at least 8 characters."
        );
        assert_eq!(sentence("The username", "a username must be short"), "A username must be short.");
        assert_eq!(sentence("The username", "a user named bob already exists"), "A user named bob already exists.");
    }

    #[test]
    fn only_known_notices_show() {
        assert!(notice(Some("key_revoked")).is_some());
        assert!(notice(Some("<script>")).is_none());
        assert!(notice(None).is_none());
    }
}
