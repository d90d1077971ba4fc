//! The runbook lock, the journals and the reconciliation audit, in one DynamoDB table through
//! `aws-sdk-dynamodb` (a DynamoDB global table on AWS, so it outlives either region; moto locally).
//!
//! Items, by partition key `pk` and sort key `sk`:
//! - `lock#{app}` / `lock`: the run that holds `app`'s runbook lock. Taken with a conditional put
//!   (absent, or already ours), released with a conditional delete: two operators cannot both run.
//! - `run#{run_id}` / `journal`: the run's journal as JSON, with a version that every save checks,
//!   so a run that lost its lock cannot overwrite the journal of the one that took it.
//! - `audit#{run_id}` / `run`: a reconciliation run's summary; `audit#{run_id}` / `{hop}#{id}`: one
//!   item per replayed or restored message.
//! - `actions` / `{begun at}#{uuid}`: one operator action (who, what, when, from where, outcome) as
//!   JSON; the trail reads newest first.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::Region;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use keel_operations::ports::{AuditTrail, RunbookStore, StoreError};
use keel_operations::AuditEntry;
use keel_rotation::Journal;
use keel_routing::App;
use serde::{Deserialize, Serialize};

/// The table's keys, both strings (Terraform creates the table with them on AWS).
pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";

/// The `[runbook]` table of keelctl's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RunbookConfig {
    /// The DynamoDB endpoint; empty for AWS's own in `dynamodb_region`.
    pub dynamodb_endpoint: String,
    pub dynamodb_region: String,
    pub table: String,
    /// How long one step may take to see its outcome before the run stops (resumable).
    pub step_timeout_seconds: u64,
    /// How many rounds of reconcile-and-replay before the step gives up on the gaps left.
    pub reconcile_rounds: u32,
    /// How far back the Reconcile step compares.
    pub reconcile_window_seconds: f64,
    /// The local stack's database operations (stop, rebuild as a standby) work on the cluster in
    /// `{state_dir}/{region}/{tm|st}-postgres`. Empty: `$KEEL_STATE`, else `/var/tmp/keel-$USER`,
    /// as `make up` lays it out.
    pub state_dir: String,
    /// Where the DynamoDB, RDS and STS clients' credentials come from (`chain`: aws-config's;
    /// `local`: the stand-ins').
    pub credentials: keel_aws::CredentialSource,
    /// Which databases the runbook moves: `local` clusters or `aurora` global databases.
    pub databases: crate::databases::DatabaseKind,
}

impl Default for RunbookConfig {
    fn default() -> Self {
        Self {
            dynamodb_endpoint: "http://127.0.0.1:18400".to_owned(),
            dynamodb_region: "us-east-1".to_owned(),
            table: "keel-runbooks".to_owned(),
            step_timeout_seconds: 60,
            reconcile_rounds: 5,
            reconcile_window_seconds: 3600.0,
            state_dir: String::new(),
            credentials: keel_aws::CredentialSource::default(),
            databases: crate::databases::DatabaseKind::default(),
        }
    }
}

/// One audited repair: which hop, which message, what was done.
#[derive(Debug, Clone, Serialize)]
pub struct AuditedRepair {
    pub hop: String,
    pub message_id: String,
    pub action: &'static str,
}

pub struct DynamoStore {
    client: Client,
    table: String,
    endpoint: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([
        (PARTITION_KEY.to_owned(), s(pk)),
        (SORT_KEY.to_owned(), s(sk)),
    ])
}

/// Whether DynamoDB answered with this error type (a refused condition, a missing table).
fn is_error<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>, code: &str) -> bool {
    error.code() == Some(code)
}

