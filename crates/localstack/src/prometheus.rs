//! Prometheus for the local stack (Debian's `prometheus`): its configuration, derived from the
//! layout (every service of the topology in every region, and the continuous reconciler), with the
//! alert rules kept in the repository (`deploy/prometheus/alerts.yml`).

use std::path::Path;

use crate::layout::Layout;

/// Where Prometheus listens locally.
pub const LISTEN: &str = "127.0.0.1:9090";

/// `prometheus.yml` for `layout`, reading its rules from `rules`. Each process labels its own
/// metrics with `service` and `region`, so the targets carry no labels of their own.
pub fn config(layout: &Layout, rules: &Path) -> String {
    let mut targets: Vec<String> = layout
        .regions
        .iter()
        .flat_map(|region| {
            region
                .services
                .iter()
                .map(|(_, port)| format!("127.0.0.1:{port}"))
        })
        .collect();
    targets.push(layout.reconciler_listen.clone());
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "# Written by keel-local from the layout; changes are lost at the next `make up`.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         rule_files:\n  - \"{rules}\"\n\
         scrape_configs:\n  - job_name: keel\n    honor_labels: true\n    static_configs:\n      - targets: [{targets}]\n",
        rules = rules.display(),
        targets = targets.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Layout, LocalConfig};

    #[test]
    fn every_service_in_every_region_and_the_reconciler_are_scraped() {
        // The checkout's file when the test runs (the target dir is shared between clones).
        let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
        std::env::set_var(
            "KEEL_CONFIG",
            format!("{manifest}/../../deploy/local/config/keel.toml"),
        );
        let local: LocalConfig = keel_platform::config::load().unwrap();
        let layout = Layout::of(&local).unwrap();
        let config = config(&layout, Path::new("/repo/deploy/prometheus/alerts.yml"));
        for region in &layout.regions {
            for (service, port) in &region.services {
                assert!(
                    config.contains(&format!("\"127.0.0.1:{port}\"")),
                    "{} in {} is not scraped:\n{config}",
                    service.name,
                    region.name
                );
            }
        }
        assert!(config.contains(&format!("\"{}\"", layout.reconciler_listen)));
        assert!(config.contains("rule_files:\n  - \"/repo/deploy/prometheus/alerts.yml\""));
    }
}
