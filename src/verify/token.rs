//! Schemes for senders that sign nothing: a shared token in a header (GitLab, Jenkins), or an
//! `Authorization` header with a bearer token or basic credentials (Alertmanager's
//! `http_config`). Compared in constant time. Also the bearer check of the admin API and
//! `/metrics`, which reads `Authorization` the same way.

use std::time::SystemTime;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use super::crypto::{constant_time_eq, token_matches};
use super::keys::Keys;
use super::{Scheme, Trace, VerifyError, Webhook};

const AUTHORIZATION: &str = "Authorization";

/// The whole header value must equal a secret.
#[derive(Debug, Clone)]
pub struct HeaderToken {
    /// The header carrying the token.
    pub header: String,
}

impl Scheme for HeaderToken {
    fn check_keys<'s>(
        &'s self,
        webhook: &Webhook,
        keys: &Keys,
        _: SystemTime,
        trace: &mut Trace<'s>,
    ) -> Result<(), VerifyError> {
        trace.at(&self.header);
        let token = webhook
            .header(&self.header)
            .ok_or_else(|| VerifyError::MissingHeader(self.header.clone()))?;
        trace.matched(token_matches(token.as_bytes(), keys.texts()))
    }

    fn credential_headers(&self) -> Vec<String> {
        vec![self.header.to_ascii_lowercase()]
    }
}

/// `Authorization: Bearer <secret>`, or `Authorization: Basic …` whose `user:password` equals a
/// secret written as `user:password`.
#[derive(Debug, Clone, Default)]
pub struct AuthorizationHeader;

impl Scheme for AuthorizationHeader {
    fn check_keys<'s>(
        &'s self,
        webhook: &Webhook,
        keys: &Keys,
        _: SystemTime,
        trace: &mut Trace<'s>,
    ) -> Result<(), VerifyError> {
        trace.at(AUTHORIZATION);
        let malformed = || VerifyError::Malformed(AUTHORIZATION.into());
        let value = webhook
            .header(AUTHORIZATION)
            .ok_or_else(|| VerifyError::MissingHeader(AUTHORIZATION.into()))?;
        let (scheme, rest) = authorization(value).ok_or_else(malformed)?;
        let presented: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
            rest.as_bytes().to_vec()
        } else if scheme.eq_ignore_ascii_case("basic") {
            base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| malformed())?
        } else {
            return Err(malformed());
        };
        trace.matched(token_matches(&presented, keys.texts()))
    }

    fn credential_headers(&self) -> Vec<String> {
        vec!["authorization".into()]
    }
}

/// An `Authorization` value split into its scheme and its credentials (`Bearer abc` →
/// `("Bearer", "abc")`). Callers compare the scheme case-insensitively, as RFC 7235 says.
pub fn authorization(value: &str) -> Option<(&str, &str)> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    Some((scheme, credentials.trim()))
}

/// True when the headers carry `Authorization: Bearer <token>` (the scheme in any case, the
/// token compared in constant time); for the admin API and `/metrics`.
pub fn bearer_matches(headers: &actix_web::http::header::HeaderMap, token: &SecretString) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(authorization)
        .is_some_and(|(scheme, presented)| {
            scheme.eq_ignore_ascii_case("bearer")
                && constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes())
        })
}
