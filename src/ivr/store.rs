//! The flow store: flows by tenant and name, their versions (never changed
//! once saved), the published version, and the tenant's flow settings.
//! Every query filters on the tenant.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, QueryOrder};
use serde_json::json;

use crate::ids::TenantId;

pub mod flow {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "flows")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: TenantId,
        pub name: String,
        pub published_version: Option<i32>,
        pub latest_version: i32,
        pub published_at: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod version {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "flow_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: TenantId,
        pub flow_id: Uuid,
        pub version: i32,
        #[sea_orm(column_type = "Text")]
        pub source: String,
        #[sea_orm(column_type = "Text")]
        pub tests: String,
        pub comment: String,
        pub created_by: Option<String>,
        pub created_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod settings {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "flow_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: TenantId,
        pub fallback_queue: Option<String>,
        pub apology_prompt: Option<String>,
        pub http_allowed_hosts: Json,
        pub transcribe_calls: bool,
        pub updated_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

/// Whether `name` may name a flow.
pub fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub async fn list(db: &impl ConnectionTrait, t: TenantId) -> Result<Vec<flow::Model>, DbErr> {
    flow::Entity::find()
        .filter(flow::Column::TenantId.eq(t))
        .order_by_asc(flow::Column::Name)
        .all(db)
        .await
}

pub async fn find(
    db: &impl ConnectionTrait,
    t: TenantId,
    name: &str,
) -> Result<Option<flow::Model>, DbErr> {
    flow::Entity::find()
        .filter(flow::Column::TenantId.eq(t))
        .filter(flow::Column::Name.eq(name))
        .one(db)
        .await
}

/// A flow's versions, newest first (without their sources).
pub async fn versions(
    db: &impl ConnectionTrait,
    t: TenantId,
    flow_id: Uuid,
) -> Result<Vec<version::Model>, DbErr> {
    version::Entity::find()
        .filter(version::Column::TenantId.eq(t))
        .filter(version::Column::FlowId.eq(flow_id))
        .order_by_desc(version::Column::Version)
        .all(db)
        .await
}

pub async fn version(
    db: &impl ConnectionTrait,
    t: TenantId,
    flow_id: Uuid,
    v: i32,
) -> Result<Option<version::Model>, DbErr> {
    version::Entity::find()
        .filter(version::Column::TenantId.eq(t))
        .filter(version::Column::FlowId.eq(flow_id))
        .filter(version::Column::Version.eq(v))
        .one(db)
        .await
}

/// Saves a new version (creating the flow on its first); returns its number.
pub async fn save(
    db: &DatabaseConnection,
    t: TenantId,
    name: &str,
    source: &str,
    tests: &str,
    comment: &str,
    by: Option<String>,
) -> Result<i32, DbErr> {
    // Concurrent saves of one flow: the unique (flow, version) index makes
    // the loser retry with the next number.
    for _ in 0..5 {
        let txn = crate::db::begin_write(db).await?;
        let now = Utc::now();
        let f = match find(&txn, t, name).await? {
            Some(f) => f,
            None => {
                let created = flow::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    tenant_id: Set(t),
                    name: Set(name.to_owned()),
                    published_version: Set(None),
                    latest_version: Set(0),
                    published_at: Set(None),
                    updated_at: Set(now),
                }
                .insert(&txn)
                .await;
                match created {
                    Ok(f) => f,
                    // Created by a concurrent save: take it next time round.
                    Err(e) if is_conflict(&e) => {
                        let _ = txn.rollback().await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let v = f.latest_version + 1;
        let inserted = version::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(t),
            flow_id: Set(f.id),
            version: Set(v),
            source: Set(source.to_owned()),
            tests: Set(tests.to_owned()),
            comment: Set(comment.to_owned()),
            created_by: Set(by.clone()),
            created_at: Set(now),
        }
        .insert(&txn)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {
                let _ = txn.rollback().await;
                continue;
            }
            Err(e) => return Err(e),
        }
        flow::Entity::update_many()
            .col_expr(flow::Column::LatestVersion, Expr::value(v))
            .col_expr(flow::Column::UpdatedAt, Expr::value(now))
            .filter(flow::Column::Id.eq(f.id))
            .filter(flow::Column::TenantId.eq(t))
            .exec(&txn)
            .await?;
        match txn.commit().await {
            Ok(()) => return Ok(v),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(DbErr::Custom(
        "the flow is being saved by someone else: try again".into(),
    ))
}

fn is_conflict(e: &DbErr) -> bool {
    let s = e.to_string().to_lowercase();
    s.contains("unique") || s.contains("duplicate")
}

/// Publishes version `v` (an older one: a roll-back). False if it does not exist.
pub async fn publish(
    db: &DatabaseConnection,
    t: TenantId,
    f: &flow::Model,
    v: i32,
) -> Result<bool, DbErr> {
    if version(db, t, f.id, v).await?.is_none() {
        return Ok(false);
    }
    let now = Utc::now();
    flow::Entity::update_many()
        .col_expr(flow::Column::PublishedVersion, Expr::value(Some(v)))
        .col_expr(flow::Column::PublishedAt, Expr::value(Some(now)))
        .col_expr(flow::Column::UpdatedAt, Expr::value(now))
        .filter(flow::Column::Id.eq(f.id))
        .filter(flow::Column::TenantId.eq(t))
        .exec(db)
        .await?;
    Ok(true)
}

/// The tenant's flow settings (defaults when never set).
pub async fn settings(db: &impl ConnectionTrait, t: TenantId) -> Result<settings::Model, DbErr> {
    Ok(settings::Entity::find()
        .filter(settings::Column::TenantId.eq(t))
        .one(db)
        .await?
        .unwrap_or(settings::Model {
            id: Uuid::nil(),
            tenant_id: t,
            fallback_queue: None,
            apology_prompt: None,
            http_allowed_hosts: json!([]),
            transcribe_calls: false,
            updated_at: Utc::now(),
        }))
}

pub async fn put_settings(
    db: &DatabaseConnection,
    t: TenantId,
    fallback_queue: Option<String>,
    apology_prompt: Option<String>,
    hosts: Vec<String>,
    transcribe_calls: bool,
) -> Result<settings::Model, DbErr> {
    // Replace the row; a concurrent change that inserted first makes this
    // one retry (the last writer wins, as with any PUT).
    for _ in 0..5 {
        let txn = crate::db::begin_write(db).await?;
        settings::Entity::delete_many()
            .filter(settings::Column::TenantId.eq(t))
            .exec(&txn)
            .await?;
        let inserted = settings::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(t),
            fallback_queue: Set(fallback_queue.clone()),
            apology_prompt: Set(apology_prompt.clone()),
            http_allowed_hosts: Set(json!(hosts)),
            transcribe_calls: Set(transcribe_calls),
            updated_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await;
        match inserted {
            Ok(m) => match txn.commit().await {
                Ok(()) => return Ok(m),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e),
            },
            Err(e) if is_conflict(&e) => {
                let _ = txn.rollback().await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(DbErr::Custom(
        "the flow settings are being changed by someone else: try again".into(),
    ))
}

pub fn hosts_of(s: &settings::Model) -> Vec<String> {
    s.http_allowed_hosts
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
