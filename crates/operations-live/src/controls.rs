//! The routing-controls port over ARC (keel-arc's client, which tries each cluster endpoint).

use async_trait::async_trait;
use keel_arc::{ArcClient, ArcError};
use keel_operations::ports::{ControlsError, RoutingControls};

use keel_routing::ControlStates;

pub struct ArcControls(pub ArcClient);

impl ArcControls {
    pub fn new(config: &crate::config::Config) -> Self {
        ArcControls(ArcClient::new(&config.control))
    }
}

fn from_arc(error: ArcError) -> ControlsError {
    match error {
        ArcError::Refused(why) => ControlsError::Refused(why),
        ArcError::Unreachable(_) => ControlsError::Unreachable(error.to_string()),
        ArcError::UnknownControl(_) | ArcError::Rejected { .. } => {
            ControlsError::Rejected(error.to_string())
        }
    }
}

#[async_trait]
impl RoutingControls for ArcControls {
    async fn states(&self) -> Result<ControlStates, ControlsError> {
        self.0.states().await.map_err(from_arc)
    }

    async fn set(
        &self,
        changes: &[(String, bool)],
        overrides: &[String],
    ) -> Result<(), ControlsError> {
        let changes: Vec<(&str, bool)> = changes.iter().map(|(n, on)| (n.as_str(), *on)).collect();
        self.0.set(&changes, overrides).await.map_err(from_arc)
    }
}
