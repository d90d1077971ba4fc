//! The console's configuration: the operations' own (`KEEL_CONFIG`, as keelctl reads it) and its
//! `[console]` table.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleConfig {
    /// Where the console listens (DESIGN section 8 fixes 127.0.0.1:8080 locally).
    pub listen: String,
    /// How long a sign-in lasts.
    pub session_minutes: u64,
    /// How often the page reads everything again, in milliseconds.
    pub refresh_ms: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            session_minutes: 8 * 60,
            refresh_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleSection {
    pub console: ConsoleConfig,
}

#[cfg(test)]
mod deployment_tests {
    use super::*;

    /// The console reads the operations' configuration and its own `[console]` table.
    #[derive(Serialize, Default)]
    struct Both {
        #[serde(flatten)]
        operations: keel_operations_live::Config,
        #[serde(flatten)]
        console: ConsoleSection,
    }

    /// The variables the deployment gives the console are settings it takes.
    #[test]
    fn it_takes_every_variable_the_deployment_gives_it() {
        keel_platform::config::assert_takes_deployment_variables::<Both>(
            env!("CARGO_MANIFEST_DIR"),
            "console",
        );
    }
}
