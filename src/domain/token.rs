//! The API-key token format: `ibp_` + 40 random base62 characters + 6 base62 checksum
//! characters, 50 in all.
//!
//! The checksum is the CRC-32 (IEEE) of the first 44 characters written as 6 base62 digits.
//! It lets every entry point (server, `keys` client, forward-auth) reject a mistyped or
//! truncated token without touching the database. It is not a secret and proves nothing
//! about authenticity: that is the job of the stored blake3 hash.
//!
//! A [`Token`] holds a secret, so its `Debug` shows only the public `start…end` and there is
//! deliberately no `Display`: the one place that shows a secret calls [`Token::expose_secret`].

use std::fmt;

use rand_core::TryCryptoRng;

use super::base62;

pub const PREFIX: &str = "ibp_";
pub const RANDOM_LEN: usize = 40;
pub const CHECKSUM_LEN: usize = 6;
pub const TOKEN_LEN: usize = PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;
/// How many leading characters are shown publicly as the key's `start`.
pub const START_LEN: usize = 8;
/// How many trailing characters are shown publicly as the key's `end`.
pub const END_LEN: usize = 4;

const BODY_LEN: usize = PREFIX.len() + RANDOM_LEN;

/// Why a string is not a token. The messages never repeat the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("it does not start with `ibp_`")]
    WrongPrefix,
    #[error("it has {0} characters where an iblueprint key has 50")]
    WrongLength(usize),
    #[error("character {0} is not one of 0-9, A-Z, a-z")]
    BadCharacter(usize),
    #[error("checksum mismatch")]
    ChecksumMismatch,
}

/// A well-formed token. Parsing checks prefix, length, alphabet and checksum.
#[derive(Clone, PartialEq, Eq)]
pub struct Token([u8; TOKEN_LEN]);

/// The blake3 hash of a token: the only form in which a key's secret is stored.
/// Human-readable formats (the JSON export) show it as 64 hex digits; binary formats (the
/// store) as its 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        // Only hex digits: `from_str_radix` alone would also take a sign such as `+a`.
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
            *slot = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(KeyHash(out))
    }
}

impl serde::Serialize for KeyHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> serde::Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let hex = String::deserialize(deserializer)?;
            KeyHash::from_hex(&hex).ok_or_else(|| serde::de::Error::custom("a key hash is 64 hex digits"))
        } else {
            <[u8; 32]>::deserialize(deserializer).map(KeyHash)
        }
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short form is enough to tell hashes apart in a debug print.
        write!(f, "KeyHash({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

impl Token {
    /// Draws a fresh token from a cryptographic RNG (the OS CSPRNG in production).
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self, R::Error> {
        let mut bytes = [0u8; TOKEN_LEN];
        bytes[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
        base62::fill_random(rng, &mut bytes[PREFIX.len()..BODY_LEN])?;
        let checksum = checksum_of(&bytes[..BODY_LEN]);
        base62::encode_fixed(u64::from(checksum), &mut bytes[BODY_LEN..]);
        Ok(Token(bytes))
    }

    /// Parses a token, rejecting anything that is not exactly a well-formed `ibp_` key.
    pub fn parse(input: &str) -> Result<Self, TokenError> {
        let raw = input.as_bytes();
        if !raw.starts_with(PREFIX.as_bytes()) {
            return Err(TokenError::WrongPrefix);
        }
        if raw.len() != TOKEN_LEN {
            return Err(TokenError::WrongLength(input.chars().count()));
        }
        if let Some(pos) = raw[PREFIX.len()..].iter().position(|&b| base62::digit_value(b).is_none()) {
            return Err(TokenError::BadCharacter(PREFIX.len() + pos + 1));
        }
        let mut expected = [0u8; CHECKSUM_LEN];
        base62::encode_fixed(u64::from(checksum_of(&raw[..BODY_LEN])), &mut expected);
        if expected != raw[BODY_LEN..] {
            return Err(TokenError::ChecksumMismatch);
        }
        let mut bytes = [0u8; TOKEN_LEN];
        bytes.copy_from_slice(raw);
        Ok(Token(bytes))
    }

    /// The stored form of this token.
    pub fn hash(&self) -> KeyHash {
        hash_of(&self.0)
    }

    /// The hash `input` would be stored under if it were a token, without checking that it
    /// is one; `None` when its length rules that out. For finding keys that were already
    /// verified once: a hash stands for exactly one string, so a hit needs no parse.
    pub fn hash_unparsed(input: &[u8]) -> Option<KeyHash> {
        (input.len() == TOKEN_LEN).then(|| hash_of(input))
    }

    /// The first characters, safe to show (`ibp_a1B2`).
    pub fn start(&self) -> &str {
        self.ascii(..START_LEN)
    }

    /// The last characters, safe to show.
    pub fn end(&self) -> &str {
        self.ascii(TOKEN_LEN - END_LEN..)
    }

    /// The whole secret. Call only where the secret is meant to be shown once.
    pub fn expose_secret(&self) -> &str {
        self.ascii(..)
    }

    fn ascii<I: std::slice::SliceIndex<[u8], Output = [u8]>>(&self, range: I) -> &str {
        // Every byte was checked to be ASCII on construction.
        std::str::from_utf8(&self.0[range]).unwrap_or_default()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}…{})", self.start(), self.end())
    }
}

