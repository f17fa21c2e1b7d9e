//! Schema migrations for Switchboard.
//!
//! One migration per change, never edited once it has landed. The same
//! migrations run on SQLite (embedded mode) and PostgreSQL (cluster mode):
//! only portable column types are used here (uuid, text, big integers,
//! timestamps with time zone, json).

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_foundation;
mod m20261125_000002_contacts;
mod m20261129_000003_acd;
mod m20261130_000004_sip;
mod m20261130_000005_sip_numbers;
mod m20261130_000006_sip_trunks;
mod m20261130_000007_sip_trunk_registration;
mod m20261130_000008_sip_number_forwarding;
mod m20261130_000009_flows;
mod util;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_foundation::Migration),
            Box::new(m20261125_000002_contacts::Migration),
            Box::new(m20261129_000003_acd::Migration),
            Box::new(m20261130_000004_sip::Migration),
            Box::new(m20261130_000005_sip_numbers::Migration),
            Box::new(m20261130_000006_sip_trunks::Migration),
            Box::new(m20261130_000007_sip_trunk_registration::Migration),
            Box::new(m20261130_000008_sip_number_forwarding::Migration),
            Box::new(m20261130_000009_flows::Migration),
        ]
    }
}
