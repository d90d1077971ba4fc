use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_route53recoverycluster::config::Region;
use aws_sdk_route53recoverycluster::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53recoverycluster::types::{RoutingControlState, UpdateRoutingControlStateEntry};
use aws_sdk_route53recoverycluster::Client;
use keel_routing::ControlStates;

use crate::ControlConfig;

/// One routing control as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingControl {
    pub arn: String,
    pub name: String,
    pub control_panel: String,
    pub on: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ArcError {
    #[error("no ARC endpoint answered: {}", .0.join("; "))]
    Unreachable(Vec<String>),
    /// A safety rule refused the change (ARC's ConflictException); nothing changed.
    #[error("refused by the cluster: {0}")]
    Refused(String),
    #[error("no routing control named {0}")]
    UnknownControl(String),
    /// The cluster answered that the request is wrong (validation, access); another endpoint would
    /// answer the same.
    #[error("{code}: {message}")]
    Rejected { code: String, message: String },
}

/// What to do with one endpoint's failure.
enum Failure {
    /// Try the next endpoint: this one is down, slow, throttled or failing.
    NextEndpoint(String),
    /// The cluster's answer; every endpoint would give the same.
    Answer(ArcError),
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug + 'static>(
    endpoint: &str,
    error: SdkError<E, R>,
) -> Failure {
    let code = error.code().map(str::to_owned);
    let message = error.message().unwrap_or_default().to_owned();
    match code.as_deref() {
        Some("ConflictException") => Failure::Answer(ArcError::Refused(message)),
        Some("ResourceNotFoundException") => Failure::Answer(ArcError::UnknownControl(message)),
        Some(
            code @ ("ValidationException"
            | "AccessDeniedException"
            | "ServiceLimitExceededException"),
        ) => Failure::Answer(ArcError::Rejected {
            code: code.to_owned(),
            message,
        }),
        _ => Failure::NextEndpoint(format!(
            "{endpoint}: {}",
            aws_sdk_route53recoverycluster::error::DisplayErrorContext(&error)
        )),
    }
}

/// The ARC cluster, through the real SDK, one client per endpoint.
pub struct ArcClient {
    endpoints: Vec<(String, Client)>,
    /// The endpoint that answered last; the next call starts there.
    preferred: AtomicUsize,
}

