//! Every service's own migrations (its schema's tables beside the shared safe-store track), kept
//! with the service (`services/<name>/migrations`) and gathered here by service of the topology:
//! each service migrates its schema with its own, and [`migrate_all`] migrates every schema into
//! one database, which the compile-checked queries are prepared and checked against.

use keel_safestore::{StoreError, StoreOptions};
use keel_topology::Service;
use sqlx::migrate::Migrator;

pub static INGRESS: Migrator = sqlx::migrate!("../../services/ingress/migrations");
pub static INGESTION: Migrator = sqlx::migrate!("../../services/ingestion/migrations");
pub static MATCHING: Migrator = sqlx::migrate!("../../services/matching/migrations");
pub static NOTIFICATION: Migrator = sqlx::migrate!("../../services/notification/migrations");
pub static SETTLEMENT: Migrator = sqlx::migrate!("../../services/settlement/migrations");

/// The migrations of `service`'s schema.
pub fn of(service: &Service) -> &'static Migrator {
    match service.name {
        "ingress" => &INGRESS,
        "ingestion" => &INGESTION,
        "matching" => &MATCHING,
        "notification" => &NOTIFICATION,
        "settlement" => &SETTLEMENT,
        other => panic!("no migrations for {other}: add them here with the service"),
    }
}

/// Creates and migrates every service's schema in the database at `url`.
pub async fn migrate_all(url: &str) -> Result<(), StoreError> {
    for service in &keel_topology::SERVICES {
        let options = StoreOptions {
            url: url.to_owned(),
            schema: service.schema.to_owned(),
            max_connections: 1,
        };
        keel_safestore::connect(&options, of(service))
            .await?
            .close()
            .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_service_of_the_topology_has_its_migrations() {
        for service in &keel_topology::SERVICES {
            assert!(
                !super::of(service).migrations.is_empty(),
                "{}",
                service.name
            );
        }
    }
}
