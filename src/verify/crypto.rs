//! The crypto every scheme shares: computing an HMAC, comparing MACs and tokens in constant time,
//! trying a source's keys in turn, reading a signed timestamp against the clock, and decoding a
//! Standard Webhooks `whsec_` key. A leaf: it knows nothing of requests, secrets or schemes, only
//! bytes, so every scheme file can use it without importing another.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};

use super::spec::Algorithm;

/// Default replay window of schemes with a timestamp.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Computes an HMAC over the concatenation of `parts`.
pub fn mac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC takes keys of any length, so this cannot fail; an empty result never matches.
        let Ok(mut m) = <M as KeyInit>::new_from_slice(key) else {
            return Vec::new();
        };
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
    }
}

/// Constant-time equality of two MACs.
pub fn same_mac(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    !a.is_empty() && a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Compares two byte strings in constant time (for tokens of any length: both sides are
/// hashed first, so not even the length leaks).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.as_slice().ct_eq(hb.as_slice()).into()
}

/// The result of trying a source's keys in turn (several during a rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tried {
    /// How many keys were compared (up to and including the one that matched).
    pub count: usize,
    /// Whether one matched.
    pub matched: bool,
}

fn first_match<'k>(
    keys: impl IntoIterator<Item = &'k [u8]>,
    test: impl Fn(&[u8]) -> bool,
) -> Tried {
    let mut count = 0;
    for key in keys {
        count += 1;
        if test(key) {
            return Tried {
                count,
                matched: true,
            };
        }
    }
    Tried {
        count,
        matched: false,
    }
}

/// Tries each key until the MAC it makes over `parts` equals one of the candidate signatures,
/// each comparison in constant time.
pub fn mac_matches<'k>(
    algorithm: Algorithm,
    keys: impl IntoIterator<Item = &'k [u8]>,
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> Tried {
    first_match(keys, |key| {
        let expected = mac(algorithm, key, parts);
        candidates.iter().any(|c| same_mac(&expected, c))
    })
}

/// Tries each token until one equals `presented`, in constant time.
pub fn token_matches<'k>(presented: &[u8], tokens: impl IntoIterator<Item = &'k [u8]>) -> Tried {
    first_match(tokens, |token| constant_time_eq(presented, token))
}

/// Seconds between a unix-seconds timestamp and `now`, either way; `None` when the text is not
/// a number.
pub fn skew_secs(timestamp: &str, now: SystemTime) -> Option<u64> {
    let ts: i64 = timestamp.trim().parse().ok()?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Some(now.abs_diff(ts))
}

/// The signing key of a Standard Webhooks secret: the bytes that the base64 after `whsec_`
/// decodes to (the prefix may be left out, as the specification's libraries allow). `None` when
/// that text is not base64 or decodes to nothing: such a secret is no key at all.
pub fn decode_whsec(secret: &str) -> Option<Vec<u8>> {
    let text = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .filter(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whsec_key_is_the_base64_after_its_prefix_and_nothing_else_is_a_key() {
        assert_eq!(decode_whsec("whsec_aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_whsec("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_whsec("whsec_not base64!"), None);
        assert_eq!(decode_whsec("whsec_"), None);
    }

    #[test]
    fn trying_keys_counts_up_to_the_one_that_matches() {
        let keys: [&[u8]; 3] = [b"old", b"new", b"other"];
        let sig = mac(Algorithm::Sha256, b"new", &[b"body"]);
        let tried = mac_matches(Algorithm::Sha256, keys, &[b"body"], &[sig]);
        assert_eq!(
            tried,
            Tried {
                count: 2,
                matched: true
            }
        );
        let none = token_matches(b"guess", keys);
        assert_eq!(
            none,
            Tried {
                count: 3,
                matched: false
            }
        );
    }

    #[test]
    fn the_skew_is_measured_either_way_and_a_non_number_has_none() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(skew_secs("999400", now), Some(600));
        assert_eq!(skew_secs(" 1000030 ", now), Some(30));
        assert_eq!(skew_secs("soon", now), None);
    }
}
