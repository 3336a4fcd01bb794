//! Base62 (`0-9A-Za-z`, in that order) for tokens and public ids.
//!
//! Random strings are drawn with rejection sampling so every character is equally likely:
//! a byte is used only when it is below 248 (= 4 × 62), which keeps `byte % 62` unbiased.

use rand_core::TryCryptoRng;

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The value of one base62 digit, or `None` for a byte outside the alphabet.
pub fn digit_value(byte: u8) -> Option<u32> {
    match byte {
        b'0'..=b'9' => Some(u32::from(byte - b'0')),
        b'A'..=b'Z' => Some(u32::from(byte - b'A') + 10),
        b'a'..=b'z' => Some(u32::from(byte - b'a') + 36),
        _ => None,
    }
}

/// Writes `value` as exactly `out.len()` base62 digits, most significant first, zero-padded.
/// Digits that do not fit are dropped, so callers size `out` for the largest value.
pub fn encode_fixed(mut value: u64, out: &mut [u8]) {
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
}

/// Fills `out` with uniformly random base62 characters from a cryptographic RNG.
pub fn fill_random<R: TryCryptoRng + ?Sized>(rng: &mut R, out: &mut [u8]) -> Result<(), R::Error> {
    let mut pool = [0u8; 64];
    let mut filled = 0;
    while filled < out.len() {
        rng.try_fill_bytes(&mut pool)?;
        for &byte in &pool {
            if byte < 248 {
                out[filled] = ALPHABET[usize::from(byte % 62)];
                filled += 1;
                if filled == out.len() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// True when every byte of `s` is a base62 digit.
pub fn is_base62(s: &[u8]) -> bool {
    s.iter().all(|&b| digit_value(b).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_values_follow_the_alphabet_order() {
        for (i, &c) in ALPHABET.iter().enumerate() {
            assert_eq!(digit_value(c), Some(i as u32));
        }
        assert_eq!(digit_value(b'-'), None);
    }

    #[test]
    fn encode_fixed_is_zero_padded_and_most_significant_first() {
        let mut out = [0u8; 6];
        encode_fixed(0, &mut out);
        assert_eq!(&out, b"000000");
        encode_fixed(61, &mut out);
        assert_eq!(&out, b"00000z");
        encode_fixed(62, &mut out);
        assert_eq!(&out, b"000010");
        encode_fixed(u64::from(u32::MAX), &mut out);
        assert_eq!(&out, b"4gfFC3");
    }
}
