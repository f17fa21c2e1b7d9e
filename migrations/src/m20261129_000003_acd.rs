//! Routing: agents' routing settings and presence, and the decision log.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{fk, index, tenant_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Per-agent routing settings (calls block chats, no-answer limit,
        // wrap-up time), beside the capacity they already have.
        m.alter_table(
            Table::alter()
                .table("agents")
                .add_column(json("routing").default("{}"))
                .take(),
        )
        .await?;

        // What each agent chose (available, away with a reason, offline):
        // restored after a restart. Busy and wrap-up are derived.
        let mut presence = Table::create();
        presence
            .table("agent_presence")
            .if_not_exists()
            .col(uuid("agent_id").primary_key())
            .col(string("presence"))
            .col(string_null("reason"))
            .col(timestamp_with_time_zone("since"));
        tenant_col(&mut presence, "agent_presence");
        fk(
            &mut presence,
            "agent_presence",
            "agent_id",
            "agents",
            ForeignKeyAction::Cascade,
        );
        m.create_table(presence.take()).await?;

        // Every routing decision: candidates, scores, step and winner(s).
        let mut decisions = Table::create();
        decisions
            .table("acd_decisions")
            .if_not_exists()
            .col(big_pk_auto("id"))
            .col(uuid("interaction_id"))
            .col(uuid("queue_id"))
            .col(json("agents"))
            .col(json("decision"))
            .col(timestamp_with_time_zone("decided_at"));
        tenant_col(&mut decisions, "acd_decisions");
        fk(
            &mut decisions,
            "acd_decisions",
            "interaction_id",
            "interactions",
            ForeignKeyAction::Cascade,
        );
        m.create_table(decisions.take()).await?;
        m.create_index(index(
            "ix_acd_decisions_interaction",
            "acd_decisions",
            &["tenant_id", "interaction_id", "id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "ix_acd_decisions_time",
            "acd_decisions",
            &["tenant_id", "decided_at"],
            false,
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["acd_decisions", "agent_presence"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        m.alter_table(Table::alter().table("agents").drop_column("routing").take())
            .await?;
        Ok(())
    }
}
