//! SIP: per-tenant accounts for desk phones and softphones (digest HA1s
//! only, never a password) and their registrations (several contacts per
//! account, each with its own expiry).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{fk, index, tenant_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut accounts = Table::create();
        accounts
            .table("sip_accounts")
            .if_not_exists()
            .col(uuid("id").primary_key())
            .col(string("username"))
            .col(uuid_null("agent_id"))
            // The realm the HA1s were computed for (the tenant's SIP domain).
            .col(string("realm"))
            .col(string("ha1_md5"))
            .col(string("ha1_sha256"))
            .col(timestamp_with_time_zone("created_at"));
        tenant_col(&mut accounts, "sip_accounts");
        fk(
            &mut accounts,
            "sip_accounts",
            "agent_id",
            "agents",
            ForeignKeyAction::SetNull,
        );
        m.create_table(accounts.take()).await?;
        m.create_index(index(
            "ux_sip_accounts_username",
            "sip_accounts",
            &["tenant_id", "username"],
            true,
        ))
        .await?;

        let mut regs = Table::create();
        regs.table("sip_registrations")
            .if_not_exists()
            .col(uuid("id").primary_key())
            .col(uuid("account_id"))
            .col(text("contact"))
            .col(string("source"))
            .col(string("transport"))
            .col(text_null("user_agent"))
            .col(string("call_id"))
            .col(big_integer("cseq"))
            .col(timestamp_with_time_zone("expires_at"))
            .col(timestamp_with_time_zone("updated_at"));
        tenant_col(&mut regs, "sip_registrations");
        fk(
            &mut regs,
            "sip_registrations",
            "account_id",
            "sip_accounts",
            ForeignKeyAction::Cascade,
        );
        m.create_table(regs.take()).await?;
        m.create_index(index(
            "ix_sip_registrations_account",
            "sip_registrations",
            &["tenant_id", "account_id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "ix_sip_registrations_expiry",
            "sip_registrations",
            &["expires_at"],
            false,
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["sip_registrations", "sip_accounts"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
