//! Where each application processes now, from one reading of the routing controls.

use std::collections::BTreeMap;

use keel_routing::{App, Gate};

use crate::ports::{ControlsError, RoutingControls};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActiveError {
    #[error("cannot read the routing controls: {0}")]
    Controls(#[from] ControlsError),
    #[error("{0} is not processing in exactly one region")]
    NotActive(App),
}

/// The region where each of `apps` processes now.
pub async fn active_regions(
    controls: &dyn RoutingControls,
    regions: &[String],
    apps: &[App],
) -> Result<BTreeMap<App, String>, ActiveError> {
    let states = controls.states().await?;
    apps.iter()
        .map(|app| {
            states
                .active_region(*app, Gate::Processing, regions)
                .map(|region| (*app, region.to_owned()))
                .ok_or(ActiveError::NotActive(*app))
        })
        .collect()
}
