//! A source's secrets prepared, once, for the scheme that uses them: a scheme never decodes a
//! secret on a request. A secret that cannot be what its scheme needs (a Standard Webhooks key
//! that is not base64) is set aside with the reason, for a load-time warning that names where it
//! came from; it is never used in some other form.

use std::fmt;

use secrecy::{ExposeSecret, SecretSlice};

use super::crypto::decode_whsec;
use super::secrets::Secret;

/// What a scheme makes of each secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The secret's text is the HMAC key or the token (Stripe's whole `whsec_…` text included).
    Text,
    /// Every secret is a Standard Webhooks key: base64 after `whsec_` (Standard Webhooks, Svix).
    Whsec,
    /// A secret that starts with `whsec_` is a Standard Webhooks signing key, any other is a
    /// shared token (GitLab: the secret token, or a signing token since 19.0).
    TokenOrWhsec,
}

/// One secret in the form its scheme uses.
#[derive(Debug, Clone)]
pub enum Key {
    /// Used as its text.
    Text(Secret),
    /// A Standard Webhooks key, decoded.
    Whsec {
        /// The secret as configured (its text is looked for in headers that must not be stored).
        secret: Secret,
        /// The HMAC key: the decoded base64.
        bytes: SecretSlice<u8>,
    },
}

impl Key {
    /// `secret` in the form `kind` says.
    ///
    /// # Errors
    /// A secret that cannot take that form, handed back with the reason.
    pub fn prepare(secret: Secret, kind: KeyKind) -> Result<Key, Unusable> {
        let whsec = match kind {
            KeyKind::Text => false,
            KeyKind::Whsec => true,
            KeyKind::TokenOrWhsec => secret.expose().starts_with("whsec_"),
        };
        if !whsec {
            return Ok(Key::Text(secret));
        }
        match decode_whsec(secret.expose()) {
            Some(bytes) => Ok(Key::Whsec {
                secret,
                bytes: bytes.into(),
            }),
            None => Err(Unusable {
                secret,
                problem: Problem::NotWhsec,
            }),
        }
    }

    /// The secret as configured.
    pub fn secret(&self) -> &Secret {
        match self {
            Key::Text(secret) | Key::Whsec { secret, .. } => secret,
        }
    }
}

/// A secret its scheme cannot use, and why.
#[derive(Debug, Clone)]
pub struct Unusable {
    /// The secret (its origin names it in warnings; its text is still never stored in headers).
    pub secret: Secret,
    /// Why it cannot be used.
    pub problem: Problem,
}

/// Why a secret cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Its scheme needs a Standard Webhooks key and this is not `whsec_` followed by base64.
    NotWhsec,
}

impl Problem {
    /// What the scheme needs, which the secret is not.
    pub fn needed(&self) -> &'static str {
        match self {
            Problem::NotWhsec => "a Standard Webhooks key (whsec_ followed by base64)",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "is not {}", self.needed())
    }
}

/// A source's usable keys, in the order its secrets were configured.
#[derive(Debug, Clone, Default)]
pub struct Keys(Vec<Key>);

impl Keys {
    /// Prepares every secret for `kind`; the ones that cannot be used come back apart.
    pub fn prepare(
        secrets: impl IntoIterator<Item = Secret>,
        kind: KeyKind,
    ) -> (Keys, Vec<Unusable>) {
        let mut keys = Vec::new();
        let mut unusable = Vec::new();
        for secret in secrets {
            match Key::prepare(secret, kind) {
                Ok(key) => keys.push(key),
                Err(u) => unusable.push(u),
            }
        }
        (Keys(keys), unusable)
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys used as their text's bytes (HMAC keys, tokens).
    pub fn texts(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().filter_map(|k| match k {
            Key::Text(secret) => Some(secret.expose().as_bytes()),
            Key::Whsec { .. } => None,
        })
    }

    /// The decoded Standard Webhooks keys.
    pub fn whsec(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().filter_map(|k| match k {
            Key::Whsec { bytes, .. } => Some(bytes.expose_secret()),
            Key::Text(_) => None,
        })
    }

    /// The secrets behind the keys.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter().map(Key::secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(values: &[&str], kind: KeyKind) -> (Keys, Vec<Unusable>) {
        Keys::prepare(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| Secret::new(*v, format!("$S{i}"))),
            kind,
        )
    }

    #[test]
    fn standard_webhooks_keys_are_decoded_once_and_a_malformed_one_is_set_aside() {
        let (keys, unusable) = prepare(&["whsec_aGVsbG8=", "whsec_not base64!"], KeyKind::Whsec);
        assert_eq!(keys.whsec().collect::<Vec<_>>(), vec![b"hello".as_slice()]);
        assert_eq!(keys.texts().count(), 0);
        assert_eq!(unusable.len(), 1);
        assert_eq!(unusable[0].secret.origin(), "$S1");
        assert_eq!(unusable[0].problem, Problem::NotWhsec);
        assert!(!unusable[0].problem.to_string().contains("not base64!"));
    }

    #[test]
    fn gitlab_takes_whsec_secrets_as_signing_keys_and_the_rest_as_tokens() {
        let (keys, unusable) = prepare(
            &["gl-token", "whsec_aGVsbG8=", "whsec_%%"],
            KeyKind::TokenOrWhsec,
        );
        assert_eq!(
            keys.texts().collect::<Vec<_>>(),
            vec![b"gl-token".as_slice()]
        );
        assert_eq!(keys.whsec().collect::<Vec<_>>(), vec![b"hello".as_slice()]);
        assert_eq!(unusable.len(), 1);
        assert_eq!(unusable[0].secret.origin(), "$S2");
    }

    #[test]
    fn text_schemes_use_every_secret_as_it_is() {
        let (keys, unusable) = prepare(&["whsec_%%", "plain"], KeyKind::Text);
        assert_eq!(keys.texts().count(), 2);
        assert!(unusable.is_empty());
    }
}
