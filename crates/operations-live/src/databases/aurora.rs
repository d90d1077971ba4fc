//! The databases port over Aurora PostgreSQL Global Databases, through the RDS API (`aws-sdk-rds`,
//! one client per region, each signed for its region with the configured credentials). Every step
//! waits until RDS shows its outcome, within its bound:
//!
//! - planned rotation: `SwitchoverGlobalCluster` to the target region's cluster (Aurora stops
//!   writes on the old primary, waits until the target has everything, promotes it and makes the
//!   old primary a secondary: no data loss), then until the target is the writer and the global
//!   cluster is `available` again;
//! - unplanned failover: detach and promote: `RemoveFromGlobalCluster` of the target's cluster,
//!   which then takes writes on its own whatever the lost primary still held, then until it is out
//!   of the global cluster and takes writes;
//! - re-protection: after a switchover the old primary already is a secondary, and re-protection
//!   waits until it is synchronised. After a detach it holds writes the new primary may lack and
//!   cannot rejoin: it is renamed `{id}-replaced-{unix time}` (kept for investigation, as the local
//!   stack keeps `data.replaced`), the global cluster is formed again around the new primary under
//!   its old name (its deletion protection lifted to delete the old one, and set on the new), and
//!   a new secondary cluster and instance are created in the region under the configured name, so
//!   every endpoint the configuration names stays valid.
//!
//! What is plain SQL (counting what was acknowledged, whether a database answers or takes writes)
//! goes through the configured database URLs, as for the local clusters. The replay position is
//! the count of acknowledged records: Aurora's secondaries replicate storage, not a WAL position a
//! client can compare, and the switchover itself waits for the secondary to catch up; the count is
//! what the RPO is about.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_sdk_rds::config::Region;
use aws_sdk_rds::error::DisplayErrorContext;
use aws_sdk_rds::types::{DbCluster, GlobalCluster, GlobalClusterMemberSynchronizationStatus};
use aws_sdk_rds::Client;
use keel_operations::ports::{Acknowledged, DatabaseError, Databases, Replication, StandbyLink};
use keel_rotation::Mode;
use keel_routing::App;
use serde::{Deserialize, Serialize};

use super::{failed, Sql};
use crate::config::Config;

/// The `[aurora]` table: each application's global database, and the RDS endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuroraConfig {
    /// The RDS API's endpoint; empty for AWS's own in each region (set for a stand-in such as
    /// moto).
    pub endpoint: String,
    /// The instance class of a secondary re-protection creates.
    pub instance_class: String,
    /// Per application name.
    pub applications: BTreeMap<String, AuroraApplication>,
}

impl Default for AuroraConfig {
    fn default() -> Self {
        AuroraConfig {
            endpoint: String::new(),
            instance_class: "db.r6g.large".to_owned(),
            applications: BTreeMap::new(),
        }
    }
}

/// One application's Aurora Global Database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuroraApplication {
    /// The global cluster's identifier.
    pub global_cluster: String,
    /// Its DB cluster's identifier in each region.
    pub clusters: BTreeMap<String, String>,
}

pub struct AuroraDatabases {
    /// The URLs for what is SQL, and the `[aurora]` table.
    sql: Sql,
    /// One client per region, each signed for its region.
    clients: BTreeMap<String, Client>,
    /// How often an outcome is looked at.
    poll: Duration,
}

/// One reading of the application's global cluster: its status, whether a switchover or failover
/// is under way, and its members (none when it does not exist).
#[derive(Debug, Clone, PartialEq)]
struct GlobalView {
    status: String,
    switching: bool,
    members: Vec<Member>,
}

impl GlobalView {
    fn of(global: Option<&GlobalCluster>) -> GlobalView {
        let Some(global) = global else {
            return GlobalView {
                status: "missing".to_owned(),
                switching: false,
                members: Vec::new(),
            };
        };
        GlobalView {
            status: global.status().unwrap_or("unknown").to_owned(),
            switching: global.failover_state().is_some(),
            members: global
                .global_cluster_members()
                .iter()
                .map(|member| Member {
                    cluster: identifier_of(member.db_cluster_arn().unwrap_or_default()),
                    writer: member.is_writer().unwrap_or(false),
                    synchronised: !matches!(
                        member.synchronization_status(),
                        Some(GlobalClusterMemberSynchronizationStatus::PendingResync)
                    ),
                })
                .collect(),
        }
    }

