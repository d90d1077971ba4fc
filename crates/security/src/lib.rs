//! Security rules, in one place. [`egress`]: where a participant's webhook may send Keel.
//!
//! Secrets, handled in one place (DESIGN section 9: "participants' and operators' secrets are never
//! stored in plaintext, and no service starts with a default secret outside the local stack").
//!
//! - [`hash`] and [`verify`]: what a service only has to recognise (operators' passwords,
//!   participants' client secrets) is kept as an argon2id PHC string; [`verify_unknown`] spends the
//!   same time when there is nothing to check against, so nobody learns names by timing.
//! - [`SealingKey`]: what a service has to use again (the key a webhook is signed with) is kept
//!   sealed with AES-256-GCM under a key from the service's configuration (a KMS-held secret on AWS).
//! - [`require`]: a secret setting that is missing, too short or the checked-in example outside the
//!   local stack stops the service at start, saying which setting and why.

pub mod egress;

use std::sync::OnceLock;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// An argon2id hash of `secret` with a fresh salt, as a PHC string.
pub fn hash(secret: &str) -> String {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes are a valid salt");
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with its default parameters hashes any secret")
        .to_string()
}

/// Whether `hash` (a PHC string) is not one: stored hashes are checked when they are loaded, so a
/// typo is found at start and not at the first sign-in.
pub fn check_hash(hash: &str) -> Result<(), String> {
    PasswordHash::new(hash)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Whether `secret` is the one `hash` was made from.
pub fn verify(hash: &str, secret: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &hash)
            .is_ok()
    })
}

/// Spends what [`verify`] spends, for a name nothing is stored for; always false.
pub fn verify_unknown(secret: &str) -> bool {
    static HASH: OnceLock<String> = OnceLock::new();
    let hash = HASH.get_or_init(|| hash(&BASE64.encode(rand::random::<[u8; 24]>())));
    let _ = verify(hash, secret);
    false
}

/// Why a secret setting stops a service at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("{setting} is not set: {hint}")]
    Missing { setting: &'static str, hint: String },
    #[error("{setting} is {length} characters long; a secret needs at least {MIN_SECRET_LENGTH}")]
    TooShort {
        setting: &'static str,
        length: usize,
    },
    #[error(
        "{setting} is the local stack's example secret, which is public; outside the local stack \
         (environment = \"local\") set a secret of your own"
    )]
    Example { setting: &'static str },
    #[error(
        "{setting} is not a base64 AES-256 key ({detail}); `openssl rand -base64 32` makes one"
    )]
    BadKey {
        setting: &'static str,
        detail: String,
    },
}

/// The shortest secret a service accepts.
pub const MIN_SECRET_LENGTH: usize = 32;

/// The environment the local stack declares itself (`environment = "local"` in its configuration):
/// the only one where the checked-in example secrets are accepted.
pub const LOCAL_ENVIRONMENT: &str = "local";

/// The local stack's token secret (`token_secret`, checked in): public, refused elsewhere.
pub const LOCAL_EXAMPLE_TOKEN_SECRET: &str = "keel-local-development-token-secret";

/// The local stack's webhook sealing key (`webhook_key`, checked in): public, refused elsewhere.
pub const LOCAL_EXAMPLE_WEBHOOK_KEY: &str = "a2VlbC1sb2NhbC1leGFtcGxlLXdlYmhvb2sta2V5ISE=";

/// The key in setting `webhook_key`, which seals participants' webhook signing secrets, if it may
/// be used in `environment`.
pub fn webhook_key(value: &str, environment: &str) -> Result<SealingKey, SecretError> {
    let value = require(
        "webhook_key",
        value,
        LOCAL_EXAMPLE_WEBHOOK_KEY,
        environment,
        "ingress and notification need the same base64 AES-256 key in KEEL_WEBHOOK_KEY \
         (`openssl rand -base64 32` makes one)",
    )?;
    SealingKey::from_base64("webhook_key", value)
}

/// `value` of the secret setting `setting`, if it may be used in `environment`. `example` is the
/// checked-in value the local stack uses; `hint` says where the secret comes from.
pub fn require<'a>(
    setting: &'static str,
    value: &'a str,
    example: &str,
    environment: &str,
    hint: &str,
) -> Result<&'a str, SecretError> {
    if value.is_empty() {
        return Err(SecretError::Missing {
            setting,
            hint: hint.to_owned(),
        });
    }
    if value.len() < MIN_SECRET_LENGTH {
        return Err(SecretError::TooShort {
            setting,
            length: value.len(),
        });
    }
    if value == example && environment != LOCAL_ENVIRONMENT {
        return Err(SecretError::Example { setting });
    }
    Ok(value)
}