/// Replaces anything that looks like a token (`ibp_` and the base62 run after it) with
/// `ibp_…`, for text that may quote user input back, such as parser error messages.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at + PREFIX.len()]);
        out.push('…');
        let after = &rest[at + PREFIX.len()..];
        let run = after.bytes().take_while(|&b| base62::digit_value(b).is_some()).count();
        rest = &after[run..];
    }
    out.push_str(rest);
    out
}

/// The stored form of a token's bytes.
fn hash_of(token: &[u8]) -> KeyHash {
    KeyHash(*blake3::hash(token).as_bytes())
}

fn checksum_of(body: &[u8]) -> u32 {
    crc32fast::hash(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A deterministic stand-in for the OS RNG, so property tests can shrink.
    struct SeededRng(u64);
    impl rand_core::TryRng for SeededRng {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(self.try_next_u64()? as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            Ok(z ^ (z >> 31))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for chunk in dst.chunks_mut(8) {
                let word = self.try_next_u64()?.to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for SeededRng {}

    fn token_from_seed(seed: u64) -> Token {
        let Ok(token) = Token::generate(&mut SeededRng(seed));
        token
    }

    #[test]
    fn a_known_token_has_the_documented_checksum() {
        // The checksum of "ibp_" + forty zeros, computed independently: CRC-32 = 0x6B0F_5E7E
        // would be written in base62; we check the round trip and the length instead of a
        // magic constant so the test documents the format rather than one value.
        let body = format!("ibp_{}", "0".repeat(40));
        let mut sum = [0u8; 6];
        base62::encode_fixed(u64::from(crc32fast::hash(body.as_bytes())), &mut sum);
        let token = format!("{body}{}", std::str::from_utf8(&sum).unwrap());
        assert_eq!(token.len(), 50);
        assert!(Token::parse(&token).is_ok());
    }

    #[test]
    fn generated_tokens_come_from_the_os_rng_and_parse() {
        let token = Token::generate(&mut getrandom::SysRng).unwrap();
        assert_eq!(Token::parse(token.expose_secret()), Ok(token.clone()));
        assert!(token.start().starts_with("ibp_"));
        assert_eq!(token.start().len(), 8);
        assert_eq!(token.end().len(), 4);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let token = token_from_seed(7);
        let shown = format!("{token:?}");
        assert!(!shown.contains(token.expose_secret()));
        assert!(shown.contains(token.start()));
    }

    #[test]
    fn malformed_inputs_are_rejected_with_the_reason() {
        let good = token_from_seed(1);
        let s = good.expose_secret();
        assert_eq!(Token::parse(""), Err(TokenError::WrongPrefix));
        assert_eq!(Token::parse(&s.replacen("ibp_", "ibx_", 1)), Err(TokenError::WrongPrefix));
        assert_eq!(Token::parse(&s[..49]), Err(TokenError::WrongLength(49)));
        assert_eq!(Token::parse(&format!("{s}0")), Err(TokenError::WrongLength(51)));
        let mut bad = s.to_string();
        bad.replace_range(10..11, "-");
        assert_eq!(Token::parse(&bad), Err(TokenError::BadCharacter(11)));
        // Multi-byte characters must not panic on slicing.
        assert!(Token::parse("ibp_ééééééééééééééééééééééééééééééééééééééééééééé").is_err());
    }

    #[test]
    fn redact_hides_every_token_shaped_run() {
        let token = token_from_seed(3);
        let text = format!("invalid type: string \"{}\", and ibp_abc", token.expose_secret());
        let redacted = redact(&text);
        assert!(!redacted.contains(token.expose_secret()));
        assert_eq!(redacted, "invalid type: string \"ibp_…\", and ibp_…");
    }

    proptest! {
        #[test]
        fn generated_tokens_always_parse(seed in any::<u64>()) {
            let token = token_from_seed(seed);
            prop_assert_eq!(token.expose_secret().len(), TOKEN_LEN);
            prop_assert_eq!(Token::parse(token.expose_secret()), Ok(token));
        }

        #[test]
        fn any_one_character_change_is_rejected(
            seed in any::<u64>(),
            pos in 4usize..TOKEN_LEN,
            replacement in 0usize..62,
        ) {
            let token = token_from_seed(seed);
            let mut bytes = token.expose_secret().as_bytes().to_vec();
            let new = base62::ALPHABET[replacement];
            prop_assume!(bytes[pos] != new);
            bytes[pos] = new;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(Token::parse(&changed), Err(TokenError::ChecksumMismatch));
        }

        #[test]
        fn the_unparsed_hash_of_a_token_is_its_stored_hash(seed in any::<u64>(), extra in 1usize..4) {
            let token = token_from_seed(seed);
            prop_assert_eq!(Token::hash_unparsed(token.expose_secret().as_bytes()), Some(token.hash()));
            let longer = format!("{}{}", token.expose_secret(), "x".repeat(extra));
            prop_assert_eq!(Token::hash_unparsed(longer.as_bytes()), None);
            prop_assert_eq!(Token::hash_unparsed(&token.expose_secret().as_bytes()[extra..]), None);
        }

        #[test]
        fn arbitrary_strings_never_panic(input in ".{0,80}") {
            let _ = Token::parse(&input);
        }
    }

    #[test]
    fn a_key_hash_in_hex_is_hex_digits_only() {
        let hash = KeyHash([0xAB; 32]);
        assert_eq!(KeyHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(KeyHash::from_hex(&"+a".repeat(32)), None, "from_str_radix alone takes a sign");
        assert_eq!(KeyHash::from_hex(&"ab".repeat(31)), None);
    }
}
