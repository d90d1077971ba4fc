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

/// The `KEEL_…` variables a configuration of type `T` takes: one per setting of its defaults,
/// upper case, `__` between nested names (what [`load`] reads).
pub fn variables<T: Serialize + Default>() -> std::collections::BTreeSet<String> {
    fn walk(
        prefix: Option<&str>,
        value: &serde_json::Value,
        out: &mut std::collections::BTreeSet<String>,
    ) {
        if let serde_json::Value::Object(settings) = value {
            for (key, value) in settings {
                let name = match prefix {
                    None => key.to_uppercase(),
                    Some(prefix) => format!("{prefix}__{}", key.to_uppercase()),
                };
                out.insert(format!("KEEL_{name}"));
                walk(Some(&name), value, out);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    if let Ok(defaults) = serde_json::to_value(T::default()) {
        walk(None, &defaults, &mut out);
    }
    out
}

/// For a process's test: fails unless a configuration of type `T` takes every variable the
/// deployment gives `process` (`deploy/terraform/keel-names.json`'s `variables_by_process`).
/// `crate_dir` is the calling crate's `CARGO_MANIFEST_DIR`, two folders below the repository's
/// root (`crates/…`, `services/…`). `KEEL_CONFIG` (this module's own) and `PGPASSWORD` (libpq's and
/// sqlx's) are read outside the configuration.
pub fn assert_takes_deployment_variables<T: Serialize + Default>(crate_dir: &str, process: &str) {
    let file = std::path::Path::new(crate_dir).join("../../deploy/terraform/keel-names.json");
    let names: serde_json::Value = std::fs::read_to_string(&file)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| panic!("{} cannot be read", file.display()));
    let given = names["variables_by_process"][process]
        .as_array()
        .unwrap_or_else(|| panic!("{} gives {process} no variables", file.display()));
    let taken = variables::<T>();
    let not_taken: Vec<&str> = given
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|v| !matches!(*v, "KEEL_CONFIG" | "PGPASSWORD") && !taken.contains(*v))
        .collect();
    assert!(
        not_taken.is_empty(),
        "{process} is given variables its configuration does not take: {not_taken:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct Example {
        region: String,
        kafka: Nested,
    }

    #[derive(Serialize, Default)]
    struct Nested {
        linger_ms: u32,
    }

    #[test]
    fn a_settings_variable_is_its_path_in_upper_case_joined_by_double_underscores() {
        let variables = variables::<Example>();
        assert_eq!(
            variables.into_iter().collect::<Vec<_>>(),
            ["KEEL_KAFKA", "KEEL_KAFKA__LINGER_MS", "KEEL_REGION"]
        );
    }
}
