//! Public identifiers: a short type prefix (`key_`, `usr_`) and 16 random base62 characters
//! (about 95 bits), so ids are unguessable, safe in URLs and obvious in logs.

use rand_core::TryCryptoRng;

use super::base62;

pub const RANDOM_LEN: usize = 16;

pub(crate) fn generate<R: TryCryptoRng + ?Sized>(prefix: &str, rng: &mut R) -> Result<String, R::Error> {
    let mut random = [0u8; RANDOM_LEN];
    base62::fill_random(rng, &mut random)?;
    let mut id = String::with_capacity(prefix.len() + RANDOM_LEN);
    id.push_str(prefix);
    // fill_random writes only ASCII alphabet bytes.
    id.extend(random.iter().map(|&b| char::from(b)));
    Ok(id)
}

pub(crate) fn is_valid(prefix: &str, input: &str) -> bool {
    input.len() == prefix.len() + RANDOM_LEN
        && input.starts_with(prefix)
        && base62::is_base62(&input.as_bytes()[prefix.len()..])
}

/// Declares a newtype for a prefixed public id with `generate`, `parse` and serde support.
macro_rules! public_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate<R: rand_core::TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self, R::Error> {
                $crate::domain::id::generate($prefix, rng).map($name)
            }

            /// `None` when the input is not an id of this kind: callers answer "not found".
            pub fn parse(input: &str) -> Option<Self> {
                $crate::domain::id::is_valid($prefix, input).then(|| $name(input.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                if $crate::domain::id::is_valid($prefix, &value) {
                    Ok($name(value))
                } else {
                    Err(format!("not a valid {} id", $prefix))
                }
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use public_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_other_shapes() {
        let id = generate("key_", &mut getrandom::SysRng).unwrap();
        assert!(is_valid("key_", &id));
        assert!(!is_valid("usr_", &id));
        assert!(!is_valid("key_", &id[..id.len() - 1]));
        assert!(!is_valid("key_", "key_../../etc/passwd0"));
    }
}
