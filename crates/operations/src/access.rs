//! Who may operate Keel (DESIGN section 9): a registry of operators, each with a role and an argon2
//! hash of their password. Viewers may look; only operators may act. The console and keelctl both
//! sign in and check here, so the rule is the same wherever an action starts.
//!
//! The registry is a TOML file of `[[operator]]` tables (`name`, `role`, `password_hash`, a PHC
//! string such as `keelctl operators hash` prints) and, on AWS, `[[principal]]` tables (`arn`,
//! `name`, `role`): an IAM principal, as the caller's identity names it, is that operator with no
//! password asked. The file is read by the caller; this module only parses it and checks.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May look at everything and change nothing.
    Viewer,
    /// May also rotate, fail over, re-protect, set routing controls and start or stop the generator.
    Operator,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        })
    }
}

/// Someone signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub name: String,
    pub role: Role,
}

impl Operator {
    /// Whether this operator may change anything: a viewer is refused, by name.
    pub fn may_act(&self) -> Result<(), Denied> {
        match self.role {
            Role::Operator => Ok(()),
            Role::Viewer => Err(Denied {
                operator: self.name.clone(),
            }),
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.role)
    }
}

/// A viewer asked to act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operator} is a viewer: only an operator may change anything")]
pub struct Denied {
    pub operator: String,
}

/// A sign-in that did not succeed. Which of name and password was wrong is not said, so that
/// nobody learns the operators' names by trying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown operator or wrong password")]
pub struct SignInRejected;

/// A registry that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the operator registry is not valid: {0}")]
    Invalid(#[from] toml::de::Error),
    #[error("operator {name:?}: password_hash is not an argon2 PHC string ({detail})")]
    BadHash { name: String, detail: String },
    #[error("operator {0:?} is listed twice")]
    Duplicate(String),
    #[error("operator name {0:?} is not a name (letters, digits, '.', '_', '-', 1 to 64 of them)")]
    BadName(String),
    #[error("the operator registry lists no operator")]
    Empty,
}

/// The caller's AWS identity is no operator's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{arn} is no operator's identity (the registry's [[principal]] tables)")]
pub struct UnknownPrincipal {
    pub arn: String,
}

#[derive(Deserialize)]
struct File {
    #[serde(rename = "operator", default)]
    operators: Vec<Entry>,
    #[serde(rename = "principal", default)]
    principals: Vec<PrincipalEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    arn: String,
    name: String,
    role: Role,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    role: Role,
    password_hash: String,
}

/// The operators who may sign in.
#[derive(Debug, Clone)]
pub struct Registry {
    operators: BTreeMap<String, (Role, String)>,
    principals: BTreeMap<String, Operator>,
}

impl Registry {
    /// Parses a registry file's text; every entry must be well formed, or none is used.
    pub fn parse(text: &str) -> Result<Registry, RegistryError> {
        let file: File = toml::from_str(text)?;
        if file.operators.is_empty() && file.principals.is_empty() {
            return Err(RegistryError::Empty);
        }
        let mut principals = BTreeMap::new();
        for entry in file.principals {
            if !is_name(&entry.name) {
                return Err(RegistryError::BadName(entry.name));
            }
            let operator = Operator {
                name: entry.name,
                role: entry.role,
            };
            if principals.insert(entry.arn.clone(), operator).is_some() {
                return Err(RegistryError::Duplicate(entry.arn));
            }
        }
        let mut operators = BTreeMap::new();
        for entry in file.operators {
            if !is_name(&entry.name) {
                return Err(RegistryError::BadName(entry.name));
            }
            keel_security::check_hash(&entry.password_hash).map_err(|detail| {
                RegistryError::BadHash {
                    name: entry.name.clone(),
                    detail,
                }
            })?;
            if operators
                .insert(entry.name.clone(), (entry.role, entry.password_hash))
                .is_some()
            {
                return Err(RegistryError::Duplicate(entry.name));
            }
        }
        Ok(Registry {
            operators,
            principals,
        })
    }