    fn has(&self, cluster: &str) -> bool {
        self.members.iter().any(|m| m.cluster == cluster)
    }

    /// Whether `cluster` is the writer and nothing is moving.
    fn settled_with_writer(&self, cluster: &str) -> bool {
        self.status == "available"
            && !self.switching
            && self
                .members
                .iter()
                .any(|m| m.writer && m.cluster == cluster)
    }
}

/// What RDS says of one member of a global cluster.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    cluster: String,
    writer: bool,
    /// Whether it keeps up (`connected`), or must be synchronised again.
    synchronised: bool,
}

impl AuroraDatabases {
    pub fn new(config: &Config) -> Self {
        let endpoint = &config.aurora.endpoint;
        let credentials = keel_aws::credentials(config.runbook.credentials);
        let clients = config
            .region_names()
            .into_iter()
            .map(|region| {
                let mut builder = aws_sdk_rds::Config::builder()
                    .region(Region::new(region.clone()))
                    .credentials_provider(credentials.clone())
                    .timeout_config(
                        aws_sdk_rds::config::timeout::TimeoutConfig::builder()
                            .operation_timeout(Duration::from_secs(30))
                            .build(),
                    );
                if !endpoint.is_empty() {
                    builder = builder.endpoint_url(endpoint);
                }
                (region, Client::from_conf(builder.build()))
            })
            .collect();
        AuroraDatabases {
            sql: Sql::new(config),
            clients,
            poll: Duration::from_secs(2),
        }
    }

