//! The Aurora implementation of the databases port against moto's RDS (`KEEL_TEST_DYNAMODB`: the
//! same moto server serves every AWS API), with the test Postgres (`KEEL_TEST_PG`) behind the
//! configured database URLs for what is SQL.
//!
//! Exercised here: DescribeGlobalClusters and DescribeDBClusters (reading roles), CreateGlobalCluster,
//! CreateDBCluster into a global cluster and CreateDBInstance (the setup, as Terraform makes
//! them), RemoveFromGlobalCluster (detach and promote) with its outcome waited for, and the wait for
//! a synchronised secondary. Not exercised: SwitchoverGlobalCluster (moto 5.2.5 has no such call;
//! planned rotation uses it), and re-protection's replacement of a detached cluster outside
//! us-east-1 (moto keeps every global cluster in us-east-1's backend and ignores a
//! RemoveFromGlobalCluster sent to another region, where AWS takes it). docs/decisions.md says
//! what was done about each.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_rds::config::{Credentials, Region};
use aws_sdk_rds::Client;
use keel_operations::ports::{Databases, Replication};
use keel_operations_live::databases::{AuroraApplication, AuroraConfig};
use keel_operations_live::{AuroraDatabases, Config};
use keel_rotation::Mode;
use keel_routing::{App, RegionConfig};

const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";

fn moto() -> String {
    std::env::var("KEEL_TEST_DYNAMODB").expect("KEEL_TEST_DYNAMODB: run through make test")
}

fn rds(region: &str) -> Client {
    Client::from_conf(
        aws_sdk_rds::Config::builder()
            .region(Region::new(region.to_owned()))
            .endpoint_url(moto())
            .credentials_provider(Credentials::new(
                "keel-local",
                "keel-local",
                None,
                None,
                "test",
            ))
            .build(),
    )
}

/// An Aurora global database for trade matching, its writer in `writer` and a secondary in the
/// other region, as Terraform makes it; the configuration keelctl would read for it.
async fn global_database(writer: &str) -> (Config, AuroraApplication) {
    let unique = format!("{:08x}", rand::random::<u32>());
    let application = AuroraApplication {
        global_cluster: format!("keel-tm-{unique}"),
        clusters: BTreeMap::from([
            (EAST.to_owned(), format!("keel-tm-{unique}-east")),
            (WEST.to_owned(), format!("keel-tm-{unique}-west")),
        ]),
    };
    rds(EAST)
        .create_global_cluster()
        .global_cluster_identifier(&application.global_cluster)
        .engine("aurora-postgresql")
        .engine_version("15.4")
        .send()
        .await
        .unwrap();
    // The first member is the writer.
    let secondary = if writer == EAST { WEST } else { EAST };
    for region in [writer, secondary] {
        let id = &application.clusters[region];
        rds(region)
            .create_db_cluster()
            .db_cluster_identifier(id)
            .engine("aurora-postgresql")
            .engine_version("15.4")
            .global_cluster_identifier(&application.global_cluster)
            .master_username("keel")
            .master_user_password("not-a-secret-moto-only")
            .send()
            .await
            .unwrap();
        rds(region)
            .create_db_instance()
            .db_instance_identifier(format!("{id}-1"))
            .db_cluster_identifier(id)
            .engine("aurora-postgresql")
            .db_instance_class("db.r6g.large")
            .send()
            .await
            .unwrap();
    }
    let postgres = std::env::var("KEEL_TEST_PG").expect("KEEL_TEST_PG: run through make test");
    let mut config = Config::default();
    for region in [EAST, WEST] {
        config.regions.insert(
            region.to_owned(),
            RegionConfig {
                databases: BTreeMap::from([(
                    App::TradeMatching.name().to_owned(),
                    postgres.clone(),
                )]),
                ..RegionConfig::default()
            },
        );
    }
    config.runbook.credentials = keel_aws::CredentialSource::Local;
    config.aurora = AuroraConfig {
        endpoint: moto(),
        applications: BTreeMap::from([(App::TradeMatching.name().to_owned(), application.clone())]),
        ..AuroraConfig::default()
    };
    (config, application)
}

