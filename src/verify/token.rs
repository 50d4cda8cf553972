//! Schemes for senders that sign nothing: a shared token in a header (GitLab, Jenkins), or an
//! `Authorization` header with a bearer token or basic credentials (Alertmanager's
//! `http_config`). Compared in constant time.

use std::time::SystemTime;

use base64::Engine as _;

use super::{Scheme, Secret, VerifyError, Webhook, authorization, token_matches};

/// The whole header value must equal a secret.
#[derive(Debug, Clone)]
pub struct HeaderToken {
    /// The header carrying the token.
    pub header: String,
}

impl Scheme for HeaderToken {
    fn check(
        &self,
        webhook: &Webhook,
        secrets: &[Secret],
        _: SystemTime,
    ) -> Result<(), VerifyError> {
        let token = webhook
            .header(&self.header)
            .ok_or_else(|| VerifyError::MissingHeader(self.header.clone()))?;
        token_matches(token.as_bytes(), secrets)
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
    fn check(
        &self,
        webhook: &Webhook,
        secrets: &[Secret],
        _: SystemTime,
    ) -> Result<(), VerifyError> {
        let value = webhook
            .header("authorization")
            .ok_or_else(|| VerifyError::MissingHeader("Authorization".into()))?;
        let (scheme, rest) =
            authorization(value).ok_or_else(|| VerifyError::Malformed("Authorization".into()))?;
        let presented: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
            rest.as_bytes().to_vec()
        } else if scheme.eq_ignore_ascii_case("basic") {
            base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| VerifyError::Malformed("Authorization".into()))?
        } else {
            return Err(VerifyError::Malformed("Authorization".into()));
        };
        token_matches(&presented, secrets)
    }

    fn credential_headers(&self) -> Vec<String> {
        vec!["authorization".into()]
    }
}
