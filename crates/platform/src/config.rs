//! Layered configuration: built-in defaults, then the TOML files named by `KEEL_CONFIG` (if any;
//! several are separated by `:`, later ones overriding earlier ones), then `KEEL_…` environment
//! variables, where `__` separates nesting (`KEEL_KAFKA__LINGER_MS`).

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

pub fn load<T: DeserializeOwned + Serialize + Default>() -> Result<T, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Ok(paths) = std::env::var("KEEL_CONFIG") {
        for path in paths.split(':').filter(|p| !p.is_empty()) {
            figment = figment.merge(Toml::file_exact(path));
        }
    }
    figment
        .merge(Env::prefixed("KEEL_").split("__").ignore(&["config"]))
        .extract()
        .map_err(|e| ConfigError(Box::new(e)))
}
