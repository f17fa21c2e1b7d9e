//! Demo data (`seed-data/demo.toml`, built into the binary): a tenant with
//! users of every role, skills, queues and agents. Loading is idempotent:
//! whatever already exists (by slug, email or name) is left untouched.

use std::collections::BTreeMap;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde::Deserialize;

use crate::acd::catalog::{agent, agent_skill, queue, queue_skill, skill};
use crate::iam::domain::{Email, Name, Password, Slug};
use crate::iam::entity::Role;
use crate::iam::password::Hasher;
use crate::iam::store;
use crate::ids::{AgentId, QueueId, SkillId, TenantId};

pub const DEMO: &str = include_str!("../seed-data/demo.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    pub password: String,
    pub tenant: SeedTenant,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub skills: Vec<SeedSkill>,
    #[serde(default)]
    pub queues: Vec<SeedQueue>,
    #[serde(default)]
    pub agents: Vec<SeedAgent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTenant {
    pub slug: String,
    pub name: String,
    pub timezone: String,
    pub default_region: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub email: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSkill {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedQueue {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub strategy: String,
    pub priority: i32,
    pub sl_target_pct: i32,
    pub sl_threshold_secs: i32,
    #[serde(default)]
    pub skills: BTreeMap<String, i32>,
    /// Channels the queue takes (empty: all).
    #[serde(default)]
    pub channels: Vec<crate::interactions::domain::Channel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAgent {
    pub user: String,
    pub extension: Option<String>,
    pub capacity: BTreeMap<String, u32>,
    #[serde(default)]
    pub skills: BTreeMap<String, i32>,
}

/// What a seed run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub tenant_id: Option<TenantId>,
    pub created: usize,
    pub existing: usize,
}

pub fn parse(text: &str) -> anyhow::Result<SeedFile> {
    let f: SeedFile =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("the seed file is invalid: {e}"))?;
    Password::parse(&f.password).map_err(|e| anyhow::anyhow!("seed password {e}"))?;
    Slug::parse(&f.tenant.slug).map_err(|e| anyhow::anyhow!("tenant.slug {e}"))?;
    if f.tenant.timezone.parse::<chrono_tz::Tz>().is_err() {
        anyhow::bail!(
            "tenant.timezone {:?} is not an IANA time zone",
            f.tenant.timezone
        );
    }
    for u in &f.users {
        Email::parse(&u.email).map_err(|e| anyhow::anyhow!("user {:?}: email {e}", u.email))?;
        Name::parse(&u.name).map_err(|e| anyhow::anyhow!("user {:?}: name {e}", u.email))?;
    }
    for (what, levels) in f
        .queues
        .iter()
        .map(|q| (&q.name, &q.skills))
        .chain(f.agents.iter().map(|a| (&a.user, &a.skills)))
    {
        for (s, lvl) in levels {
            if !(1..=5).contains(lvl) {
                anyhow::bail!("{what}: skill {s} level {lvl} is outside 1-5");
            }
            if !f.skills.iter().any(|k| &k.name == s) {
                anyhow::bail!("{what}: skill {s} is not declared under [[skills]]");
            }
        }
    }
    for a in &f.agents {
        if !f
            .users
            .iter()
            .any(|u| u.email.eq_ignore_ascii_case(&a.user) && u.role == Role::Agent)
        {
            anyhow::bail!(
                "agent {:?} is not declared as a user with role agent",
                a.user
            );
        }
    }
    Ok(f)
}

/// Loads `seed` into the database, creating only what is missing.
pub async fn load(
    db: &DatabaseConnection,
    hasher: &Hasher,
    seed: &SeedFile,
) -> anyhow::Result<SeedReport> {
    let mut report = SeedReport::default();
    let slug = Slug::parse(&seed.tenant.slug).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tenant = match store::tenant_by_slug(db, slug.as_str()).await? {
        Some(t) => {
            report.existing += 1;
            t
        }
        None => {
            report.created += 1;
            store::create_tenant(
                db,
                &slug,
                &seed.tenant.name,
                &seed.tenant.timezone,
                &seed.tenant.default_region,
            )
            .await?
        }
    };
    let tid = tenant.id;
    report.tenant_id = Some(tid);

    let password = Password::parse(&seed.password).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = hasher.hash(&password).await;
    let mut users = BTreeMap::new();
    for u in &seed.users {
        let email = Email::parse(&u.email).map_err(|e| anyhow::anyhow!("{e}"))?;
        let user = match store::user_by_email(db, tid, email.as_str()).await? {
            Some(existing) => {
                report.existing += 1;
                existing
            }
            None => {
                report.created += 1;
                let name = Name::parse(&u.name).map_err(|e| anyhow::anyhow!("{e}"))?;
                store::create_user(db, tid, &email, name, u.role, hash.clone()).await?
            }
        };
        users.insert(email.as_str().to_owned(), user);
    }

    let mut skills: BTreeMap<String, SkillId> = BTreeMap::new();
    for s in &seed.skills {
        let found = skill::Entity::find()
            .filter(skill::Column::TenantId.eq(tid))
            .filter(skill::Column::Name.eq(&s.name))
            .one(db)
            .await?;
        let id = match found {
            Some(k) => {
                report.existing += 1;
                k.id
            }
            None => {
                report.created += 1;
                skill::ActiveModel {
                    id: Set(SkillId::new()),
                    tenant_id: Set(tid),
                    name: Set(s.name.clone()),
                    description: Set(s.description.clone()),
                    created_at: Set(Utc::now()),
                }
                .insert(db)
                .await?
                .id
            }
        };
        skills.insert(s.name.clone(), id);
    }

    for q in &seed.queues {
        let found = queue::Entity::find()
            .filter(queue::Column::TenantId.eq(tid))
            .filter(queue::Column::Name.eq(&q.name))
            .one(db)
            .await?;
        if found.is_some() {
            report.existing += 1;
            continue;
        }
        report.created += 1;
        let qid = QueueId::new();
        queue::ActiveModel {
            id: Set(qid),
            tenant_id: Set(tid),
            name: Set(q.name.clone()),
            description: Set(q.description.clone()),
            strategy: Set(q.strategy.clone()),
            priority: Set(q.priority),
            sl_target_pct: Set(q.sl_target_pct),
            sl_threshold_secs: Set(q.sl_threshold_secs),
            config: Set(serde_json::json!({ "channels": q.channels })),
            created_at: Set(Utc::now()),
        }
        .insert(db)
        .await?;
        for (s, lvl) in &q.skills {
            queue_skill::ActiveModel {
                queue_id: Set(qid),
                skill_id: Set(skills[s]),
                tenant_id: Set(tid),
                min_level: Set(*lvl),
            }
            .insert(db)
            .await?;
        }
    }

    for a in &seed.agents {
        let user = &users[&a.user.to_lowercase()];
        let found = agent::Entity::find()
            .filter(agent::Column::TenantId.eq(tid))
            .filter(agent::Column::UserId.eq(user.id))
            .one(db)
            .await?;
        if found.is_some() {
            report.existing += 1;
            continue;
        }
        report.created += 1;
        let aid = AgentId::new();
        agent::ActiveModel {
            id: Set(aid),
            tenant_id: Set(tid),
            user_id: Set(user.id),
            extension: Set(a.extension.clone()),
            capacity: Set(serde_json::to_value(&a.capacity)?),
            routing: Set(serde_json::json!({})),
            created_at: Set(Utc::now()),
        }
        .insert(db)
        .await?;
        for (s, lvl) in &a.skills {
            agent_skill::ActiveModel {
                agent_id: Set(aid),
                skill_id: Set(skills[s]),
                tenant_id: Set(tid),
                level: Set(*lvl),
            }
            .insert(db)
            .await?;
        }
    }
    Ok(report)
}

/// The demo tenant's contacts (`seed-data/demo-contacts.csv`): people in
/// several area codes and countries, with tags, a `plan` attribute and SMS
/// opt-ins, a "Newsletter" list and two segments, so the contacts pages have
/// something to show. Loaded by `seed --demo` and `serve --demo` (not by
/// `seed --file`), once: a tenant that has any of them is left alone.
pub const DEMO_CONTACTS: &str = include_str!("../seed-data/demo-contacts.csv");

/// The example flows of `flows/` (script and tests), built in.
pub const DEMO_FLOWS: [(&str, &str, &str); 3] = [
    (
        "main-menu",
        include_str!("../flows/main-menu.rhai"),
        include_str!("../flows/main-menu.test.toml"),
    ),
    (
        "speech-menu",
        include_str!("../flows/speech-menu.rhai"),
        include_str!("../flows/speech-menu.test.toml"),
    ),
    (
        "chat-welcome",
        include_str!("../flows/chat-welcome.rhai"),
        include_str!("../flows/chat-welcome.test.toml"),
    ),
];

/// Saves and publishes the example flows for the demo tenant (those it
/// does not have yet); returns how many were added.
pub async fn load_demo_flows(db: &DatabaseConnection, t: TenantId) -> anyhow::Result<usize> {
    let mut added = 0;
    for (name, source, tests) in DEMO_FLOWS {
        if crate::ivr::store::find(db, t, name).await?.is_some() {
            continue;
        }
        let v = crate::ivr::store::save(db, t, name, source, tests, "example flow", None).await?;
        if let Some(f) = crate::ivr::store::find(db, t, name).await? {
            crate::ivr::store::publish(db, t, &f, v).await?;
        }
        added += 1;
    }
    Ok(added)
}

pub async fn load_demo_contacts(
    db: &DatabaseConnection,
    tenant_id: TenantId,
) -> anyhow::Result<u64> {
    use crate::contacts::domain::{AttrValue, Channel, ConsentStatus, check_tag, parse_phone};
    use crate::contacts::entity::{attr_def, contact};
    use crate::contacts::{consent, lists, store};

    let present = contact::Entity::find()
        .filter(contact::Column::TenantId.eq(tenant_id))
        .filter(contact::Column::ExternalId.eq("DEMO-0001"))
        .one(db)
        .await?;
    if present.is_some() {
        return Ok(0);
    }
    let tenant = crate::iam::store::tenant(db, tenant_id).await?;
    if attr_def::Entity::find()
        .filter(attr_def::Column::TenantId.eq(tenant_id))
        .filter(attr_def::Column::Key.eq("plan"))
        .one(db)
        .await?
        .is_none()
    {
        attr_def::ActiveModel {
            tenant_id: Set(tenant_id),
            key: Set("plan".into()),
            kind: Set("string".into()),
            label: Set("Plan".into()),
            created_at: Set(Utc::now()),
        }
        .insert(db)
        .await?;
    }
    let mut rdr = csv::Reader::from_reader(DEMO_CONTACTS.as_bytes());
    let mut newsletter = Vec::new();
    let mut created = 0;
    for rec in rdr.records() {
        let r = rec?;
        let field = |i: usize| r.get(i).unwrap_or("").trim().to_owned();
        let phone = parse_phone(&field(3), &tenant.default_region)
            .map_err(|e| anyhow::anyhow!("demo contact {}: phone {e}", field(0)))?;
        let email = Email::parse(&field(4)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let tags: Vec<String> = field(6)
            .split(';')
            .filter(|t| !t.is_empty())
            .map(|t| check_tag(t).map_err(|e| anyhow::anyhow!("{e}")))
            .collect::<Result<_, _>>()?;
        let in_newsletter = tags.iter().any(|t| t == "newsletter");
        let id = store::create(
            db,
            tenant_id,
            store::ContactInput {
                external_id: Some(field(0)),
                first_name: field(1),
                last_name: field(2),
                phones: vec![(phone, Some("mobile".into()))],
                emails: vec![email],
                language: Some(field(5)),
                tags,
                attributes: vec![("plan".into(), AttrValue::Text(field(7)))],
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("demo contact {}: {e}", field(0)))?;
        if field(8) == "opted_in" {
            consent::record(
                db,
                tenant_id,
                id,
                Channel::Sms,
                ConsentStatus::OptedIn,
                "web form",
                Some("demo data".into()),
                None,
                Utc::now(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if in_newsletter {
            newsletter.push(id);
        }
        created += 1;
    }
    let list = lists::create(
        db,
        tenant_id,
        "Newsletter".into(),
        "Everyone who signed up for the monthly newsletter".into(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    lists::add(db, tenant_id, list.id, &newsletter)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (name, description, expression) in [
        (
            "VIP gold customers",
            "Our best customers on the gold plan",
            "tags has \"vip\" and attributes.plan = \"gold\"",
        ),
        (
            "Spanish speakers who take texts",
            "For the Spanish SMS campaign",
            "language = \"es\" and consent.sms = \"opted_in\"",
        ),
    ] {
        lists::create_segment(
            db,
            tenant_id,
            name.into(),
            description.into(),
            expression.into(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_file_is_valid_and_covers_every_role() {
        let f = parse(DEMO).unwrap();
        for role in [Role::Admin, Role::Supervisor, Role::Agent, Role::Marketer] {
            assert!(f.users.iter().any(|u| u.role == role), "{role:?}");
        }
        assert!(!f.queues.is_empty() && !f.skills.is_empty() && !f.agents.is_empty());
    }

    #[test]
    fn bad_seed_files_are_refused() {
        assert!(parse("password = 'x'").is_err());
        let bad_level = DEMO.replace("english = 5", "english = 9");
        assert!(
            parse(&bad_level)
                .unwrap_err()
                .to_string()
                .contains("outside 1-5")
        );
        let unknown = DEMO.replace("sales = 4", "karate = 4");
        assert!(parse(&unknown).unwrap_err().to_string().contains("karate"));
    }
}