#[tokio::test]
async fn roles_are_read_from_the_global_cluster() {
    keel_localstack::credentials::use_local_pgpass();
    let (config, application) = global_database(WEST).await;
    let aurora = AuroraDatabases::new(&config).polling_every(Duration::from_millis(100));
    let app = App::TradeMatching;

    let Replication::Primary { standbys } = aurora.replication(app, WEST).await.unwrap() else {
        panic!("us-west-2 holds the writer");
    };
    assert_eq!(standbys.len(), 1);
    assert_eq!(standbys[0].name, application.clusters[EAST]);
    assert_eq!(
        standbys[0].state, "streaming",
        "a member in sync reads as streaming"
    );
    assert!(matches!(
        aurora.replication(app, EAST).await.unwrap(),
        Replication::Standby {
            behind_bytes: None,
            ..
        }
    ));
    assert_eq!(
        aurora.standby_name(app, EAST).unwrap(),
        application.clusters[EAST]
    );
    // A secondary already in the global cluster needs no rebuilding, and streams.
    assert_eq!(
        aurora
            .rebuild_standby(app, EAST, WEST, Duration::from_secs(5))
            .await
            .unwrap(),
        application.clusters[EAST]
    );
    aurora
        .wait_streaming(
            app,
            WEST,
            &application.clusters[EAST],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    // An application with no [aurora] entry is named in the error.
    let error = aurora.replication(App::Settlement, EAST).await.unwrap_err();
    assert!(
        error.detail.contains("[aurora.applications.settlement]"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unplanned_failover_detaches_the_secondary_and_waits_until_it_is_alone_and_takes_writes()
{
    keel_localstack::credentials::use_local_pgpass();
    let (config, application) = global_database(WEST).await;
    let aurora = AuroraDatabases::new(&config).polling_every(Duration::from_millis(100));
    let app = App::TradeMatching;

    let done = aurora
        .switch_primary(app, WEST, EAST, Mode::Unplanned, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        done[0].starts_with(&format!("detached {}", application.clusters[EAST])),
        "{done:?}"
    );
    assert_eq!(done.last().unwrap(), "us-east-1's database takes writes");

    // RDS shows it: out of the global cluster, which still holds the lost writer.
    let global = rds(EAST)
        .describe_global_clusters()
        .global_cluster_identifier(&application.global_cluster)
        .send()
        .await
        .unwrap();
    let members: Vec<String> = global
        .global_clusters()
        .iter()
        .find(|g| g.global_cluster_identifier() == Some(application.global_cluster.as_str()))
        .unwrap()
        .global_cluster_members()
        .iter()
        .filter_map(|m| m.db_cluster_arn().map(str::to_owned))
        .collect();
    assert_eq!(members.len(), 1, "{members:?}");
    assert!(members[0].ends_with(&application.clusters[WEST]));
    // On its own it is a primary with no secondary, until re-protection.
    assert_eq!(
        aurora.replication(app, EAST).await.unwrap(),
        Replication::Primary { standbys: vec![] }
    );
    // Resumed, the step sees the detach done and does not call it again.
    let again = aurora
        .switch_primary(app, WEST, EAST, Mode::Unplanned, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(again[0].contains("already detached"), "{again:?}");
}

#[tokio::test]
async fn a_detach_that_never_shows_is_an_error_naming_what_was_seen() {
    keel_localstack::credentials::use_local_pgpass();
    let (config, application) = global_database(EAST).await;
    let aurora = AuroraDatabases::new(&config).polling_every(Duration::from_millis(100));
    // moto accepts a RemoveFromGlobalCluster sent to us-west-2 and changes nothing (see the
    // module's comment): an API that answered but did not act, which the wait is there to catch.
    let error = aurora
        .switch_primary(
            App::TradeMatching,
            EAST,
            WEST,
            Mode::Unplanned,
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
    assert_eq!(error.region, WEST);
    assert!(
        error.detail.contains(&format!(
            "{} out of {} not seen",
            application.clusters[WEST], application.global_cluster
        )) && error.detail.contains("still a member: true"),
        "{error}"
    );
}
