//! Layered configuration: built-in defaults, then the TOML file named by `KEEL_CONFIG` (if any), then
//! `KEEL_…` environment variables, where `__` separates nesting (`KEEL_KAFKA__BROKERS`).

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

pub fn load<T: DeserializeOwned + Serialize + Default>() -> Result<T, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Ok(path) = std::env::var("KEEL_CONFIG") {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment
        .merge(Env::prefixed("KEEL_").split("__").ignore(&["config"]))
        .extract()
        .map_err(|e| ConfigError(Box::new(e)))
}
