//! The token parser (`domain::token`): every entry point (server, `keys` client,
//! forward-auth) runs it on attacker-chosen strings before anything else.
//!
//! Besides "never panics", it checks what a parse promises: an accepted token is exactly
//! the input, has the documented shape, and parses again to itself; `redact` leaves no
//! token-shaped run behind; a parsed key hash survives its hex round trip.
#![no_main]

use iblueprint::domain::base62;
use iblueprint::domain::token::{self, KeyHash, PREFIX, TOKEN_LEN, Token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = Token::parse(input) {
        assert_eq!(parsed.expose_secret(), input);
        assert_eq!(input.len(), TOKEN_LEN);
        assert!(input.starts_with(PREFIX));
        assert!(base62::is_base62(&input.as_bytes()[PREFIX.len()..]));
        assert!(input.starts_with(parsed.start()) && input.ends_with(parsed.end()));
        assert_eq!(Token::parse(parsed.expose_secret()).as_ref(), Ok(&parsed));
        assert_eq!(parsed.hash(), Token::parse(input).map(|t| t.hash()).unwrap_or(KeyHash([0; 32])));
    }

    let redacted = token::redact(input);
    for (at, _) in redacted.match_indices(PREFIX) {
        let next = redacted.as_bytes().get(at + PREFIX.len()).copied();
        assert!(next.is_none_or(|b| base62::digit_value(b).is_none()), "redact left a token-shaped run");
    }

    if let Some(hash) = KeyHash::from_hex(input) {
        assert_eq!(KeyHash::from_hex(&hash.to_hex()), Some(hash));
    }
});