    /// Looks at outcomes every `poll` (tests against a stand-in need not wait seconds).
    pub fn polling_every(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    fn config(&self) -> &AuroraConfig {
        &self.sql.config().aurora
    }

    fn application(&self, app: App) -> Result<&AuroraApplication, DatabaseError> {
        self.config().applications.get(app.name()).ok_or_else(|| {
            failed(app, "any region")(format!(
                "[aurora.applications.{}] is not configured",
                app.name()
            ))
        })
    }

    fn cluster_id(&self, app: App, region: &str) -> Result<&str, DatabaseError> {
        self.application(app)?
            .clusters
            .get(region)
            .map(String::as_str)
            .ok_or_else(|| {
                failed(app, region)(format!(
                    "[aurora.applications.{}.clusters] names no cluster in {region}",
                    app.name()
                ))
            })
    }

    fn client(&self, app: App, region: &str) -> Result<&Client, DatabaseError> {
        self.clients
            .get(region)
            .ok_or_else(|| failed(app, region)("not a configured region".to_owned()))
    }

    async fn describe_cluster(
        &self,
        app: App,
        region: &str,
        id: &str,
    ) -> Result<Option<DbCluster>, DatabaseError> {
        let answer = self
            .client(app, region)?
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await;
        match answer {
            Ok(answer) => Ok(answer.db_clusters().first().cloned()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_db_cluster_not_found_fault()) =>
            {
                Ok(None)
            }
            Err(e) => Err(rds_failed(app, region, format!("DescribeDBClusters {id}"))(
                e,
            )),
        }
    }

    /// The cluster's ARN (the global cluster's calls name members by ARN).
    async fn cluster_arn(&self, app: App, region: &str) -> Result<String, DatabaseError> {
        let id = self.cluster_id(app, region)?;
        self.describe_cluster(app, region, id)
            .await?
            .and_then(|c| c.db_cluster_arn().map(str::to_owned))
            .ok_or_else(|| failed(app, region)(format!("no DB cluster {id}")))
    }

    /// The application's global cluster, as `region`'s control plane sees it; none if it does not
    /// exist (between a detach and re-protection's forming it again it may not).
    async fn global_cluster(
        &self,
        app: App,
        region: &str,
    ) -> Result<Option<GlobalCluster>, DatabaseError> {
        let global = &self.application(app)?.global_cluster;
        let answer = self
            .client(app, region)?
            .describe_global_clusters()
            .global_cluster_identifier(global)
            .send()
            .await;
        match answer {
            // Picked by name rather than taken first: some stand-ins (moto) answer with every
            // global cluster whatever the filter.
            Ok(answer) => Ok(answer
                .global_clusters()
                .iter()
                .find(|g| g.global_cluster_identifier() == Some(global.as_str()))
                .cloned()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_global_cluster_not_found_fault()) =>
            {
                Ok(None)
            }
            Err(e) => Err(rds_failed(
                app,
                region,
                format!("DescribeGlobalClusters {global}"),
            )(e)),
        }
    }

    /// One reading of the global cluster, as `region`'s control plane sees it.
    async fn view(&self, app: App, region: &str) -> Result<GlobalView, DatabaseError> {
        Ok(GlobalView::of(
            self.global_cluster(app, region).await?.as_ref(),
        ))
    }

    /// Waits until `seen` says the outcome is there (`Ok(Ok(()))`; `Ok(Err(what))`: not yet, and
    /// what is seen), or `bound` has passed.
    async fn until<F, Fut>(
        &self,
        app: App,
        region: &str,
        what: &str,
        bound: Duration,
        mut seen: F,
    ) -> Result<Duration, DatabaseError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Result<(), String>, DatabaseError>>,
    {
        let started = Instant::now();
        loop {
            let last = seen().await?;
            match last {
                Ok(()) => return Ok(started.elapsed()),
                Err(now) if started.elapsed() >= bound => {
                    return Err(failed(app, region)(format!(
                        "{what} not seen after {bound:?}: {now}"
                    )))
                }
                Err(_) => tokio::time::sleep(self.poll).await,
            }
        }
    }

    /// The cluster's status as RDS reports it (`missing` when there is no such cluster).
    async fn cluster_status(
        &self,
        app: App,
        region: &str,
        id: &str,
    ) -> Result<String, DatabaseError> {
        Ok(self
            .describe_cluster(app, region, id)
            .await?
            .and_then(|c| c.status().map(str::to_owned))
            .unwrap_or_else(|| "missing".to_owned()))
    }

    /// Takes `app`'s cluster in `region` out of the global cluster, and waits until RDS shows it
    /// out and available on its own.
    async fn detach(
        &self,
        app: App,
        region: &str,
        bound: Duration,
    ) -> Result<Duration, DatabaseError> {
        let global = self.application(app)?.global_cluster.clone();
        let id = self.cluster_id(app, region)?;
        let arn = self.cluster_arn(app, region).await?;
        self.client(app, region)?
            .remove_from_global_cluster()
            .global_cluster_identifier(&global)
            .db_cluster_identifier(&arn)
            .send()
            .await
            .map_err(rds_failed(
                app,
                region,
                format!("RemoveFromGlobalCluster {id} from {global}"),
            ))?;
        self.until(
            app,
            region,
            &format!("{id} out of {global}"),
            bound,
            || async {
                let member = self.view(app, region).await?.has(id);
                let status = self.cluster_status(app, region, id).await?;
                Ok(if !member && status == "available" {
                    Ok(())
                } else {
                    Err(format!("{id} {status}, still a member: {member}"))
                })
            },
        )
        .await
    }

    async fn switchover(
        &self,
        app: App,
        to: &str,
        bound: Duration,
    ) -> Result<Vec<String>, DatabaseError> {
        let global = self.application(app)?.global_cluster.clone();
        let target = self.cluster_id(app, to)?.to_owned();
        let target_arn = self.cluster_arn(app, to).await?;
        self.client(app, to)?
            .switchover_global_cluster()
            .global_cluster_identifier(&global)
            .target_db_cluster_identifier(&target_arn)
            .send()
            .await
            .map_err(rds_failed(
                app,
                to,
                format!("SwitchoverGlobalCluster {global} to {target}"),
            ))?;
        let took = self
            .until(
                app,
                to,
                &format!("{target} as {global}'s writer"),
                bound,
                || async {
                    let view = self.view(app, to).await?;
                    Ok(if view.settled_with_writer(&target) {
                        Ok(())
                    } else {
                        Err(format!(
                            "global cluster {}{}, members {:?}",
                            view.status,
                            if view.switching { " (switching)" } else { "" },
                            view.members
                        ))
                    })
                },
            )
            .await?;
        Ok(vec![format!(
            "switched {global} over to {target} in {to}: it is the writer and the old primary a secondary ({:.0} s)",
            took.as_secs_f64()
        )])
    }

    async fn detach_and_promote(
        &self,
        app: App,
        from: &str,
        to: &str,
        bound: Duration,
    ) -> Result<Vec<String>, DatabaseError> {
        let global = self.application(app)?.global_cluster.clone();
        let target = self.cluster_id(app, to)?.to_owned();
        let mut done = Vec::new();
        let member = self
            .view(app, to)
            .await?
            .members
            .into_iter()
            .find(|m| m.cluster == target);
        match member {
            // Resumed after the detach, or it was already the writer.
            None => done.push(format!(
                "{target} in {to} is not in {global} (already detached)"
            )),
            Some(Member { writer: true, .. }) => {
                done.push(format!("{target} in {to} already is {global}'s writer"))
            }
            Some(_) => {
                let took = self.detach(app, to, bound).await?;
                done.push(format!(
                    "detached {target} in {to} from {global} ({:.0} s); {from}'s cluster is left as it is, fenced",
                    took.as_secs_f64()
                ));
            }
        }
        self.until(app, to, "the database taking writes", bound, || async {
            Ok(if self.sql.takes_writes(app, to).await {
                Ok(())
            } else {
                Err("it does not take writes yet".to_owned())
            })
        })
        .await?;
        done.push(format!("{to}'s database takes writes"));
        Ok(done)
    }

    /// Replaces the cluster in `region`, which left the global cluster or never rejoined it, with
    /// a new secondary of the primary in `primary_region`.
    async fn replace_with_secondary(
        &self,
        app: App,
        region: &str,
        primary_region: &str,
        bound: Duration,
    ) -> Result<(), DatabaseError> {
        let global = self.application(app)?.global_cluster.clone();
        let id = self.cluster_id(app, region)?.to_owned();
        let primary_arn = self.cluster_arn(app, primary_region).await?;
        let client = self.client(app, region)?;
        let old = self.describe_cluster(app, region, &id).await?;
        // Out of the old global cluster, and out of the way under another name.
        if old.is_some() {
            if self.view(app, region).await?.has(&id) {
                self.detach(app, region, bound).await?;
            }
            let unix = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let replaced = format!("{id}-replaced-{unix}");
            client
                .modify_db_cluster()
                .db_cluster_identifier(&id)
                .new_db_cluster_identifier(&replaced)
                .apply_immediately(true)
                .send()
                .await
                .map_err(rds_failed(
                    app,
                    region,
                    format!("ModifyDBCluster (rename {id})"),
                ))?;
            self.until(
                app,
                region,
                &format!("{id} renamed {replaced}"),
                bound,
                || async {
                    let (old_name, new_name) = (
                        self.cluster_status(app, region, &id).await?,
                        self.cluster_status(app, region, &replaced).await?,
                    );
                    Ok(if old_name == "missing" && new_name == "available" {
                        Ok(())
                    } else {
                        Err(format!("{id} {old_name}, {replaced} {new_name}"))
                    })
                },
            )
            .await?;
        }
        // The global cluster around the new primary, under its old name.
        let view = self.view(app, primary_region).await?;
        let primary_id = identifier_of(&primary_arn);
        if !view.has(&primary_id) {
            if view.status != "missing" {
                if let Some(stale) = view.members.first() {
                    return Err(failed(app, region)(format!(
                        "{global} still holds {} besides the primary; remove it first",
                        stale.cluster
                    )));
                }
                // Terraform makes it protected; the protection is for people, and it comes back
                // on the cluster formed again below.
                client
                    .modify_global_cluster()
                    .global_cluster_identifier(&global)
                    .deletion_protection(false)
                    .send()
                    .await
                    .map_err(rds_failed(
                        app,
                        region,
                        format!("ModifyGlobalCluster {global}"),
                    ))?;
                client
                    .delete_global_cluster()
                    .global_cluster_identifier(&global)
                    .send()
                    .await
                    .map_err(rds_failed(
                        app,
                        region,
                        format!("DeleteGlobalCluster {global}"),
                    ))?;
            }
            client
                .create_global_cluster()
                .global_cluster_identifier(&global)
                .source_db_cluster_identifier(&primary_arn)
                .deletion_protection(true)
                .send()
                .await
                .map_err(rds_failed(
                    app,
                    region,
                    format!("CreateGlobalCluster {global}"),
                ))?;
            self.until(
                app,
                primary_region,
                &format!("{global} formed around {primary_id}"),
                bound,
                || async {
                    let view = self.view(app, primary_region).await?;
                    Ok(if view.settled_with_writer(&primary_id) {
                        Ok(())
                    } else {
                        Err(format!(
                            "{global} {}, members {:?}",
                            view.status, view.members
                        ))
                    })
                },
            )
            .await?;
        }
        // The new secondary, shaped as the old cluster was.
        let template = match &old {
            Some(old) => old.clone(),
            None => self
                .describe_cluster(app, primary_region, &primary_id)
                .await?
                .ok_or_else(|| {
                    failed(app, primary_region)(format!("no DB cluster {primary_id}"))
                })?,
        };
        client
            .create_db_cluster()
            .db_cluster_identifier(&id)
            .global_cluster_identifier(&global)
            .engine(template.engine().unwrap_or("aurora-postgresql"))
            .set_engine_version(template.engine_version().map(str::to_owned))
            .set_db_subnet_group_name(
                old.as_ref()
                    .and_then(|o| o.db_subnet_group().map(str::to_owned)),
            )
            .set_vpc_security_group_ids(old.as_ref().map(|o| {
                o.vpc_security_groups()
                    .iter()
                    .filter_map(|g| g.vpc_security_group_id().map(str::to_owned))
                    .collect()
            }))
            .set_kms_key_id(old.as_ref().and_then(|o| o.kms_key_id().map(str::to_owned)))
            .storage_encrypted(template.storage_encrypted().unwrap_or(true))
            .send()
            .await
            .map_err(rds_failed(app, region, format!("CreateDBCluster {id}")))?;
        client
            .create_db_instance()
            .db_instance_identifier(format!("{id}-1"))
            .db_cluster_identifier(&id)
            .engine(template.engine().unwrap_or("aurora-postgresql"))
            .db_instance_class(&self.config().instance_class)
            .send()
            .await
            .map_err(rds_failed(app, region, format!("CreateDBInstance {id}-1")))?;
        self.until(app, region, &format!("{id} created"), bound, || async {
            let status = self.cluster_status(app, region, &id).await?;
            Ok(if status == "available" {
                Ok(())
            } else {
                Err(status)
            })
        })
        .await?;
        Ok(())
    }
}

/// An RDS call's failure, as an error about `app`'s database in `region` naming the call.
fn rds_failed<E: std::error::Error + 'static>(
    app: App,
    region: &str,
    call: String,
) -> impl FnOnce(E) -> DatabaseError + '_ {
    move |e| failed(app, region)(format!("{call}: {}", DisplayErrorContext(&e)))
}

