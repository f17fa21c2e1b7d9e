//! SIP accounts and registrations in the database. Every function takes the
//! tenant and filters on it.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveModelTrait, QueryOrder, Set};

use crate::ids::TenantId;

pub mod account {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sip_accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: TenantId,
        pub username: String,
        pub agent_id: Option<crate::ids::AgentId>,
        /// The realm the HA1s were computed for.
        pub realm: String,
        pub ha1_md5: String,
        pub ha1_sha256: String,
        pub created_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod registration {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sip_registrations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: TenantId,
        pub account_id: Uuid,
        pub contact: String,
        pub source: String,
        pub transport: String,
        pub user_agent: Option<String>,
        pub call_id: String,
        pub cseq: i64,
        pub expires_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub async fn find_account_by_username(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    username: &str,
) -> Result<Option<account::Model>, DbErr> {
    account::Entity::find()
        .filter(account::Column::TenantId.eq(tenant_id))
        .filter(account::Column::Username.eq(username))
        .one(db)
        .await
}

/// The account's registrations that have not expired, oldest first.
pub async fn live_registrations(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    account_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<registration::Model>, DbErr> {
    registration::Entity::find()
        .filter(registration::Column::TenantId.eq(tenant_id))
        .filter(registration::Column::AccountId.eq(account_id))
        .filter(registration::Column::ExpiresAt.gt(now))
        .order_by_asc(registration::Column::Id)
        .all(db)
        .await
}

/// A contact to add or refresh (or remove, with `expires == 0`).
#[derive(Debug, Clone)]
pub struct Binding {
    pub contact: String,
    pub expires: u32,
}

/// Who sent the REGISTER.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: String,
    pub transport: String,
    pub user_agent: Option<String>,
    pub call_id: String,
    pub cseq: i64,
}

/// Applies bindings to an account in one transaction (RFC 3261 10.3 step
/// 7): a known contact with the same Call-ID and an older CSeq is updated,
/// an out-of-order one (same Call-ID, CSeq not higher) is ignored.
pub async fn apply_bindings(
    db: &sea_orm::DatabaseConnection,
    tenant_id: TenantId,
    account_id: Uuid,
    bindings: &[Binding],
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    // Expired rows go first, so they never count as known contacts.
    registration::Entity::delete_many()
        .filter(registration::Column::TenantId.eq(tenant_id))
        .filter(registration::Column::AccountId.eq(account_id))
        .filter(registration::Column::ExpiresAt.lte(now))
        .exec(&txn)
        .await?;
    for b in bindings {
        let existing = registration::Entity::find()
            .filter(registration::Column::TenantId.eq(tenant_id))
            .filter(registration::Column::AccountId.eq(account_id))
            .filter(registration::Column::Contact.eq(b.contact.clone()))
            .one(&txn)
            .await?;
        if let Some(e) = &existing
            && e.call_id == origin.call_id
            && e.cseq >= origin.cseq
        {
            continue;
        }
        match (existing, b.expires) {
            (Some(e), 0) => {
                registration::Entity::delete_by_id(e.id).exec(&txn).await?;
            }
            (None, 0) => {}
            (Some(e), secs) => {
                let mut m: registration::ActiveModel = e.into();
                m.source = Set(origin.source.clone());
                m.transport = Set(origin.transport.clone());
                m.user_agent = Set(origin.user_agent.clone());
                m.call_id = Set(origin.call_id.clone());
                m.cseq = Set(origin.cseq);
                m.expires_at = Set(now + chrono::Duration::seconds(secs as i64));
                m.updated_at = Set(now);
                m.update(&txn).await?;
            }
            (None, secs) => {
                registration::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    tenant_id: Set(tenant_id),
                    account_id: Set(account_id),
                    contact: Set(b.contact.clone()),
                    source: Set(origin.source.clone()),
                    transport: Set(origin.transport.clone()),
                    user_agent: Set(origin.user_agent.clone()),
                    call_id: Set(origin.call_id.clone()),
                    cseq: Set(origin.cseq),
                    expires_at: Set(now + chrono::Duration::seconds(secs as i64)),
                    updated_at: Set(now),
                }
                .insert(&txn)
                .await?;
            }
        }
    }
    txn.commit().await
}

/// `Contact: *` with `Expires: 0`: every binding of the account goes.
pub async fn remove_all(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    account_id: Uuid,
) -> Result<u64, DbErr> {
    Ok(registration::Entity::delete_many()
        .filter(registration::Column::TenantId.eq(tenant_id))
        .filter(registration::Column::AccountId.eq(account_id))
        .exec(db)
        .await?
        .rows_affected)
}

/// Removes expired registrations of every tenant (housekeeping).
pub async fn purge_expired(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(registration::Entity::delete_many()
        .filter(registration::Column::ExpiresAt.lte(now))
        .exec(db)
        .await?
        .rows_affected)
}