    /// The operator whose AWS identity is `arn` (the caller's, as STS names it). A role's
    /// session (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`, what an ECS task, SSO or
    /// `assume-role` gets) is the operator registered for the role (`arn:aws:iam::ACCOUNT:role/
    /// [PATH/]ROLE`; STS leaves the path out), named with the session so the audit trail tells
    /// sessions apart.
    pub fn principal(&self, arn: &str) -> Result<Operator, UnknownPrincipal> {
        if let Some(operator) = self.principals.get(arn) {
            return Ok(operator.clone());
        }
        let unknown = || UnknownPrincipal {
            arn: arn.to_owned(),
        };
        let session = AssumedRole::parse(arn).ok_or_else(unknown)?;
        let role_prefix = format!("arn:{}:iam::{}:role/", session.partition, session.account);
        self.principals
            .iter()
            .find(|(registered, _)| {
                registered
                    .strip_prefix(&role_prefix)
                    .is_some_and(|path_and_name| {
                        path_and_name.rsplit('/').next() == Some(session.role)
                    })
            })
            .map(|(_, operator)| Operator {
                name: format!("{}@{}", operator.name, session.session),
                role: operator.role,
            })
            .ok_or_else(unknown)
    }

    /// The operator `name`, if `password` is theirs. An unknown name costs the same time as a
    /// wrong password.
    pub fn authenticate(&self, name: &str, password: &str) -> Result<Operator, SignInRejected> {
        let Some((role, hash)) = self.operators.get(name) else {
            keel_security::verify_unknown(password);
            return Err(SignInRejected);
        };
        if keel_security::verify(hash, password) {
            Ok(Operator {
                name: name.to_owned(),
                role: *role,
            })
        } else {
            Err(SignInRejected)
        }
    }

    /// Every operator, by name.
    pub fn operators(&self) -> impl Iterator<Item = Operator> + '_ {
        self.operators.iter().map(|(name, (role, _))| Operator {
            name: name.clone(),
            role: *role,
        })
    }
}

/// An argon2id hash of `password` with a fresh salt, as a PHC string for the registry.
pub fn hash_password(password: &str) -> String {
    keel_security::hash(password)
}

/// `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION`, taken apart.
struct AssumedRole<'a> {
    partition: &'a str,
    account: &'a str,
    role: &'a str,
    session: &'a str,
}