/// Seals and opens secrets a service stores and must use again. Sealed text is
/// `v1:` + base64(nonce ‖ ciphertext ‖ tag), with a fresh 96-bit nonce each time.
#[derive(Clone)]
pub struct SealingKey {
    cipher: Aes256Gcm,
}

/// Sealed text that does not open under this key: damaged, or sealed under another key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a sealed secret does not open under the configured key (damaged, or sealed under another key)"
)]
pub struct Unsealable;

const SEALED_PREFIX: &str = "v1:";

impl SealingKey {
    /// The key in setting `setting`: base64 of 32 bytes.
    pub fn from_base64(setting: &'static str, key: &str) -> Result<Self, SecretError> {
        let bytes = BASE64.decode(key.trim()).map_err(|e| SecretError::BadKey {
            setting,
            detail: e.to_string(),
        })?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SecretError::BadKey {
            setting,
            detail: format!("{} bytes, not 32", bytes.len()),
        })?;
        Ok(Self { cipher })
    }

    pub fn seal(&self, secret: &str) -> String {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), secret.as_bytes())
            .expect("AES-GCM seals any secret of sane length");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!("{SEALED_PREFIX}{}", BASE64.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<String, Unsealable> {
        let raw = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b| BASE64.decode(b).ok())
            .filter(|raw| raw.len() > 12)
            .ok_or(Unsealable)?;
        let (nonce, ciphertext) = raw.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| Unsealable)?;
        String::from_utf8(plain).map_err(|_| Unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "keel-local-example-secret-that-is-public";

    #[test]
    fn a_hash_recognises_its_secret_only() {
        let stored = hash("s3cret-of-im-alpha");
        assert!(stored.starts_with("$argon2id$"));
        assert!(!stored.contains("s3cret"));
        assert!(verify(&stored, "s3cret-of-im-alpha"));
        assert!(!verify(&stored, "s3cret-of-im-beta"));
        assert!(!verify("not a hash", "anything"));
        assert!(!verify_unknown("anything"));
        assert!(check_hash(&stored).is_ok());
        assert!(check_hash("plaintext-secret").is_err());
    }

    #[test]
    fn missing_short_and_example_secrets_stop_a_service_outside_the_local_stack() {
        let req = |value, environment| {
            require(
                "token_secret",
                value,
                EXAMPLE,
                environment,
                "set KEEL_TOKEN_SECRET",
            )
        };
        assert!(matches!(
            req("", "production"),
            Err(SecretError::Missing { .. })
        ));
        assert!(matches!(
            req("short", "local"),
            Err(SecretError::TooShort { .. })
        ));
        assert_eq!(
            req(EXAMPLE, "production"),
            Err(SecretError::Example {
                setting: "token_secret"
            })
        );
        assert_eq!(req(EXAMPLE, "local"), Ok(EXAMPLE));
        let own = "an-operator-chosen-secret-of-enough-length";
        assert_eq!(req(own, "production"), Ok(own));
        let message = req("", "production").unwrap_err().to_string();
        assert!(
            message.contains("token_secret") && message.contains("KEEL_TOKEN_SECRET"),
            "{message}"
        );
    }

    #[test]
    fn the_local_webhook_key_is_a_key_and_only_for_the_local_stack() {
        assert!(webhook_key(LOCAL_EXAMPLE_WEBHOOK_KEY, LOCAL_ENVIRONMENT).is_ok());
        assert!(matches!(
            webhook_key(LOCAL_EXAMPLE_WEBHOOK_KEY, ""),
            Err(SecretError::Example { .. })
        ));
        assert!(matches!(
            webhook_key("", ""),
            Err(SecretError::Missing { .. })
        ));
    }

    #[test]
    fn a_sealed_secret_opens_under_its_key_only() {
        let key = SealingKey::from_base64("webhook_key", &BASE64.encode([7u8; 32])).unwrap();
        let other = SealingKey::from_base64("webhook_key", &BASE64.encode([8u8; 32])).unwrap();
        let sealed = key.seal("whsec-123");
        assert!(!sealed.contains("whsec"));
        assert_ne!(sealed, key.seal("whsec-123"), "a fresh nonce each time");
        assert_eq!(key.open(&sealed).unwrap(), "whsec-123");
        assert_eq!(other.open(&sealed), Err(Unsealable));
        assert_eq!(key.open("whsec-123"), Err(Unsealable));
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(key.open(&damaged), Err(Unsealable));
        assert!(matches!(
            SealingKey::from_base64("webhook_key", "c2hvcnQ="),
            Err(SecretError::BadKey { .. })
        ));
    }
}
