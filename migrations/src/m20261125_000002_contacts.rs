//! Contacts, their phones, emails, tags and typed attributes; lists and
//! segments; consent and suppression; uploads and import errors.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{fk, index, tenant_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut contacts = Table::create();
        contacts
            .table("contacts")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(string_null("external_id"))
            .col(string("first_name"))
            .col(string("last_name"))
            .col(string("search_name"))
            .col(string_null("timezone"))
            .col(string_null("timezone_source"))
            .col(string_null("language"))
            .col(timestamp_with_time_zone("created_at"))
            .col(timestamp_with_time_zone("updated_at"));
        tenant_col(&mut contacts, "contacts");
        m.create_table(contacts.take()).await?;
        m.create_index(index(
            "ux_contacts_external",
            "contacts",
            &["tenant_id", "external_id"],
            true,
        ))
        .await?;
        m.create_index(index(
            "ix_contacts_name",
            "contacts",
            &["tenant_id", "search_name"],
            false,
        ))
        .await?;
        m.create_index(index(
            "ix_contacts_tenant_id",
            "contacts",
            &["tenant_id", "id"],
            false,
        ))
        .await?;

        let mut phones = Table::create();
        phones
            .table("contact_phones")
            .if_not_exists()
            .col(big_pk_auto("id"))
            .col(uuid("contact_id"))
            .col(string("e164"))
            .col(string_null("label"))
            .col(integer("position"));
        tenant_col(&mut phones, "contact_phones");
        fk(
            &mut phones,
            "contact_phones",
            "contact_id",
            "contacts",
            ForeignKeyAction::Cascade,
        );
        m.create_table(phones.take()).await?;
        m.create_index(index(
            "ix_contact_phones_e164",
            "contact_phones",
            &["tenant_id", "e164"],
            false,
        ))
        .await?;
        m.create_index(index(
            "ix_contact_phones_contact",
            "contact_phones",
            &["contact_id", "position"],
            false,
        ))
        .await?;

        let mut emails = Table::create();
        emails
            .table("contact_emails")
            .if_not_exists()
            .col(big_pk_auto("id"))
            .col(uuid("contact_id"))
            .col(string("email"))
            .col(integer("position"));
        tenant_col(&mut emails, "contact_emails");
        fk(
            &mut emails,
            "contact_emails",
            "contact_id",
            "contacts",
            ForeignKeyAction::Cascade,
        );
        m.create_table(emails.take()).await?;
        m.create_index(index(
            "ix_contact_emails_email",
            "contact_emails",
            &["tenant_id", "email"],
            false,
        ))
        .await?;
        m.create_index(index(
            "ix_contact_emails_contact",
            "contact_emails",
            &["contact_id", "position"],
            false,
        ))
        .await?;

        let mut tags = Table::create();
        tags.table("contact_tags")
            .if_not_exists()
            .col(uuid("contact_id"))
            .col(string("tag"))
            .primary_key(Index::create().col("contact_id").col("tag"));
        tenant_col(&mut tags, "contact_tags");
        fk(
            &mut tags,
            "contact_tags",
            "contact_id",
            "contacts",
            ForeignKeyAction::Cascade,
        );
        m.create_table(tags.take()).await?;
        m.create_index(index(
            "ix_contact_tags_tag",
            "contact_tags",
            &["tenant_id", "tag"],
            false,
        ))
        .await?;

        let mut defs = Table::create();
        defs.table("attribute_definitions")
            .if_not_exists()
            .col(string("key"))
            .col(string("kind"))
            .col(string("label"))
            .col(timestamp_with_time_zone("created_at"))
            .primary_key(Index::create().col("tenant_id").col("key"));
        tenant_col(&mut defs, "attribute_definitions");
        m.create_table(defs.take()).await?;

        let mut attrs = Table::create();
        attrs
            .table("contact_attributes")
            .if_not_exists()
            .col(uuid("contact_id"))
            .col(string("key"))
            .col(text_null("text_value"))
            .col(double_null("num_value"))
            .col(boolean_null("bool_value"))
            .col(timestamp_with_time_zone_null("date_value"))
            .primary_key(Index::create().col("contact_id").col("key"));
        tenant_col(&mut attrs, "contact_attributes");
        fk(
            &mut attrs,
            "contact_attributes",
            "contact_id",
            "contacts",
            ForeignKeyAction::Cascade,
        );
        m.create_table(attrs.take()).await?;
        m.create_index(index(
            "ix_contact_attributes_text",
            "contact_attributes",
            &["tenant_id", "key", "text_value"],
            false,
        ))
        .await?;
        m.create_index(index(
            "ix_contact_attributes_num",
            "contact_attributes",
            &["tenant_id", "key", "num_value"],
            false,
        ))
        .await?;

        let mut lists = Table::create();
        lists
            .table("contact_lists")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(string("name"))
            .col(string("description"))
            .col(timestamp_with_time_zone("created_at"));
        tenant_col(&mut lists, "contact_lists");
        m.create_table(lists.take()).await?;
        m.create_index(index(
            "ux_contact_lists_name",
            "contact_lists",
            &["tenant_id", "name"],
            true,
        ))
        .await?;

        let mut members = Table::create();
        members
            .table("list_members")
            .if_not_exists()
            .col(uuid("list_id"))
            .col(uuid("contact_id"))
            .col(timestamp_with_time_zone("added_at"))
            .primary_key(Index::create().col("list_id").col("contact_id"));
        tenant_col(&mut members, "list_members");
        fk(
            &mut members,
            "list_members",
            "list_id",
            "contact_lists",
            ForeignKeyAction::Cascade,
        );
        fk(
            &mut members,
            "list_members",
            "contact_id",
            "contacts",
            ForeignKeyAction::Cascade,
        );
        m.create_table(members.take()).await?;
        m.create_index(index(
            "ix_list_members_contact",
            "list_members",
            &["contact_id"],
            false,
        ))
        .await?;

        let mut segments = Table::create();
        segments
            .table("segments")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(string("name"))
            .col(string("description"))
            .col(text("expression"))
            .col(timestamp_with_time_zone("created_at"))
            .col(timestamp_with_time_zone("updated_at"));
        tenant_col(&mut segments, "segments");
        m.create_table(segments.take()).await?;
        m.create_index(index(
            "ux_segments_name",
            "segments",
            &["tenant_id", "name"],
            true,
        ))
        .await?;

        let mut consents = Table::create();
        consents
            .table("contact_consents")
            .if_not_exists()
            .col(uuid("contact_id"))
            .col(string("channel"))
            .col(string("status"))
            .col(string("source"))
            .col(string_null("detail"))
            .col(timestamp_with_time_zone("recorded_at"))
            .primary_key(Index::create().col("contact_id").col("channel"));
        tenant_col(&mut consents, "contact_consents");
        fk(
            &mut consents,
            "contact_consents",
            "contact_id",
            "contacts",
            ForeignKeyAction::Cascade,
        );
        m.create_table(consents.take()).await?;
        m.create_index(index(
            "ix_contact_consents_status",
            "contact_consents",
            &["tenant_id", "channel", "status"],
            false,
        ))
        .await?;

        let mut history = Table::create();
        history
            .table("consent_events")
            .if_not_exists()
            .col(big_pk_auto("id"))
            .col(uuid_null("contact_id"))
            .col(string("channel"))
            .col(string("status"))
            .col(string("source"))
            .col(string_null("address"))
            .col(string_null("detail"))
            .col(string_null("actor"))
            .col(timestamp_with_time_zone("recorded_at"));
        tenant_col(&mut history, "consent_events");
        m.create_table(history.take()).await?;
        m.create_index(index(
            "ix_consent_events_contact",
            "consent_events",
            &["tenant_id", "contact_id", "id"],
            false,
        ))
        .await?;

        let mut supp = Table::create();
        supp.table("suppressions")
            .if_not_exists()
            .col(big_pk_auto("id"))
            .col(string("channel"))
            .col(string("address"))
            .col(string("reason"))
            .col(string("source"))
            .col(string_null("detail"))
            .col(timestamp_with_time_zone("created_at"));
        tenant_col(&mut supp, "suppressions");
        m.create_table(supp.take()).await?;
        m.create_index(index(
            "ux_suppressions_address",
            "suppressions",
            &["tenant_id", "channel", "address"],
            true,
        ))
        .await?;

        let mut uploads = Table::create();
        uploads
            .table("uploads")
            .if_not_exists()
            .col(pk_uuid("id"))
            .col(string("filename"))
            .col(string("content_type"))
            .col(big_integer("size_bytes"))
            .col(string_null("sha256"))
            .col(boolean("complete"))
            .col(uuid_null("created_by"))
            .col(timestamp_with_time_zone("created_at"));
        tenant_col(&mut uploads, "uploads");
        m.create_table(uploads.take()).await?;

        let mut chunks = Table::create();
        chunks
            .table("upload_chunks")
            .if_not_exists()
            .col(uuid("upload_id"))
            .col(integer("seq"))
            .col(blob("data"))
            .primary_key(Index::create().col("upload_id").col("seq"));
        tenant_col(&mut chunks, "upload_chunks");
        fk(
            &mut chunks,
            "upload_chunks",
            "upload_id",
            "uploads",
            ForeignKeyAction::Cascade,
        );
        m.create_table(chunks.take()).await?;

        let mut errors = Table::create();
        errors
            .table("import_errors")
            .if_not_exists()
            .col(big_pk_auto("id"))
            .col(uuid("job_id"))
            .col(big_integer("row_number"))
            .col(text("raw"))
            .col(json("errors"));
        tenant_col(&mut errors, "import_errors");
        m.create_table(errors.take()).await?;
        m.create_index(index(
            "ix_import_errors_job",
            "import_errors",
            &["job_id", "row_number"],
            false,
        ))
        .await?;

        // Interactions may belong to a contact (their activity).
        m.alter_table(
            Table::alter()
                .table("interactions")
                .add_column(uuid_null("contact_id"))
                .take(),
        )
        .await?;
        m.create_index(index(
            "ix_interactions_contact",
            "interactions",
            &["tenant_id", "contact_id"],
            false,
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_interactions_contact")
                .table("interactions")
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("interactions")
                .drop_column("contact_id")
                .take(),
        )
        .await?;
        for t in [
            "import_errors",
            "upload_chunks",
            "uploads",
            "suppressions",
            "consent_events",
            "contact_consents",
            "segments",
            "list_members",
            "contact_lists",
            "contact_attributes",
            "attribute_definitions",
            "contact_tags",
            "contact_emails",
            "contact_phones",
            "contacts",
        ] {
            m.drop_table(Table::drop().table(t).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
