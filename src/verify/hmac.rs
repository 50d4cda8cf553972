//! The generic HMAC scheme: a header carrying an HMAC of the body (or of a template over a
//! timestamp, an id and the body), hex or base64, with an optional prefix and replay window.
//! Most presets are this scheme with fixed settings.

use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::crypto::{DEFAULT_TOLERANCE, mac_matches};
use super::keys::Keys;
use super::spec::{Algorithm, Encoding};
use super::{Scheme, Trace, VerifyError, Webhook};

/// One piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// The timestamp header's value.
    Timestamp,
    /// The id header's value.
    Id,
    /// The body (or, with `sign_payload`, the decoded form payload).
    Body,
}

/// A fully described HMAC scheme.
#[derive(Debug, Clone)]
pub struct HmacScheme {
    /// Header that carries the signature.
    pub header: String,
    /// Hash function.
    pub algorithm: Algorithm,
    /// Signature encoding.
    pub encoding: Encoding,
    /// Text before the signature (`sha256=`); required when not empty.
    pub prefix: String,
    /// The signed content.
    pub signed: Vec<Part>,
    /// Header with the unix timestamp (enables the replay window).
    pub timestamp_header: Option<String>,
    /// Header with the message id.
    pub id_header: Option<String>,
    /// Replay window.
    pub tolerance: Duration,
    /// Several signatures in one header, separated by this character (any may match).
    pub list_separator: Option<char>,
    /// Sign the decoded `payload=` form field rather than the raw body (Gitea, Gogs).
    pub sign_payload: bool,
}

impl HmacScheme {
    /// The common case: an HMAC of the body in one header.
    pub fn of_body(header: &str, algorithm: Algorithm, encoding: Encoding, prefix: &str) -> Self {
        HmacScheme {
            header: header.to_string(),
            algorithm,
            encoding,
            prefix: prefix.to_string(),
            signed: vec![Part::Body],
            timestamp_header: None,
            id_header: None,
            tolerance: DEFAULT_TOLERANCE,
            list_separator: None,
            sign_payload: false,
        }
    }
}

/// Parses a `signed:` template such as `{timestamp}.{body}`.
///
/// # Errors
/// An unknown placeholder or an unclosed brace.
pub fn parse_signed(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in signed: {text:?}"))?;
        parts.push(match &after[..close] {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            "id" => Part::Id,
            other => {
                return Err(format!(
                    "unknown placeholder {{{other}}} in signed (use {{body}}, {{timestamp}}, {{id}})"
                ));
            }
        });
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    if !parts.contains(&Part::Body) {
        return Err("signed must include {body}".into());
    }
    Ok(parts)
}

impl HmacScheme {
    fn decode(&self, text: &str) -> Option<Vec<u8>> {
        let text = text.trim().strip_prefix(self.prefix.as_str())?;
        match self.encoding {
            Encoding::Hex => hex::decode(text).ok(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        }
    }
}

impl Scheme for HmacScheme {
    fn check_keys<'s>(
        &'s self,
        webhook: &Webhook,
        keys: &Keys,
        now: SystemTime,
        trace: &mut Trace<'s>,
    ) -> Result<(), VerifyError> {
        trace.at(&self.header);
        let header = webhook
            .header(&self.header)
            .ok_or_else(|| VerifyError::MissingHeader(self.header.clone()))?;
        let candidates: Vec<Vec<u8>> = match self.list_separator {
            Some(sep) => header.split(sep).filter_map(|s| self.decode(s)).collect(),
            None => self.decode(header).into_iter().collect(),
        };
        if candidates.is_empty() {
            return Err(VerifyError::Malformed(self.header.clone()));
        }
        let mut header_value = |name: &'s Option<String>| -> Result<Option<&str>, VerifyError> {
            match name {
                None => Ok(None),
                Some(n) => webhook.header(n).map(Some).ok_or_else(|| {
                    trace.at(n);
                    VerifyError::MissingHeader(n.clone())
                }),
            }
        };
        let timestamp = header_value(&self.timestamp_header)?;
        let id = header_value(&self.id_header)?;
        let payload;
        let body: &[u8] = if self.sign_payload {
            payload = webhook
                .payload_bytes()
                .map_err(|_| VerifyError::Malformed("payload".into()))?;
            &payload
        } else {
            &webhook.body
        };
        let parts: Vec<&[u8]> = self
            .signed
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.as_bytes(),
                Part::Timestamp => timestamp.unwrap_or_default().as_bytes(),
                Part::Id => id.unwrap_or_default().as_bytes(),
                Part::Body => body,
            })
            .collect();
        trace.matched(mac_matches(
            self.algorithm,
            keys.texts(),
            &parts,
            &candidates,
        ))?;
        if let (Some(ts), Some(name)) = (timestamp, &self.timestamp_header) {
            trace.timestamp(ts, name, now, self.tolerance)?;
        }
        Ok(())
    }

    fn credential_headers(&self) -> Vec<String> {
        vec![self.header.to_ascii_lowercase()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_template_knows_its_placeholders() {
        assert_eq!(
            parse_signed("{timestamp}.{body}").unwrap(),
            vec![Part::Timestamp, Part::Lit(".".into()), Part::Body]
        );
        assert!(parse_signed("{when}.{body}").is_err());
        assert!(parse_signed("{timestamp}").is_err());
        assert!(parse_signed("{body").is_err());
    }
}