impl DynamoStore {
    pub fn new(config: &RunbookConfig) -> DynamoStore {
        let mut builder = aws_sdk_dynamodb::Config::builder()
            .region(Region::new(config.dynamodb_region.clone()))
            .credentials_provider(keel_aws::credentials(config.credentials))
            .timeout_config(
                aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(10))
                    .build(),
            );
        if !config.dynamodb_endpoint.is_empty() {
            builder = builder.endpoint_url(&config.dynamodb_endpoint);
        }
        DynamoStore {
            client: Client::from_conf(builder.build()),
            table: config.table.clone(),
            endpoint: if config.dynamodb_endpoint.is_empty() {
                format!("DynamoDB {}", config.dynamodb_region)
            } else {
                config.dynamodb_endpoint.clone()
            },
        }
    }

    fn failed<
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    >(
        &self,
        error: SdkError<E, R>,
    ) -> StoreError {
        StoreError::Failed {
            endpoint: self.endpoint.clone(),
            detail: DisplayErrorContext(&error).to_string(),
        }
    }

    /// Creates the table if it is missing (locally; on AWS Terraform makes it) and waits until it
    /// is active.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(error) if is_error(&error, "ResourceNotFoundException") => {}
            Err(error) => return Err(self.failed(error)),
        }
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete")
        };
        let key_element = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("complete")
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attribute(PARTITION_KEY))
            .attribute_definitions(attribute(SORT_KEY))
            .key_schema(key_element(PARTITION_KEY, KeyType::Hash))
            .key_schema(key_element(SORT_KEY, KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Someone else created it meanwhile.
            Err(error) if is_error(&error, "ResourceInUseException") => Ok(()),
            Err(error) => Err(self.failed(error)),
        }
    }

    /// Records one reconciliation run's summary (JSON) under `run_id`.
    pub async fn audit_run(
        &self,
        run_id: &str,
        summary: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut item = key(format!("audit#{run_id}"), "run");
        item.insert("summary".into(), s(summary.to_string()));
        item.insert("at".into(), s(chrono::Utc::now().to_rfc3339()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// Records each repair under `run_id`, before it is carried out.
    pub async fn audit_repairs(
        &self,
        run_id: &str,
        repairs: &[AuditedRepair],
    ) -> Result<(), StoreError> {
        let at = chrono::Utc::now().to_rfc3339();
        for chunk in repairs.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|repair| {
                    let mut item = key(
                        format!("audit#{run_id}"),
                        &format!("{}#{}", repair.hop, repair.message_id),
                    );
                    item.insert("action".into(), s(repair.action));
                    item.insert("at".into(), s(at.clone()));
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item))
                                .build()
                                .expect("item"),
                        )
                        .build()
                })
                .collect();
            // Unprocessed items (throttling) are sent again, a bounded number of times.
            for attempt in 0..10 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| self.failed(e))?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt == 9 {
                    return Err(StoreError::Failed {
                        endpoint: self.endpoint.clone(),
                        detail: format!("{} audit items left unprocessed", requests.len()),
                    });
                }
                tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
            }
        }
        Ok(())
    }

    /// The audit items of one run: (sort key, attributes as strings).
    pub async fn audit_of(&self, run_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(format!("audit#{run_id}")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.failed(e))?;
            for item in page.items() {
                let sk = item
                    .get(SORT_KEY)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let what = item
                    .get("action")
                    .or_else(|| item.get("summary"))
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                out.push((sk, what));
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl RunbookStore for DynamoStore {
    /// The run holding `app`'s lock, if any.
    async fn lock_holder(&self, app: App) -> Result<Option<String>, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("lock#{app}"), "lock")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        Ok(item
            .item
            .and_then(|item| item.get("run_id")?.as_s().ok().cloned()))
    }

    /// Takes `app`'s lock for `run_id` (or confirms this run holds it already).
    async fn lock(&self, app: App, run_id: &str, holder: &str) -> Result<(), StoreError> {
        let mut item = key(format!("lock#{app}"), "lock");
        item.insert("run_id".into(), s(run_id));
        item.insert("holder".into(), s(holder));
        item.insert("taken_at".into(), s(chrono::Utc::now().to_rfc3339()));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR run_id = :run")
            .expression_attribute_values(":run", s(run_id))
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(error) if is_error(&error, "ConditionalCheckFailedException") => {
                let holder = self.lock_holder(app).await?.unwrap_or_default();
                Err(StoreError::Locked {
                    app,
                    run_id: holder,
                })
            }
            Err(error) => Err(self.failed(error)),
        }
    }

    /// Releases `app`'s lock if `run_id` holds it.
    async fn unlock(&self, app: App, run_id: &str) -> Result<(), StoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("lock#{app}"), "lock")))
            .condition_expression("run_id = :run")
            .expression_attribute_values(":run", s(run_id))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(error) if is_error(&error, "ConditionalCheckFailedException") => Ok(()),
            Err(error) => Err(self.failed(error)),
        }
    }

    /// A run's journal and its version.
    async fn load(&self, run_id: &str) -> Result<Option<(Journal, u64)>, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("run#{run_id}"), "journal")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        let Some(item) = item.item else {
            return Ok(None);
        };
        let corrupt = |why: String| StoreError::Corrupt(format!("run {run_id}'s journal"), why);
        let journal = item
            .get("journal")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| corrupt("no journal attribute".into()))?;
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt("no version attribute".into()))?;
        let journal = serde_json::from_str(journal).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some((journal, version)))
    }

    /// Saves `journal` over `version` (0: new), and returns the new version.
    async fn save(&self, journal: &Journal, version: u64) -> Result<u64, StoreError> {
        let mut item = key(format!("run#{}", journal.run_id), "journal");
        item.insert(
            "journal".into(),
            s(serde_json::to_string(journal).expect("journals serialize")),
        );
        item.insert(
            "version".into(),
            AttributeValue::N((version + 1).to_string()),
        );
        item.insert("app".into(), s(journal.plan.app.name()));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR version = :version")
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(version + 1),
            Err(error) if is_error(&error, "ConditionalCheckFailedException") => {
                Err(StoreError::LostRace(journal.run_id.clone()))
            }
            Err(error) => Err(self.failed(error)),
        }
    }
}

/// Every operator action is one item under [`ACTIONS`], sorted by its id (the time it was begun).
const ACTIONS: &str = "actions";

#[async_trait]
impl AuditTrail for DynamoStore {
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut item = key(ACTIONS.to_owned(), &entry.id);
        item.insert(
            "entry".into(),
            s(serde_json::to_string(entry).expect("audit entries serialize")),
        );
        item.insert("operator".into(), s(entry.operator.as_str()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(ACTIONS))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        page.items()
            .iter()
            .map(|item| {
                let sk = item
                    .get(SORT_KEY)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let corrupt = |why: String| StoreError::Corrupt(format!("audit entry {sk}"), why);
                let text = item
                    .get("entry")
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| corrupt("no entry attribute".into()))?;
                serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))
            })
            .collect()
    }
}
