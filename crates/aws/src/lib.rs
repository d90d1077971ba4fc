//! How Keel's AWS clients (ARC, DynamoDB, RDS, STS) find credentials, chosen by configuration:
//!
//! - [`CredentialSource::Chain`], the default: aws-config's default chain, in its order:
//!   environment variables, the shared profile (`AWS_PROFILE`), web identity, the ECS task role,
//!   the instance profile. An ECS task picks up its task role with nothing configured.
//! - [`CredentialSource::Local`]: the local stand-ins (keel-arc-endpoint, moto) only check that a
//!   request is signed, so the environment's keys if set, else fixed placeholder ones; it never
//!   probes the instance metadata service, which on a laptop costs seconds of timeouts.
//!
//! Each client is built for its own region with [`credentials`] as its provider: the chain's
//! identity is cached by the SDK and refreshed before it expires.

use std::sync::Arc;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use serde::{Deserialize, Serialize};

/// Where credentials come from (`credentials = "chain"` or `"local"` in the configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialSource {
    #[default]
    Chain,
    Local,
}

/// The provider a client built with it signs through.
pub fn credentials(source: CredentialSource) -> SharedCredentialsProvider {
    match source {
        CredentialSource::Chain => SharedCredentialsProvider::new(LazyChain::default()),
        CredentialSource::Local => SharedCredentialsProvider::new(local_credentials()),
    }
}

/// The environment's keys when set, else placeholders the local endpoints accept.
pub fn local_credentials() -> Credentials {
    match (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Ok(key), Ok(secret)) => Credentials::new(
            key,
            secret,
            std::env::var("AWS_SESSION_TOKEN").ok(),
            None,
            "environment",
        ),
        _ => Credentials::new("keel-local", "keel-local", None, None, "keel-local"),
    }
}

/// aws-config's default chain, built on first use: building it is async (it reads the profile
/// files), and Keel's clients are built in synchronous constructors.
#[derive(Debug, Default, Clone)]
struct LazyChain {
    chain: Arc<tokio::sync::OnceCell<DefaultCredentialsChain>>,
}

impl ProvideCredentials for LazyChain {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| DefaultCredentialsChain::builder().build())
                .await;
            chain.provide_credentials().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_the_source_in_kebab_case_and_defaults_to_the_chain() {
        assert_eq!(CredentialSource::default(), CredentialSource::Chain);
        let local: CredentialSource = serde_json::from_str("\"local\"").unwrap();
        assert_eq!(local, CredentialSource::Local);
        assert!(serde_json::from_str::<CredentialSource>("\"static\"").is_err());
    }

    /// The chain's first link: keys in the environment are found without any other source. (The
    /// profile, ECS and instance links need those systems; the chain's own tests cover them.)
    #[tokio::test]
    async fn the_chain_finds_keys_in_the_environment() {
        // Safe here: no other test in this crate reads the environment.
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "example-secret");
        let found = credentials(CredentialSource::Chain)
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(found.access_key_id(), "AKIDEXAMPLE");
        let local = credentials(CredentialSource::Local)
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(local.access_key_id(), "AKIDEXAMPLE");
    }
}
