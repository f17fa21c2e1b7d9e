//! SIP trunks: where a tenant's outbound calls go (host, port, transport),
//! with optional digest credentials (the password sealed with the master
//! key), the caller id calls carry by default and a calls-per-second limit.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{index, tenant_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut trunks = Table::create();
        trunks
            .table("sip_trunks")
            .if_not_exists()
            .col(uuid("id").primary_key())
            .col(string("name"))
            .col(string("host"))
            .col(integer("port"))
            // 'udp' or 'tcp'.
            .col(string("transport"))
            .col(string_null("auth_username"))
            // Sealed with the master key (crypto::Sealer); never returned.
            .col(text_null("auth_password_sealed"))
            // E.164, the default From of calls through the trunk.
            .col(string("caller_id"))
            .col(integer("cps_limit"))
            .col(boolean("enabled"))
            .col(timestamp_with_time_zone("created_at"));
        tenant_col(&mut trunks, "sip_trunks");
        m.create_table(trunks.take()).await?;
        m.create_index(index(
            "ux_sip_trunks_tenant_name",
            "sip_trunks",
            &["tenant_id", "name"],
            true,
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("sip_trunks").if_exists().to_owned())
            .await
    }
}
