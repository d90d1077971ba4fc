//! Who runs a command that changes Keel: an operator of the registry (`[operators] registry`).
//! Locally (`identity = "registry"`) named by `--operator` or `KEEL_OPERATOR`, with the password
//! from `KEEL_OPERATOR_PASSWORD` or, on a terminal, a prompt; on AWS (`identity = "aws"`) the
//! caller's identity as STS names it, mapped by the registry's `[[principal]]` tables. Every such
//! command is carried out through the audit trail.

use std::future::Future;
use std::io::IsTerminal;

use keel_operations::ports::SystemClock;
use keel_operations::{Acted, Action, Auditor, Channel, Operator, Outcome};
use keel_operations_live::{Config, DynamoStore, IdentitySource};

use crate::error::Error;

/// A signed-in operator and the trail their actions go to.
pub struct Acting {
    pub operator: Operator,
    store: DynamoStore,
}

impl Acting {
    /// Signs `name` in against the registry; a refused sign-in is recorded in the trail.
    pub async fn sign_in(config: &Config, name: Option<&str>) -> Result<Acting, Error> {
        if config.operators.identity == IdentitySource::Aws {
            return Self::from_aws(config).await;
        }
        let name = name.ok_or(Error::NoOperator)?;
        let registry = config.operators.registry()?;
        let password = password(name)?;
        let store = DynamoStore::new(&config.runbook);
        store.ensure_table().await?;
        match registry.authenticate(name, &password) {
            Ok(operator) => Ok(Acting { operator, store }),
            Err(rejected) => {
                auditor(&store).sign_in(name, false).await?;
                Err(Error::SignIn(rejected))
            }
        }
    }

    /// The operator the caller's AWS identity is; an identity that is no operator's is refused,
    /// and recorded under its ARN.
    async fn from_aws(config: &Config) -> Result<Acting, Error> {
        let registry = config.operators.registry()?;
        let arn = config
            .operators
            .caller_arn(config.runbook.credentials)
            .await?;
        let store = DynamoStore::new(&config.runbook);
        store.ensure_table().await?;
        match registry.principal(&arn) {
            Ok(operator) => Ok(Acting { operator, store }),
            Err(unknown) => {
                auditor(&store).sign_in(&arn, false).await?;
                Err(Error::UnknownPrincipal(unknown))
            }
        }
    }

    /// Carries out `work` as this operator's `action`, recorded before and after.
    pub async fn act<T>(
        &self,
        action: Action,
        work: impl Future<Output = Result<T, Error>>,
        summary: impl FnOnce(&T) -> String,
    ) -> Result<T, Error> {
        auditor(&self.store)
            .act(&self.operator, action, work, |result| {
                Outcome::of(result, summary, Error::is_refusal)
            })
            .await
            .map_err(|acted| match acted {
                Acted::Denied(denied) => Error::Denied(denied),
                Acted::Unrecorded(error) => Error::Unrecorded(error),
                Acted::Failed(error) => error,
            })
    }

    /// Who holds a runbook lock this operator takes.
    pub fn holder(&self) -> String {
        format!(
            "{} with keelctl pid {} on {}",
            self.operator.name,
            std::process::id(),
            std::env::var("HOSTNAME").unwrap_or_else(|_| "this host".to_owned())
        )
    }
}

fn auditor(store: &DynamoStore) -> Auditor<'_> {
    Auditor {
        trail: store,
        clock: &SystemClock,
        channel: Channel::Keelctl,
    }
}

/// `KEEL_OPERATOR_PASSWORD`, or asked for on the terminal (never a flag: it would show in `ps`).
fn password(name: &str) -> Result<String, Error> {
    if let Ok(password) = std::env::var("KEEL_OPERATOR_PASSWORD") {
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::NoPassword);
    }
    rpassword::prompt_password(format!("password for {name}: ")).map_err(|_| Error::NoPassword)
}

/// `keelctl operators hash`: an argon2 hash of a password read from stdin or the terminal.
pub fn hash_from_input() -> Result<String, Error> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("password to hash: ").map_err(|_| Error::NoPassword)?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|_| Error::NoPassword)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        return Err(Error::NoPassword);
    }
    Ok(keel_operations::access::hash_password(&password))
}
