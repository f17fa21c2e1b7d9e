//! Rows of the interaction spine.

use sea_orm::entity::prelude::*;

pub mod interaction {
    use super::*;
    use crate::ids::{AgentId, InteractionId, QueueId, TenantId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "interactions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: InteractionId,
        pub tenant_id: TenantId,
        pub channel: String,
        pub direction: String,
        pub state: String,
        pub customer_address: Option<String>,
        pub subject: Option<String>,
        pub queue_id: Option<QueueId>,
        pub agent_id: Option<AgentId>,
        /// The contact this interaction is with, when known.
        pub contact_id: Option<crate::ids::ContactId>,
        pub attributes: Json,
        pub last_seq: i32,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub closed_at: Option<DateTimeUtc>,
        pub close_reason: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod event {
    use super::*;
    use crate::ids::{InteractionId, TenantId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "interaction_events")]
    pub struct Model {
        /// Global, increasing: the cursor of the event feed and of replays.
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: TenantId,
        pub interaction_id: InteractionId,
        /// Position on the interaction's own timeline, from 1.
        pub seq: i32,
        pub kind: String,
        pub state_after: String,
        pub data: Json,
        pub actor: Option<String>,
        pub occurred_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod webhook {
    use super::*;
    use crate::ids::{TenantId, WebhookId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhooks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: WebhookId,
        pub tenant_id: TenantId,
        pub url: String,
        pub description: String,
        /// Event kinds to deliver; empty means all.
        pub event_kinds: Json,
        /// The signing secret, sealed under the master key.
        pub secret_sealed: String,
        pub active: bool,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod delivery {
    use super::*;
    use crate::ids::{TenantId, WebhookId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: TenantId,
        pub webhook_id: WebhookId,
        pub event_id: i64,
        /// `pending`, `delivered` or `failed`.
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub locked_until: Option<DateTimeUtc>,
        pub last_status_code: Option<i32>,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
        pub delivered_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
