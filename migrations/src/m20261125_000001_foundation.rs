//! The foundation: tenants and identity, the interaction spine (interactions,
//! their event timeline, webhooks and deliveries), jobs, and the routing
//! catalogue (skills, queues, agents) that the demo data and the ACD share.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{fk, index, tenant_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `created_at` for every table, filled by the application (UTC).
fn created_at() -> ColumnDef {
    timestamp_with_time_zone("created_at")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // ---- tenants and identity -------------------------------------------------
        m.create_table(
            Table::create()
                .table("tenants")
                .if_not_exists()
                .col(pk_uuid("id"))
                .col(string_uniq("slug"))
                .col(string("name"))
                .col(string("timezone"))
                .col(string("default_region"))
                .col(json("settings"))
                .col(created_at())
                .take(),
        )
        .await?;

        let mut users = Table::create();
        users
            .table("users")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(string("email"))
            .col(string("display_name"))
            .col(string("role"))
            .col(string("password_hash"))
            .col(boolean("active"))
            .col(created_at())
            .col(timestamp_with_time_zone("updated_at"))
            .col(timestamp_with_time_zone_null("last_login_at"));
        tenant_col(&mut users, "users");
        m.create_table(users.take()).await?;
        m.create_index(index(
            "ux_users_tenant_email",
            "users",
            &["tenant_id", "email"],
            true,
        ))
        .await?;

        let mut sessions = Table::create();
        sessions
            .table("sessions")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(uuid("user_id"))
            .col(string_uniq("token_hash"))
            .col(string("csrf_token"))
            .col(created_at())
            .col(timestamp_with_time_zone("expires_at"))
            .col(timestamp_with_time_zone("last_seen_at"))
            .col(string_null("ip"))
            .col(string_null("user_agent"));
        tenant_col(&mut sessions, "sessions");
        fk(
            &mut sessions,
            "sessions",
            "user_id",
            "users",
            ForeignKeyAction::Cascade,
        );
        m.create_table(sessions.take()).await?;
        m.create_index(index("ix_sessions_user", "sessions", &["user_id"], false))
            .await?;

        let mut keys = Table::create();
        keys.table("api_keys")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(string("name"))
            .col(string("role"))
            .col(string_uniq("prefix"))
            .col(string("secret_hash"))
            .col(uuid_null("created_by"))
            .col(created_at())
            .col(timestamp_with_time_zone_null("expires_at"))
            .col(timestamp_with_time_zone_null("last_used_at"))
            .col(timestamp_with_time_zone_null("revoked_at"));
        tenant_col(&mut keys, "api_keys");
        m.create_table(keys.take()).await?;
        m.create_index(index(
            "ix_api_keys_tenant",
            "api_keys",
            &["tenant_id"],
            false,
        ))
        .await?;

        let mut audit = Table::create();
        audit
            .table("audit_log")
            .if_not_exists()
            .col(big_pk_auto("id"))
            .col(string("actor_type"))
            .col(uuid_null("actor_id"))
            .col(string("action"))
            .col(string_null("target_type"))
            .col(uuid_null("target_id"))
            .col(string_null("ip"))
            .col(string_null("request_id"))
            .col(json("details"))
            .col(created_at());
        tenant_col(&mut audit, "audit_log");
        m.create_table(audit.take()).await?;
        m.create_index(index(
            "ix_audit_tenant_id",
            "audit_log",
            &["tenant_id", "id"],
            false,
        ))
        .await?;

        // ---- routing catalogue ----------------------------------------------------
        let mut skills = Table::create();
        skills
            .table("skills")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(string("name"))
            .col(string("description"))
            .col(created_at());
        tenant_col(&mut skills, "skills");
        m.create_table(skills.take()).await?;
        m.create_index(index(
            "ux_skills_tenant_name",
            "skills",
            &["tenant_id", "name"],
            true,
        ))
        .await?;

        let mut queues = Table::create();
        queues
            .table("queues")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(string("name"))
            .col(string("description"))
            .col(string("strategy"))
            .col(integer("priority"))
            .col(integer("sl_target_pct"))
            .col(integer("sl_threshold_secs"))
            .col(json("config"))
            .col(created_at());
        tenant_col(&mut queues, "queues");
        m.create_table(queues.take()).await?;
        m.create_index(index(
            "ux_queues_tenant_name",
            "queues",
            &["tenant_id", "name"],
            true,
        ))
        .await?;

        let mut queue_skills = Table::create();
        queue_skills
            .table("queue_skills")
            .if_not_exists()
            .col(uuid("queue_id"))
            .col(uuid("skill_id"))
            .col(integer("min_level"))
            .primary_key(Index::create().col("queue_id").col("skill_id"));
        tenant_col(&mut queue_skills, "queue_skills");
        fk(
            &mut queue_skills,
            "queue_skills",
            "queue_id",
            "queues",
            ForeignKeyAction::Cascade,
        );
        fk(
            &mut queue_skills,
            "queue_skills",
            "skill_id",
            "skills",
            ForeignKeyAction::Cascade,
        );
        m.create_table(queue_skills.take()).await?;

        let mut agents = Table::create();
        agents
            .table("agents")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(uuid_uniq("user_id"))
            .col(string_null("extension"))
            .col(json("capacity"))
            .col(created_at());
        tenant_col(&mut agents, "agents");
        fk(
            &mut agents,
            "agents",
            "user_id",
            "users",
            ForeignKeyAction::Cascade,
        );
        m.create_table(agents.take()).await?;

        let mut agent_skills = Table::create();
        agent_skills
            .table("agent_skills")
            .if_not_exists()
            .col(uuid("agent_id"))
            .col(uuid("skill_id"))
            .col(integer("level"))
            .primary_key(Index::create().col("agent_id").col("skill_id"));
        tenant_col(&mut agent_skills, "agent_skills");
        fk(
            &mut agent_skills,
            "agent_skills",
            "agent_id",
            "agents",
            ForeignKeyAction::Cascade,
        );
        fk(
            &mut agent_skills,
            "agent_skills",
            "skill_id",
            "skills",
            ForeignKeyAction::Cascade,
        );
        m.create_table(agent_skills.take()).await?;

        // ---- the interaction spine ------------------------------------------------
        let mut interactions = Table::create();
        interactions
            .table("interactions")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(string("channel"))
            .col(string("direction"))
            .col(string("state"))
            .col(string_null("customer_address"))
            .col(string_null("subject"))
            .col(uuid_null("queue_id"))
            .col(uuid_null("agent_id"))
            .col(json("attributes"))
            .col(integer("last_seq"))
            .col(created_at())
            .col(timestamp_with_time_zone("updated_at"))
            .col(timestamp_with_time_zone_null("closed_at"))
            .col(string_null("close_reason"));
        tenant_col(&mut interactions, "interactions");
        m.create_table(interactions.take()).await?;
        m.create_index(index(
            "ix_interactions_tenant_state",
            "interactions",
            &["tenant_id", "state", "id"],
            false,
        ))
        .await?;

        let mut events = Table::create();
        events
            .table("interaction_events")
            .if_not_exists()
            .col(big_pk_auto("id"))
            .col(uuid("interaction_id"))
            .col(integer("seq"))
            .col(string("kind"))
            .col(string("state_after"))
            .col(json("data"))
            .col(string_null("actor"))
            .col(timestamp_with_time_zone("occurred_at"));
        tenant_col(&mut events, "interaction_events");
        fk(
            &mut events,
            "interaction_events",
            "interaction_id",
            "interactions",
            ForeignKeyAction::Cascade,
        );
        m.create_table(events.take()).await?;
        m.create_index(index(
            "ux_events_interaction_seq",
            "interaction_events",
            &["interaction_id", "seq"],
            true,
        ))
        .await?;
        m.create_index(index(
            "ix_events_tenant_id",
            "interaction_events",
            &["tenant_id", "id"],
            false,
        ))
        .await?;

        let mut webhooks = Table::create();
        webhooks
            .table("webhooks")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(string("url"))
            .col(string("description"))
            .col(json("event_kinds"))
            .col(text("secret_sealed"))
            .col(boolean("active"))
            .col(created_at());
        tenant_col(&mut webhooks, "webhooks");
        m.create_table(webhooks.take()).await?;

        let mut deliveries = Table::create();
        deliveries
            .table("webhook_deliveries")
            .if_not_exists()
            .col(big_pk_auto("id"))
            .col(uuid("webhook_id"))
            .col(big_integer("event_id"))
            .col(string("status"))
            .col(integer("attempts"))
            .col(timestamp_with_time_zone("next_attempt_at"))
            .col(timestamp_with_time_zone_null("locked_until"))
            .col(integer_null("last_status_code"))
            .col(string_null("last_error"))
            .col(created_at())
            .col(timestamp_with_time_zone_null("delivered_at"));
        tenant_col(&mut deliveries, "webhook_deliveries");
        fk(
            &mut deliveries,
            "webhook_deliveries",
            "webhook_id",
            "webhooks",
            ForeignKeyAction::Cascade,
        );
        fk(
            &mut deliveries,
            "webhook_deliveries",
            "event_id",
            "interaction_events",
            ForeignKeyAction::Cascade,
        );
        m.create_table(deliveries.take()).await?;
        m.create_index(index(
            "ix_deliveries_due",
            "webhook_deliveries",
            &["status", "next_attempt_at"],
            false,
        ))
        .await?;
        m.create_index(index(
            "ix_deliveries_webhook",
            "webhook_deliveries",
            &["webhook_id", "id"],
            false,
        ))
        .await?;

        // ---- jobs -----------------------------------------------------------------
        let mut jobs = Table::create();
        jobs.table("job_records")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(string("kind"))
            .col(string("status"))
            .col(json("params"))
            .col(big_integer("progress_done"))
            .col(big_integer_null("progress_total"))
            .col(json_null("checkpoint"))
            .col(json_null("result"))
            .col(text_null("error"))
            .col(integer("attempts"))
            .col(boolean("cancel_requested"))
            .col(uuid_null("created_by"))
            .col(string_null("lease_owner"))
            .col(timestamp_with_time_zone_null("lease_until"))
            .col(timestamp_with_time_zone("pushed_at"))
            .col(created_at())
            .col(timestamp_with_time_zone("updated_at"))
            .col(timestamp_with_time_zone_null("started_at"))
            .col(timestamp_with_time_zone_null("finished_at"));
        tenant_col(&mut jobs, "job_records");
        m.create_table(jobs.take()).await?;
        m.create_index(index(
            "ix_job_records_tenant",
            "job_records",
            &["tenant_id", "id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "ix_job_records_status",
            "job_records",
            &["status", "updated_at"],
            false,
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "job_records",
            "webhook_deliveries",
            "webhooks",
            "interaction_events",
            "interactions",
            "agent_skills",
            "agents",
            "queue_skills",
            "queues",
            "skills",
            "audit_log",
            "api_keys",
            "sessions",
            "users",
            "tenants",
        ] {
            m.drop_table(Table::drop().table(t).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
