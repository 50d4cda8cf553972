//! Where a source's signing secrets come from: environment variables or files (Docker and
//! Kubernetes secrets), several at once for rotation. The values never reach a log or `Debug`.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where one secret is read from, as written in a mapping file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file whose whole content (trailing newline removed) is the secret.
    File(PathBuf),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "${name}"),
            SecretRef::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// One usable secret and where it came from (for logs: the place, never the value).
#[derive(Clone)]
pub struct Secret {
    value: SecretString,
    origin: String,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}, [REDACTED])", self.origin)
    }
}

impl Secret {
    /// A secret from a literal value (tests, tools).
    pub fn new(value: impl Into<String>, origin: impl Into<String>) -> Self {
        Secret {
            value: SecretString::from(value.into()),
            origin: origin.into(),
        }
    }

    /// The value, for the scheme that needs it.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    /// Where it came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// True when `text` contains this secret, as is or URL-encoded (a token in a query string
    /// that a proxy copied into a header). Secrets shorter than four bytes are not looked for:
    /// they would match nearly anything.
    pub fn appears_in(&self, text: &[u8]) -> bool {
        let secret = self.expose();
        if secret.len() < 4 {
            return false;
        }
        let contains = |needle: &[u8]| memchr::memmem::find(text, needle).is_some();
        if contains(secret.as_bytes()) {
            return true;
        }
        // Form encoding leaves these bytes as they are: then the encoded secret is the secret.
        if secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*-._".contains(&b))
        {
            return false;
        }
        // `serde_urlencoded` writes `k=<encoded>`: the part after `=` is the encoded secret.
        serde_urlencoded::to_string([("k", secret)])
            .ok()
            .and_then(|kv| kv.strip_prefix("k=").map(str::to_string))
            .is_some_and(|encoded| encoded != secret && contains(encoded.as_bytes()))
    }
}

/// The default places of a source's secrets: `FXHOOK_SECRET_<SOURCE>` and its `_PREVIOUS`.
pub fn conventional_refs(source: &str) -> Vec<SecretRef> {
    let base = format!(
        "FXHOOK_SECRET_{}",
        source.to_ascii_uppercase().replace('-', "_")
    );
    vec![
        SecretRef::Env(base.clone()),
        SecretRef::Env(format!("{base}_PREVIOUS")),
    ]
}

/// Reads every place; unset, empty and unreadable ones are skipped and described in `problems`.
pub fn resolve(refs: &[SecretRef], problems: &mut Vec<String>) -> Vec<Secret> {
    refs.iter()
        .filter_map(|r| {
            let value = match r {
                SecretRef::Env(name) => std::env::var(name).ok(),
                SecretRef::File(path) => match std::fs::read_to_string(path) {
                    Ok(text) => Some(text),
                    Err(e) => {
                        problems.push(format!("secret {r} cannot be read: {e}"));
                        None
                    }
                },
            }?;
            let value = value.trim_end_matches(['\r', '\n']);
            (!value.is_empty()).then(|| Secret::new(value, r.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_its_value_in_debug() {
        let s = Secret::new("hunter2", "$FXHOOK_SECRET_X");
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("FXHOOK_SECRET_X"));
    }

    #[test]
    fn the_conventional_names_upper_case_the_source_and_turn_dashes_into_underscores() {
        assert_eq!(
            conventional_refs("my-gitlab"),
            vec![
                SecretRef::Env("FXHOOK_SECRET_MY_GITLAB".into()),
                SecretRef::Env("FXHOOK_SECRET_MY_GITLAB_PREVIOUS".into())
            ]
        );
    }
}