/// `arn:aws:rds:us-east-1:123:cluster:keel-tm-east` → `keel-tm-east`.
fn identifier_of(arn: &str) -> String {
    arn.rsplit(':').next().unwrap_or(arn).to_owned()
}

#[async_trait]
impl Databases for AuroraDatabases {
    async fn replication(&self, app: App, region: &str) -> Result<Replication, DatabaseError> {
        let id = self.cluster_id(app, region)?;
        let global = &self.application(app)?.global_cluster;
        let members = self.view(app, region).await?.members;
        match members.iter().find(|m| m.cluster == id) {
            Some(member) if member.writer => Ok(Replication::Primary {
                standbys: members
                    .iter()
                    .filter(|m| !m.writer)
                    .map(|m| StandbyLink {
                        name: m.cluster.clone(),
                        // The word the runbook checks a link by; Aurora's own otherwise.
                        state: if m.synchronised {
                            "streaming".to_owned()
                        } else {
                            "pending-resync".to_owned()
                        },
                        behind_bytes: None,
                        replay_lag_seconds: None,
                        synchronous: false,
                    })
                    .collect(),
            }),
            Some(_) => Ok(Replication::Standby {
                behind_bytes: None,
                last_replayed_seconds_ago: None,
            }),
            // Detached (promoted alone): a primary with no secondary until re-protection.
            None if self.describe_cluster(app, region, id).await?.is_some() => {
                Ok(Replication::Primary {
                    standbys: Vec::new(),
                })
            }
            None => Err(failed(app, region)(format!(
                "no DB cluster {id}, and {global} has no such member"
            ))),
        }
    }

