//! Static lists and saved segments.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::entity::{contact, list, member, segment};
use crate::ids::{ContactId, ListId, SegmentId, TenantId};

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("a {0} with this name already exists")]
    NameTaken(&'static str),
    #[error(transparent)]
    Db(#[from] DbErr),
}

fn unique(e: &DbErr) -> bool {
    let s = e.to_string().to_lowercase();
    s.contains("unique") || s.contains("duplicate key")
}

pub async fn create(
    db: &impl ConnectionTrait,
    t: TenantId,
    name: String,
    description: String,
) -> Result<list::Model, ListError> {
    list::ActiveModel {
        id: Set(ListId::new()),
        tenant_id: Set(t),
        name: Set(name),
        description: Set(description),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await
    .map_err(|e| {
        if unique(&e) {
            ListError::NameTaken("list")
        } else {
            e.into()
        }
    })
}

pub async fn get(
    db: &impl ConnectionTrait,
    t: TenantId,
    id: ListId,
) -> Result<Option<list::Model>, DbErr> {
    list::Entity::find_by_id(id)
        .filter(list::Column::TenantId.eq(t))
        .one(db)
        .await
}

pub async fn all(
    db: &impl ConnectionTrait,
    t: TenantId,
    after: Option<ListId>,
    limit: u64,
) -> Result<Vec<list::Model>, DbErr> {
    let mut q = list::Entity::find().filter(list::Column::TenantId.eq(t));
    if let Some(a) = after {
        q = q.filter(list::Column::Id.gt(a));
    }
    q.order_by_asc(list::Column::Id).limit(limit).all(db).await
}

pub async fn rename(
    db: &impl ConnectionTrait,
    t: TenantId,
    id: ListId,
    name: Option<String>,
    description: Option<String>,
) -> Result<list::Model, ListError> {
    let mut m: list::ActiveModel = get(db, t, id)
        .await?
        .ok_or(ListError::NotFound("list"))?
        .into();
    if let Some(n) = name {
        m.name = Set(n);
    }
    if let Some(d) = description {
        m.description = Set(d);
    }
    m.update(db).await.map_err(|e| {
        if unique(&e) {
            ListError::NameTaken("list")
        } else {
            e.into()
        }
    })
}

pub async fn delete(db: &impl ConnectionTrait, t: TenantId, id: ListId) -> Result<(), ListError> {
    let r = list::Entity::delete_many()
        .filter(list::Column::TenantId.eq(t))
        .filter(list::Column::Id.eq(id))
        .exec(db)
        .await?;
    if r.rows_affected == 0 {
        Err(ListError::NotFound("list"))
    } else {
        Ok(())
    }
}

pub async fn member_count(
    db: &impl ConnectionTrait,
    t: TenantId,
    id: ListId,
) -> Result<u64, DbErr> {
    member::Entity::find()
        .filter(member::Column::TenantId.eq(t))
        .filter(member::Column::ListId.eq(id))
        .count(db)
        .await
}

/// Adds contacts (all of this tenant's, checked) to a list; returns how many were new.
pub async fn add(
    db: &impl ConnectionTrait,
    t: TenantId,
    id: ListId,
    contacts: &[ContactId],
) -> Result<u64, ListError> {
    get(db, t, id).await?.ok_or(ListError::NotFound("list"))?;
    let found = contact::Entity::find()
        .filter(contact::Column::TenantId.eq(t))
        .filter(contact::Column::Id.is_in(contacts.to_vec()))
        .count(db)
        .await?;
    let mut distinct = contacts.to_vec();
    distinct.sort();
    distinct.dedup();
    if found != distinct.len() as u64 {
        return Err(ListError::NotFound("contact"));
    }
    let before = member_count(db, t, id).await?;
    let now = Utc::now();
    for part in distinct.chunks(2000) {
        member::Entity::insert_many(part.iter().map(|c| member::ActiveModel {
            list_id: Set(id),
            contact_id: Set(*c),
            tenant_id: Set(t),
            added_at: Set(now),
        }))
        .on_conflict(
            OnConflict::columns([member::Column::ListId, member::Column::ContactId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(member_count(db, t, id).await? - before)
}

pub async fn remove(
    db: &impl ConnectionTrait,
    t: TenantId,
    id: ListId,
    contacts: &[ContactId],
) -> Result<u64, ListError> {
    get(db, t, id).await?.ok_or(ListError::NotFound("list"))?;
    Ok(member::Entity::delete_many()
        .filter(member::Column::TenantId.eq(t))
        .filter(member::Column::ListId.eq(id))
        .filter(member::Column::ContactId.is_in(contacts.to_vec()))
        .exec(db)
        .await?
        .rows_affected)
}

/// The lists a contact is on.
pub async fn of_contact(
    db: &impl ConnectionTrait,
    t: TenantId,
    c: ContactId,
) -> Result<Vec<list::Model>, DbErr> {
    let ids: Vec<ListId> = member::Entity::find()
        .filter(member::Column::TenantId.eq(t))
        .filter(member::Column::ContactId.eq(c))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.list_id)
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    list::Entity::find()
        .filter(list::Column::TenantId.eq(t))
        .filter(list::Column::Id.is_in(ids))
        .all(db)
        .await
}

// ---- segments --------------------------------------------------------------------

pub async fn create_segment(
    db: &impl ConnectionTrait,
    t: TenantId,
    name: String,
    description: String,
    expression: String,
) -> Result<segment::Model, ListError> {
    let now = Utc::now();
    segment::ActiveModel {
        id: Set(SegmentId::new()),
        tenant_id: Set(t),
        name: Set(name),
        description: Set(description),
        expression: Set(expression),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .map_err(|e| {
        if unique(&e) {
            ListError::NameTaken("segment")
        } else {
            e.into()
        }
    })
}

pub async fn get_segment(
    db: &impl ConnectionTrait,
    t: TenantId,
    id: SegmentId,
) -> Result<Option<segment::Model>, DbErr> {
    segment::Entity::find_by_id(id)
        .filter(segment::Column::TenantId.eq(t))
        .one(db)
        .await
}

pub async fn segments(
    db: &impl ConnectionTrait,
    t: TenantId,
    after: Option<SegmentId>,
    limit: u64,
) -> Result<Vec<segment::Model>, DbErr> {
    let mut q = segment::Entity::find().filter(segment::Column::TenantId.eq(t));
    if let Some(a) = after {
        q = q.filter(segment::Column::Id.gt(a));
    }
    q.order_by_asc(segment::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

pub async fn update_segment(
    db: &impl ConnectionTrait,
    t: TenantId,
    id: SegmentId,
    name: Option<String>,
    description: Option<String>,
    expression: Option<String>,
) -> Result<segment::Model, ListError> {
    let mut m: segment::ActiveModel = get_segment(db, t, id)
        .await?
        .ok_or(ListError::NotFound("segment"))?
        .into();
    if let Some(n) = name {
        m.name = Set(n);
    }
    if let Some(d) = description {
        m.description = Set(d);
    }
    if let Some(e) = expression {
        m.expression = Set(e);
    }
    m.updated_at = Set(Utc::now());
    m.update(db).await.map_err(|e| {
        if unique(&e) {
            ListError::NameTaken("segment")
        } else {
            e.into()
        }
    })
}

pub async fn delete_segment(
    db: &impl ConnectionTrait,
    t: TenantId,
    id: SegmentId,
) -> Result<(), ListError> {
    let r = segment::Entity::delete_many()
        .filter(segment::Column::TenantId.eq(t))
        .filter(segment::Column::Id.eq(id))
        .exec(db)
        .await?;
    if r.rows_affected == 0 {
        Err(ListError::NotFound("segment"))
    } else {
        Ok(())
    }
}

/// Everything a segment expression may name in this tenant.
pub async fn catalog(
    db: &impl ConnectionTrait,
    t: TenantId,
    default_region: &str,
) -> Result<super::segment_sql::Catalog, DbErr> {
    let lists = list::Entity::find()
        .filter(list::Column::TenantId.eq(t))
        .all(db)
        .await?;
    Ok(super::segment_sql::Catalog {
        attributes: super::store::attribute_kinds(db, t).await?,
        lists: lists.into_iter().map(|l| (l.name, l.id)).collect(),
        default_region: default_region.to_owned(),
    })
}
