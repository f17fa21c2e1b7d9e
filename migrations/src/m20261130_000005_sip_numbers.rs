//! SIP numbers: the E.164 numbers calls come in on, each owned by one
//! tenant (unique across the service) and pointing at an entry point: a
//! queue for now, a flow (by name) later.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{fk, index, tenant_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut numbers = Table::create();
        numbers
            .table("sip_numbers")
            .if_not_exists()
            .col(uuid("id").primary_key())
            // E.164, with the leading '+'.
            .col(string("number"))
            .col(uuid_null("queue_id"))
            .col(string_null("flow"))
            .col(timestamp_with_time_zone("created_at"));
        tenant_col(&mut numbers, "sip_numbers");
        fk(
            &mut numbers,
            "sip_numbers",
            "queue_id",
            "queues",
            ForeignKeyAction::SetNull,
        );
        m.create_table(numbers.take()).await?;
        m.create_index(index(
            "ux_sip_numbers_number",
            "sip_numbers",
            &["number"],
            true,
        ))
        .await?;
        m.create_index(index(
            "ix_sip_numbers_tenant",
            "sip_numbers",
            &["tenant_id"],
            false,
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("sip_numbers").if_exists().to_owned())
            .await
    }
}
