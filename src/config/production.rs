//! The rules only `APP_ENV=production` enforces: a real Twitch (no
//! simulator), real secrets (neither the development defaults nor
//! placeholders, see `domain::secret_strength`), https:// public URLs.

use super::{Config, ConfigError, DEV_SESSION_SECRET, DEV_TOKEN_ENCRYPTION_KEY, DEV_WEBHOOK_SECRET, err};
use crate::secret::Secret;

impl Config {
    /// The rules that only production enforces, in one place.
    pub(super) fn check_production(&self) -> Result<(), ConfigError> {
        if self.twitch_client_id.is_none() {
            return Err(err("TWITCH_CLIENT_ID", "is required in production (the Twitch simulator is refused)"));
        }
        let previous = self.token_encryption_key_previous.as_ref().map(Secret::expose);
        for (name, secret, dev) in [
            ("SESSION_SECRET", Some(self.session_secret.expose()), DEV_SESSION_SECRET),
            ("WEBHOOK_SECRET", Some(self.webhook_secret.expose()), DEV_WEBHOOK_SECRET),
            ("TOKEN_ENCRYPTION_KEY", Some(self.token_encryption_key.expose()), DEV_TOKEN_ENCRYPTION_KEY),
            ("TOKEN_ENCRYPTION_KEY_PREVIOUS", previous, DEV_TOKEN_ENCRYPTION_KEY),
        ] {
            let Some(secret) = secret else { continue };
            if secret == dev {
                return Err(err(name, "must be set to a real secret in production"));
            }
            if let Some(why) = crate::domain::secret_strength::weakness(secret) {
                return Err(err(name, why));
            }
        }
        if self.bot_user_id.is_none() {
            return Err(err("BOT_USER_ID", "is required in production"));
        }
        for (name, url) in [
            ("PUBLIC_URL", &self.public_url),
            ("TWITCH_REDIRECT_URI", &self.twitch_redirect_uri),
            ("WEBHOOK_CALLBACK_URL", &self.webhook_callback_url),
        ] {
            if !url.starts_with("https://") {
                return Err(err(name, "must be an https:// URL in production (cookies are Secure)"));
            }
        }
        // Twitch is only ever reached over TLS: a plain-HTTP Twitch is a
        // simulator (`chatpulse twitch-sim`), which production refuses.
        for (name, url, secure) in [
            ("TWITCH_AUTH_URL", &self.twitch_auth_url, "https://"),
            ("TWITCH_API_URL", &self.twitch_api_url, "https://"),
            ("TWITCH_EVENTSUB_WS_URL", &self.twitch_eventsub_ws_url, "wss://"),
        ] {
            if !url.starts_with(secure) {
                return Err(err(
                    name,
                    format!("must be a {secure} URL in production (the Twitch simulator is refused)"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, production};

    #[test]
    fn production_refuses_placeholder_secrets_naming_the_variable() {
        let weak = [
            ("SESSION_SECRET", "a".repeat(64)),
            ("WEBHOOK_SECRET", "abababababab".to_owned()),
            ("TOKEN_ENCRYPTION_KEY", format!("{}1", "0".repeat(63))),
            ("TOKEN_ENCRYPTION_KEY_PREVIOUS", "f".repeat(64)),
        ];
        for (var, value) in &weak {
            let mut vars: Vec<(&str, &str)> = production().into_iter().filter(|(k, _)| k != var).collect();
            vars.push((var, value));
            let e = load(&vars).unwrap_err();
            assert_eq!(e.variable, *var, "{e}");
            assert!(e.to_string().contains("distinct characters"), "{e}");
        }
        // Development keeps its defaults and accepts anything well-formed.
        for (var, value) in &weak {
            assert!(load(&[(var, value.as_str())]).is_ok(), "{var} in development");
        }
    }
}