impl ArcClient {
    pub fn new(config: &ControlConfig) -> ArcClient {
        let credentials = keel_aws::credentials(config.credentials);
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let endpoints = config
            .endpoints
            .iter()
            .map(|endpoint| {
                let sdk_config = aws_sdk_route53recoverycluster::Config::builder()
                    .region(Region::new(
                        endpoint.region(&config.signing_region).to_owned(),
                    ))
                    .endpoint_url(endpoint.url())
                    .credentials_provider(credentials.clone())
                    // One attempt per endpoint: moving to the next endpoint is the retry.
                    .retry_config(
                        aws_sdk_route53recoverycluster::config::retry::RetryConfig::disabled(),
                    )
                    .timeout_config(
                        aws_sdk_route53recoverycluster::config::timeout::TimeoutConfig::builder()
                            .connect_timeout(timeout)
                            .operation_timeout(timeout)
                            .build(),
                    )
                    .build();
                (endpoint.url().to_owned(), Client::from_conf(sdk_config))
            })
            .collect();
        ArcClient {
            endpoints,
            preferred: AtomicUsize::new(0),
        }
    }

    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|(url, _)| url.as_str())
    }

    /// Runs `call` against each endpoint in turn, from the preferred one, until one answers.
    async fn each_endpoint<T, F, Fut>(&self, mut call: F) -> Result<T, ArcError>
    where
        F: FnMut(String, Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let count = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for step in 0..count {
            let index = (start + step) % count;
            let (url, client) = &self.endpoints[index];
            match call(url.clone(), client.clone()).await {
                Ok(value) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(Failure::Answer(error)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Err(error);
                }
                Err(Failure::NextEndpoint(why)) => {
                    tracing::debug!(endpoint = url, why, "ARC endpoint failed; trying the next");
                    failures.push(why);
                }
            }
        }
        Err(ArcError::Unreachable(failures))
    }

    /// Every routing control, with its state (all pages).
    pub async fn list(&self) -> Result<Vec<RoutingControl>, ArcError> {
        self.each_endpoint(|url, client| async move {
            let mut controls = Vec::new();
            let mut token = None;
            loop {
                let page = client
                    .list_routing_controls()
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| classify(&url, e))?;
                for control in page.routing_controls() {
                    controls.push(RoutingControl {
                        arn: control.routing_control_arn().unwrap_or_default().to_owned(),
                        name: control
                            .routing_control_name()
                            .unwrap_or_default()
                            .to_owned(),
                        control_panel: control.control_panel_name().unwrap_or_default().to_owned(),
                        on: control.routing_control_state() == Some(&RoutingControlState::On),
                    });
                }
                match page.next_token() {
                    Some(next) => token = Some(next.to_owned()),
                    None => return Ok(controls),
                }
            }
        })
        .await
    }

    /// Every control's state, by name.
    pub async fn states(&self) -> Result<ControlStates, ArcError> {
        let controls = self.list().await?;
        Ok(ControlStates {
            states: controls.into_iter().map(|c| (c.name, c.on)).collect(),
        })
    }

    async fn arn_of(&self, name: &str) -> Result<String, ArcError> {
        self.list()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.arn)
            .ok_or_else(|| ArcError::UnknownControl(name.to_owned()))
    }

    /// One control's state, read with GetRoutingControlState.
    pub async fn get(&self, name: &str) -> Result<bool, ArcError> {
        let arn = self.arn_of(name).await?;
        self.each_endpoint(|url, client| {
            let arn = arn.clone();
            async move {
                let output = client
                    .get_routing_control_state()
                    .routing_control_arn(arn)
                    .send()
                    .await
                    .map_err(|e| classify(&url, e))?;
                Ok(output.routing_control_state() == &RoutingControlState::On)
            }
        })
        .await
    }

    /// Sets controls by name, all at once or not at all (the cluster checks its safety rules against
    /// the state after every change). `overrides` names safety rules to break glass on.
    pub async fn set(
        &self,
        changes: &[(&str, bool)],
        overrides: &[String],
    ) -> Result<(), ArcError> {
        let controls = self.list().await?;
        let mut entries = Vec::with_capacity(changes.len());
        for (name, on) in changes {
            let control = controls
                .iter()
                .find(|c| c.name == *name)
                .ok_or_else(|| ArcError::UnknownControl((*name).to_owned()))?;
            entries.push((control.arn.clone(), *on));
        }
        let state = |on: bool| {
            if on {
                RoutingControlState::On
            } else {
                RoutingControlState::Off
            }
        };
        self.each_endpoint(|url, client| {
            let entries = entries.clone();
            let overrides = overrides.to_vec();
            async move {
                if let [(arn, on)] = entries.as_slice() {
                    client
                        .update_routing_control_state()
                        .routing_control_arn(arn)
                        .routing_control_state(state(*on))
                        .set_safety_rules_to_override(Some(overrides))
                        .send()
                        .await
                        .map_err(|e| classify(&url, e))?;
                } else {
                    let entries = entries
                        .iter()
                        .map(|(arn, on)| {
                            UpdateRoutingControlStateEntry::builder()
                                .routing_control_arn(arn)
                                .routing_control_state(state(*on))
                                .build()
                                .expect("both fields are set")
                        })
                        .collect();
                    client
                        .update_routing_control_states()
                        .set_update_routing_control_state_entries(Some(entries))
                        .set_safety_rules_to_override(Some(overrides))
                        .send()
                        .await
                        .map_err(|e| classify(&url, e))?;
                }
                Ok(())
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Endpoint;

    /// AWS lists a cluster's endpoints each with its region, and each must be signed for its own.
    #[test]
    fn each_endpoint_is_signed_for_its_own_region() {
        let config: ControlConfig = toml::from_str(
            r#"
            signing_region = "us-west-2"
            endpoints = [
                "http://127.0.0.1:18301",
                { url = "https://host-a.us-east-1.example.aws/v1", region = "us-east-1" },
                { url = "https://host-b.ap-southeast-2.example.aws/v1", region = "ap-southeast-2" },
            ]
            "#,
        )
        .unwrap();
        assert_eq!(
            config.endpoints[1],
            Endpoint::InRegion {
                url: "https://host-a.us-east-1.example.aws/v1".into(),
                region: "us-east-1".into()
            }
        );
        let client = ArcClient::new(&config);
        let regions: Vec<(String, String)> = client
            .endpoints
            .iter()
            .map(|(url, client)| {
                let region = client.config().region().unwrap().to_string();
                (url.clone(), region)
            })
            .collect();
        assert_eq!(
            regions,
            [
                ("http://127.0.0.1:18301", "us-west-2"),
                ("https://host-a.us-east-1.example.aws/v1", "us-east-1"),
                (
                    "https://host-b.ap-southeast-2.example.aws/v1",
                    "ap-southeast-2"
                ),
            ]
            .map(|(u, r)| (u.to_owned(), r.to_owned()))
        );
    }
}
