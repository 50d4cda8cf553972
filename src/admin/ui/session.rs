//! Console sessions: a signed cookie, nothing kept in memory, so that every replica sharing the
//! admin token honours it. The cookie holds an expiry and a random nonce, signed with a key
//! derived from `admin.token` (changing the token signs everyone out); the CSRF token of a
//! session is derived from its nonce with the same key, so a page can carry it and any replica
//! can check it. Failed sign-ins are limited per client address.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The cookie's name.
pub const COOKIE: &str = "fxhook_session";

/// A valid session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its random part (hex).
    pub nonce: String,
    /// When it ends (unix seconds).
    pub expires: u64,
}

/// Issues and checks sessions.
pub struct Sessions {
    key: [u8; 32],
    token: SecretString,
    ttl: Duration,
    /// Failed sign-ins per client address.
    failures: governor::DefaultKeyedRateLimiter<IpAddr>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions(ttl={:?}, [REDACTED])", self.ttl)
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes a key of any length; were it ever refused, no signature would match.
    let Ok(mut m) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        m.update(p);
        m.update(b"\0");
    }
    m.finalize().into_bytes().to_vec()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Sessions {
    /// Sessions of `ttl` for the admin `token`; at most `failures_per_minute` wrong tokens a
    /// minute from one address.
    pub fn new(token: &SecretString, ttl: Duration, failures_per_minute: u32) -> Sessions {
        let derived = mac(
            token.expose_secret().as_bytes(),
            &[b"fxhook console session v1"],
        );
        let mut key = [0u8; 32];
        key.copy_from_slice(&derived[..32]);
        let quota = governor::Quota::per_minute(
            NonZeroU32::new(failures_per_minute.max(1)).unwrap_or(NonZeroU32::MIN),
        );
        Sessions {
            key,
            token: token.clone(),
            ttl,
            failures: governor::RateLimiter::keyed(quota),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// True when `presented` is the admin token (constant time).
    pub fn token_matches(&self, presented: &str) -> bool {
        crate::verify::crypto::constant_time_eq(
            presented.trim().as_bytes(),
            self.token.expose_secret().as_bytes(),
        )
    }

    /// Counts a sign-in try from `client` (an IPv6 address by its /64, which one host holds
    /// whole); `false` once it tried too often this minute.
    pub fn may_try(&self, client: IpAddr) -> bool {
        let key = match client {
            IpAddr::V6(v6) => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
            v4 => v4,
        };
        // Forget addresses whose minute is over, so that the map stays small.
        self.failures.retain_recent();
        self.failures.check_key(&key).is_ok()
    }

    /// A new session from `now`: the cookie's value.
    pub fn issue(&self, now: SystemTime) -> String {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let expires = unix(now) + self.ttl.as_secs();
        let sig = hex::encode(mac(
            &self.key,
            &[b"session", expires.to_string().as_bytes(), nonce.as_bytes()],
        ));
        format!("{expires}.{nonce}.{sig}")
    }

    /// The session of a cookie value, when it is ours and not expired.
    pub fn check(&self, cookie: &str, now: SystemTime) -> Option<Session> {
        let mut parts = cookie.split('.');
        let (expires, nonce, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let want = mac(
            &self.key,
            &[b"session", expires.as_bytes(), nonce.as_bytes()],
        );
        let given = hex::decode(sig).ok()?;
        if !crate::verify::crypto::constant_time_eq(&want, &given) {
            return None;
        }
        let expires: u64 = expires.parse().ok()?;
        (expires > unix(now)).then(|| Session {
            nonce: nonce.to_string(),
            expires,
        })
    }

    /// The CSRF token of `session`: forms and requests that change state must carry it.
    pub fn csrf(&self, session: &Session) -> String {
        hex::encode(mac(&self.key, &[b"csrf", session.nonce.as_bytes()]))
    }

    /// True when `presented` is the CSRF token of `session` (constant time).
    pub fn csrf_matches(&self, session: &Session, presented: &str) -> bool {
        crate::verify::crypto::constant_time_eq(
            self.csrf(session).as_bytes(),
            presented.trim().as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(token: &str) -> Sessions {
        Sessions::new(
            &SecretString::from(token.to_string()),
            Duration::from_secs(3600),
            3,
        )
    }

    #[test]
    fn a_session_is_honoured_until_it_expires_and_only_with_its_own_signature_and_token() {
        let s = sessions("admin-token-0123456789");
        let now = SystemTime::now();
        let cookie = s.issue(now);
        let session = s.check(&cookie, now).expect("valid");
        assert!(
            s.check(&cookie, now + Duration::from_secs(3601)).is_none(),
            "expired"
        );
        let forged = cookie.replacen(
            &session.expires.to_string(),
            &(session.expires + 9999).to_string(),
            1,
        );
        assert!(
            s.check(&forged, now).is_none(),
            "a longer life is not signed"
        );
        assert!(
            sessions("another-token-0123456789")
                .check(&cookie, now)
                .is_none()
        );
        assert!(
            sessions("admin-token-0123456789")
                .check(&cookie, now)
                .is_some(),
            "any replica with the token"
        );
        assert!(s.check("garbage", now).is_none());
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let s = sessions("admin-token-0123456789");
        let now = SystemTime::now();
        let a = s.check(&s.issue(now), now).unwrap();
        let b = s.check(&s.issue(now), now).unwrap();
        assert!(s.csrf_matches(&a, &s.csrf(&a)));
        assert!(!s.csrf_matches(&a, &s.csrf(&b)));
        assert!(!s.csrf_matches(&a, ""));
    }

    #[test]
    fn sign_ins_from_one_address_are_limited_and_others_are_not() {
        let s = sessions("admin-token-0123456789");
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert!((0..3).all(|_| s.may_try(a)));
        assert!(!s.may_try(a), "the fourth in a minute");
        assert!(s.may_try(b));
        let (c, d): (IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::ffff".parse().unwrap(),
        );
        assert!((0..3).all(|_| s.may_try(c)));
        assert!(!s.may_try(d), "one /64 is one client");
        assert!(s.token_matches(" admin-token-0123456789 "));
        assert!(!s.token_matches("admin-token"));
    }
}
