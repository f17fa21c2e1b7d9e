//! IVR flows: a flow per tenant and name, its versions (script and tests,
//! never changed once saved), which version is published, and the tenant's
//! flow settings (fallback, HTTP hosts flows may reach).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{fk, index, tenant_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut flows = Table::create();
        flows
            .table("flows")
            .if_not_exists()
            .col(uuid("id").primary_key())
            .col(string("name"))
            .col(integer_null("published_version"))
            .col(integer("latest_version"))
            .col(timestamp_with_time_zone("published_at").null())
            .col(timestamp_with_time_zone("updated_at"));
        tenant_col(&mut flows, "flows");
        m.create_table(flows.take()).await?;
        m.create_index(index(
            "ux_flows_tenant_name",
            "flows",
            &["tenant_id", "name"],
            true,
        ))
        .await?;

        let mut versions = Table::create();
        versions
            .table("flow_versions")
            .if_not_exists()
            .col(uuid("id").primary_key())
            .col(uuid("flow_id"))
            .col(integer("version"))
            .col(text("source"))
            .col(text("tests"))
            .col(string("comment"))
            .col(string_null("created_by"))
            .col(timestamp_with_time_zone("created_at"));
        tenant_col(&mut versions, "flow_versions");
        fk(
            &mut versions,
            "flow_versions",
            "flow_id",
            "flows",
            ForeignKeyAction::Cascade,
        );
        m.create_table(versions.take()).await?;
        m.create_index(index(
            "ux_flow_versions_flow_version",
            "flow_versions",
            &["flow_id", "version"],
            true,
        ))
        .await?;

        let mut settings = Table::create();
        settings
            .table("flow_settings")
            .if_not_exists()
            .col(uuid("id").primary_key())
            .col(string_null("fallback_queue"))
            .col(string_null("apology_prompt"))
            .col(json("http_allowed_hosts"))
            // Transcribe every recorded call when it ends (speech model needed).
            .col(boolean("transcribe_calls").default(false))
            .col(timestamp_with_time_zone("updated_at"));
        tenant_col(&mut settings, "flow_settings");
        m.create_table(settings.take()).await?;
        m.create_index(index(
            "ux_flow_settings_tenant",
            "flow_settings",
            &["tenant_id"],
            true,
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["flow_settings", "flow_versions", "flows"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
