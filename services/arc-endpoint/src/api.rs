//! The Route 53 ARC cluster data-plane API as the AWS SDKs speak it: AWS JSON 1.0, `POST /` with the
//! operation in `X-Amz-Target: ToggleCustomerAPI.<Operation>`, errors as `{"__type", "message", ...}`
//! with the HTTP status ARC uses for each type. This is the one place errors become responses.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cluster::{Refusal, SharedState};

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

#[derive(Debug)]
pub enum ApiError {
    AccessDenied(String),
    Validation {
        message: String,
        field: Option<String>,
    },
    NotFound {
        message: String,
        resource_id: String,
    },
    Conflict {
        message: String,
        resource_id: String,
    },
    Unavailable(String),
    UnknownOperation(String),
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match &refusal {
            Refusal::UnknownControl(arn) => ApiError::NotFound {
                message: refusal.to_string(),
                resource_id: arn.clone(),
            },
            Refusal::SafetyRule { arn, .. } => ApiError::Conflict {
                message: refusal.to_string(),
                resource_id: arn.clone(),
            },
            Refusal::UnknownRule(_) => ApiError::Validation {
                message: refusal.to_string(),
                field: Some("SafetyRulesToOverride".to_owned()),
            },
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(error: std::io::Error) -> Self {
        // The state could not be read or written: the caller should try another endpoint.
        tracing::error!(%error, "cluster state unavailable");
        ApiError::Unavailable(format!("cluster state unavailable: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, body) = match self {
            ApiError::AccessDenied(message) => (
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                json!({"message": message}),
            ),
            ApiError::Validation { message, field } => (
                StatusCode::BAD_REQUEST,
                "ValidationException",
                json!({
                    "message": message,
                    "reason": "fieldValidationFailed",
                    "fields": field.map(|name| vec![json!({"name": name, "message": "invalid"})]).unwrap_or_default(),
                }),
            ),
            ApiError::NotFound {
                message,
                resource_id,
            } => (
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                json!({"message": message, "resourceId": resource_id, "resourceType": "RoutingControl"}),
            ),
            ApiError::Conflict {
                message,
                resource_id,
            } => (
                StatusCode::CONFLICT,
                "ConflictException",
                json!({"message": message, "resourceId": resource_id, "resourceType": "SafetyRule"}),
            ),
            ApiError::Unavailable(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "EndpointTemporarilyUnavailableException",
                json!({"message": message}),
            ),
            ApiError::UnknownOperation(target) => (
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                json!({"message": format!("unknown operation {target:?}")}),
            ),
        };
        let mut body = body;
        body["__type"] = json!(kind);
        (
            status,
            [("content-type", CONTENT_TYPE), ("x-amzn-errortype", kind)],
            body.to_string(),
        )
            .into_response()
    }
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn state_name(on: bool) -> &'static str {
    if on {
        "On"
    } else {
        "Off"
    }
}

fn parse_state(value: &str) -> Result<bool, ApiError> {
    match value {
        "On" => Ok(true),
        "Off" => Ok(false),
        other => Err(ApiError::Validation {
            message: format!("RoutingControlState must be On or Off, not {other:?}"),
            field: Some("RoutingControlState".to_owned()),
        }),
    }
}

fn decode<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|error| ApiError::Validation {
        message: format!("request body does not fit the operation: {error}"),
        field: None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetInput {
    routing_control_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListInput {
    control_panel_arn: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    routing_control_arn: String,
    routing_control_state: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateInput {
    #[serde(flatten)]
    entry: Entry,
    #[serde(default)]
    safety_rules_to_override: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateManyInput {
    update_routing_control_state_entries: Vec<Entry>,
    #[serde(default)]
    safety_rules_to_override: Vec<String>,
}

pub async fn handle(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    match dispatch(state, &headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn dispatch(
    state: SharedState,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Requests are SigV4-signed by the SDK; the local endpoint checks a signature is there, not
    // what it signs (there are no local credentials to check it against).
    if !headers.contains_key("authorization") {
        return Err(ApiError::AccessDenied(
            "the request is not signed".to_owned(),
        ));
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let operation = target
        .strip_prefix("ToggleCustomerAPI.")
        .unwrap_or(&target)
        .to_owned();
    tokio::task::spawn_blocking(move || match operation.as_str() {
        "GetRoutingControlState" => get(&state, decode(&body)?),
        "ListRoutingControls" => list(&state, decode(&body)?),
        "UpdateRoutingControlState" => {
            let input: UpdateInput = decode(&body)?;
            update(&state, vec![input.entry], input.safety_rules_to_override)
        }
        "UpdateRoutingControlStates" => {
            let input: UpdateManyInput = decode(&body)?;
            update(
                &state,
                input.update_routing_control_state_entries,
                input.safety_rules_to_override,
            )
        }
        _ => Err(ApiError::UnknownOperation(target)),
    })
    .await
    .map_err(|error| ApiError::Unavailable(error.to_string()))?
}

fn get(state: &SharedState, input: GetInput) -> Result<Response, ApiError> {
    let cluster = state.read()?;
    let control = cluster
        .control(&input.routing_control_arn)
        .ok_or_else(|| Refusal::UnknownControl(input.routing_control_arn.clone()))?;
    Ok(ok(json!({
        "RoutingControlArn": control.arn,
        "RoutingControlName": control.name,
        "RoutingControlState": state_name(control.on),
    })))
}

fn list(state: &SharedState, input: ListInput) -> Result<Response, ApiError> {
    let max = input.max_results.unwrap_or(500);
    if !(1..=1000).contains(&max) {
        return Err(ApiError::Validation {
            message: format!("MaxResults must be between 1 and 1000, not {max}"),
            field: Some("MaxResults".to_owned()),
        });
    }
    let start = match &input.next_token {
        None => 0,
        Some(token) => token.parse::<usize>().map_err(|_| ApiError::Validation {
            message: format!("NextToken {token:?} was not issued by this cluster"),
            field: Some("NextToken".to_owned()),
        })?,
    };
    let cluster = state.read()?;
    let matching: Vec<_> = cluster
        .controls
        .iter()
        .filter(|c| {
            input
                .control_panel_arn
                .as_ref()
                .is_none_or(|panel| &c.control_panel_arn == panel)
        })
        .collect();
    let end = (start + max as usize).min(matching.len());
    let page: Vec<Value> = matching
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({
                "ControlPanelArn": c.control_panel_arn,
                "ControlPanelName": c.control_panel_name,
                "RoutingControlArn": c.arn,
                "RoutingControlName": c.name,
                "RoutingControlState": state_name(c.on),
                "Owner": "000000000000",
            })
        })
        .collect();
    let mut body = json!({ "RoutingControls": page });
    if end < matching.len() {
        body["NextToken"] = json!(end.to_string());
    }
    Ok(ok(body))
}

fn update(
    state: &SharedState,
    entries: Vec<Entry>,
    overrides: Vec<String>,
) -> Result<Response, ApiError> {
    if entries.is_empty() {
        return Err(ApiError::Validation {
            message: "no routing control to update".to_owned(),
            field: Some("UpdateRoutingControlStateEntries".to_owned()),
        });
    }
    let changes = entries
        .into_iter()
        .map(|e| {
            Ok((
                e.routing_control_arn,
                parse_state(&e.routing_control_state)?,
            ))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    state.modify(|cluster| cluster.update(&changes, &overrides))??;
    tracing::info!(?changes, ?overrides, "routing controls updated");
    Ok(ok(json!({})))
}
