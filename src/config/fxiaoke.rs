//! `fxiaoke.*`: the vendor account, and the one rule that turns it into a delivery mode.

use secrecy::SecretString;
use serde::Deserialize;

/// `fxiaoke.*`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FxiaokeSettings {
    /// API host: `https://open.fxiaoke.com` or a dedicated cloud's host.
    pub base_url: String,
    /// The self-built app's id.
    pub app_id: Option<String>,
    /// The self-built app's secret.
    pub app_secret: Option<SecretString>,
    /// The enterprise's permanent code.
    pub permanent_code: Option<SecretString>,
    /// The acting employee id sent as `x-fs-userid`.
    pub user_id: Option<String>,
    /// Log and mark delivered instead of sending.
    pub dry_run: bool,
}

impl Default for FxiaokeSettings {
    fn default() -> Self {
        Self {
            base_url: "https://open.fxiaoke.com".into(),
            app_id: None,
            app_secret: None,
            permanent_code: None,
            user_id: None,
            dry_run: false,
        }
    }
}

/// The app credentials of a live send, all four present.
pub struct Credentials {
    /// The self-built app's id.
    pub app_id: String,
    /// The app's secret.
    pub app_secret: SecretString,
    /// The enterprise's permanent code.
    pub permanent_code: SecretString,
    /// The acting employee id (`x-fs-userid`).
    pub user_id: String,
}

/// How messages leave, as the `fxiaoke` section decides it.
pub enum DeliveryMode {
    /// Logged and marked delivered: `dry_run: true`, or no credential at all.
    DryRun,
    /// Sent with these credentials.
    Live(Credentials),
}

impl FxiaokeSettings {
    /// The delivery mode: dry run when asked for or when no credential is set; live with all
    /// four; an error naming the missing keys when some but not all are set (a typo must not
    /// turn into a dry run that sends nothing).
    ///
    /// # Errors
    /// Some credentials but not all.
    pub fn mode(&self) -> Result<DeliveryMode, String> {
        use secrecy::ExposeSecret;
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let secret = |v: &Option<SecretString>| {
            v.as_ref()
                .map(|s| s.expose_secret().trim().to_string())
                .filter(|s| !s.is_empty())
                .map(SecretString::from)
        };
        let (app_id, app_secret) = (text(&self.app_id), secret(&self.app_secret));
        let (permanent_code, user_id) = (secret(&self.permanent_code), text(&self.user_id));
        if self.dry_run {
            return Ok(DeliveryMode::DryRun);
        }
        let missing: Vec<&str> = [
            ("app_id", app_id.is_none()),
            ("app_secret", app_secret.is_none()),
            ("permanent_code", permanent_code.is_none()),
            ("user_id", user_id.is_none()),
        ]
        .iter()
        .filter(|(_, missing)| *missing)
        .map(|(k, _)| *k)
        .collect();
        match (app_id, app_secret, permanent_code, user_id) {
            (Some(app_id), Some(app_secret), Some(permanent_code), Some(user_id)) => {
                Ok(DeliveryMode::Live(Credentials {
                    app_id,
                    app_secret,
                    permanent_code,
                    user_id,
                }))
            }
            _ if missing.len() == 4 => Ok(DeliveryMode::DryRun),
            _ => Err(format!(
                "fxiaoke.{} missing (set all four credentials, or none for dry run, or fxiaoke.dry_run: true)",
                missing.join(", fxiaoke.")
            )),
        }
    }
}