    fn standby_name(&self, app: App, region: &str) -> Result<String, DatabaseError> {
        self.cluster_id(app, region).map(str::to_owned)
    }

    /// The number of acknowledged records (see the module's comment).
    async fn flushed_position(&self, app: App, region: &str) -> Result<String, DatabaseError> {
        Ok(self.sql.acknowledged(app, region).await?.count.to_string())
    }

    async fn wait_replayed(
        &self,
        app: App,
        region: &str,
        position: &str,
        bound: Duration,
    ) -> Result<Duration, DatabaseError> {
        let wanted: i64 = position.parse().map_err(|_| {
            failed(app, region)(format!("{position} is not a count of acknowledged records"))
        })?;
        let started = Instant::now();
        loop {
            let count = self.sql.acknowledged(app, region).await?.count;
            if count >= wanted {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= bound {
                return Err(failed(app, region)(format!(
                    "the secondary holds {count} of {wanted} acknowledged records after {bound:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn acknowledged(&self, app: App, region: &str) -> Result<Acknowledged, DatabaseError> {
        self.sql.acknowledged(app, region).await
    }

    async fn acknowledged_missing(
        &self,
        app: App,
        from: &str,
        to: &str,
    ) -> Result<i64, DatabaseError> {
        self.sql.acknowledged_missing(app, from, to).await
    }

    async fn answers(&self, app: App, region: &str, within: Duration) -> bool {
        self.sql.answers(app, region, within).await
    }

    async fn takes_writes(&self, app: App, region: &str) -> bool {
        self.sql.takes_writes(app, region).await
    }

    async fn switch_primary(
        &self,
        app: App,
        from: &str,
        to: &str,
        mode: Mode,
        bound: Duration,
    ) -> Result<Vec<String>, DatabaseError> {
        match mode {
            Mode::Planned => self.switchover(app, to, bound).await,
            Mode::Unplanned => self.detach_and_promote(app, from, to, bound).await,
        }
    }

    async fn rebuild_standby(
        &self,
        app: App,
        region: &str,
        primary_region: &str,
        bound: Duration,
    ) -> Result<String, DatabaseError> {
        let id = self.cluster_id(app, region)?.to_owned();
        let primary = self.cluster_id(app, primary_region)?.to_owned();
        let members = self.view(app, primary_region).await?.members;
        let is_secondary = members.iter().any(|m| m.cluster == id && !m.writer);
        let primary_writes = members.iter().any(|m| m.cluster == primary && m.writer);
        if !(is_secondary && primary_writes) {
            self.replace_with_secondary(app, region, primary_region, bound)
                .await?;
        }
        Ok(id)
    }

    async fn wait_streaming(
        &self,
        app: App,
        primary_region: &str,
        name: &str,
        bound: Duration,
    ) -> Result<(), DatabaseError> {
        self.until(
            app,
            primary_region,
            &format!("{name} as a synchronised secondary"),
            bound,
            || async {
                let members = self.view(app, primary_region).await?.members;
                Ok(match members.iter().find(|m| m.cluster == name) {
                    Some(m) if !m.writer && m.synchronised => Ok(()),
                    Some(m) => Err(format!(
                        "writer: {}, synchronised: {}",
                        m.writer, m.synchronised
                    )),
                    None => Err("not a member".to_owned()),
                })
            },
        )
        .await
        .map(|_| ())
    }
}