impl<'a> AssumedRole<'a> {
    fn parse(arn: &'a str) -> Option<Self> {
        let mut parts = arn.splitn(6, ':');
        let (prefix, partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if prefix != "arn" || service != "sts" || !region.is_empty() || account.is_empty() {
            return None;
        }
        let mut resource = resource.splitn(3, '/');
        if resource.next()? != "assumed-role" {
            return None;
        }
        let (role, session) = (resource.next()?, resource.next()?);
        (!role.is_empty() && !session.is_empty()).then_some(AssumedRole {
            partition,
            account,
            role,
            session,
        })
    }
}

fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::parse(&format!(
            "[[operator]]\nname = \"ada\"\nrole = \"operator\"\npassword_hash = \"{}\"\n\
             [[operator]]\nname = \"vic\"\nrole = \"viewer\"\npassword_hash = \"{}\"\n",
            hash_password("ada's secret"),
            hash_password("vic's secret"),
        ))
        .unwrap()
    }

    #[test]
    fn an_operator_signs_in_with_their_own_password_only() {
        let registry = registry();
        let ada = registry.authenticate("ada", "ada's secret").unwrap();
        assert_eq!(ada.role, Role::Operator);
        assert_eq!(ada.may_act(), Ok(()));
        assert_eq!(
            registry.authenticate("ada", "vic's secret"),
            Err(SignInRejected)
        );
        assert_eq!(
            registry.authenticate("bob", "ada's secret"),
            Err(SignInRejected)
        );
        assert_eq!(registry.authenticate("ada", ""), Err(SignInRejected));
    }

    #[test]
    fn a_viewer_signs_in_but_may_not_act() {
        let vic = registry().authenticate("vic", "vic's secret").unwrap();
        assert_eq!(
            vic.may_act().unwrap_err().to_string(),
            "vic is a viewer: only an operator may change anything"
        );
    }

    #[test]
    fn a_registry_with_a_bad_entry_is_refused_whole() {
        let hash = hash_password("x");
        let cases = [
            (String::new(), "lists no operator"),
            (
                "[[operator]]\nname = \"a\"\nrole = \"operator\"\npassword_hash = \"plaintext\"\n"
                    .to_owned(),
                "not an argon2 PHC string",
            ),
            (
                format!("[[operator]]\nname = \"a\"\nrole = \"admin\"\npassword_hash = \"{hash}\"\n"),
                "not valid",
            ),
            (
                format!(
                    "[[operator]]\nname = \"a\"\nrole = \"viewer\"\npassword_hash = \"{hash}\"\n\
                     [[operator]]\nname = \"a\"\nrole = \"operator\"\npassword_hash = \"{hash}\"\n"
                ),
                "listed twice",
            ),
            (
                format!("[[operator]]\nname = \"a b\"\nrole = \"viewer\"\npassword_hash = \"{hash}\"\n"),
                "is not a name",
            ),
            (
                format!("[[operator]]\nname = \"a\"\nrole = \"viewer\"\npassword = \"x\"\npassword_hash = \"{hash}\"\n"),
                "not valid",
            ),
        ];
        for (text, expected) in cases {
            let error = Registry::parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn an_aws_principal_is_its_operator_and_no_other_is_anyone() {
        let registry = Registry::parse(
            "[[principal]]\narn = \"arn:aws:iam::1:role/keel-sre\"\nname = \"sre\"\nrole = \"operator\"\n",
        )
        .unwrap();
        assert_eq!(
            registry.principal("arn:aws:iam::1:role/keel-sre").unwrap(),
            Operator {
                name: "sre".to_owned(),
                role: Role::Operator
            }
        );
        assert!(registry.principal("arn:aws:iam::1:role/other").is_err());
        assert_eq!(registry.authenticate("sre", ""), Err(SignInRejected));
    }

    /// keelctl as an ECS task, or an SRE through SSO, calls as a session of a role.
    #[test]
    fn a_session_of_a_registered_role_is_its_operator_named_with_the_session() {
        let registry = Registry::parse(
            "[[principal]]\narn = \"arn:aws:iam::111:role/ops/keel-keelctl\"\nname = \"keelctl-task\"\nrole = \"operator\"\n",
        )
        .unwrap();
        assert_eq!(
            registry
                .principal("arn:aws:sts::111:assumed-role/keel-keelctl/4f1c2a9e")
                .unwrap(),
            Operator {
                name: "keelctl-task@4f1c2a9e".to_owned(),
                role: Role::Operator
            }
        );
        for other in [
            // Another account, another role, a role whose name only ends the same way.
            "arn:aws:sts::222:assumed-role/keel-keelctl/4f1c2a9e",
            "arn:aws:sts::111:assumed-role/keel-console/4f1c2a9e",
            "arn:aws:sts::111:assumed-role/x-keel-keelctl/4f1c2a9e",
            // Not a session: no session name, or not STS.
            "arn:aws:sts::111:assumed-role/keel-keelctl",
            "arn:aws:iam::111:user/keel-keelctl",
            "arn:aws-cn:sts::111:assumed-role/keel-keelctl/4f1c2a9e",
        ] {
            assert!(registry.principal(other).is_err(), "{other}");
        }
    }

    #[test]
    fn the_same_password_hashes_differently_each_time() {
        let (a, b) = (hash_password("same"), hash_password("same"));
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(keel_security::verify(&a, "same") && keel_security::verify(&b, "same"));
    }
}
