//! Rows of the contacts context. Generated shape; only `contacts::store`
//! and its siblings touch these directly.

#![allow(missing_docs)]

pub mod contact {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "contacts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: ContactId,
        pub tenant_id: TenantId,
        pub external_id: Option<String>,
        pub first_name: String,
        pub last_name: String,
        pub search_name: String,
        pub timezone: Option<String>,
        pub timezone_source: Option<String>,
        pub language: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod phone {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_phones")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: TenantId,
        pub contact_id: ContactId,
        pub e164: String,
        pub label: Option<String>,
        pub position: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod email {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_emails")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: TenantId,
        pub contact_id: ContactId,
        pub email: String,
        pub position: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod tag {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_tags")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: ContactId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub tag: String,
        pub tenant_id: TenantId,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod attr_def {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "attribute_definitions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: TenantId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub kind: String,
        pub label: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod attr {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_attributes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: ContactId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub tenant_id: TenantId,
        pub text_value: Option<String>,
        pub num_value: Option<f64>,
        pub bool_value: Option<bool>,
        pub date_value: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod list {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_lists")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: ListId,
        pub tenant_id: TenantId,
        pub name: String,
        pub description: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod member {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "list_members")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub list_id: ListId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: ContactId,
        pub tenant_id: TenantId,
        pub added_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod segment {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "segments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: SegmentId,
        pub tenant_id: TenantId,
        pub name: String,
        pub description: String,
        pub expression: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod consent {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_consents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: ContactId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel: String,
        pub tenant_id: TenantId,
        pub status: String,
        pub source: String,
        pub detail: Option<String>,
        pub recorded_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod consent_event {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "consent_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: TenantId,
        pub contact_id: Option<ContactId>,
        pub channel: String,
        pub status: String,
        pub source: String,
        pub address: Option<String>,
        pub detail: Option<String>,
        pub actor: Option<String>,
        pub recorded_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod suppression {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "suppressions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: TenantId,
        pub channel: String,
        pub address: String,
        pub reason: String,
        pub source: String,
        pub detail: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod upload {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "uploads")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: UploadId,
        pub tenant_id: TenantId,
        pub filename: String,
        pub content_type: String,
        pub size_bytes: i64,
        pub sha256: Option<String>,
        pub complete: bool,
        pub created_by: Option<Uuid>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod chunk {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "upload_chunks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub upload_id: UploadId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i32,
        pub tenant_id: TenantId,
        #[sea_orm(column_type = "Blob")]
        pub data: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod import_error {
    use sea_orm::entity::prelude::*;

    #[allow(unused_imports)]
    use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "import_errors")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: TenantId,
        pub job_id: JobId,
        pub row_number: i64,
        pub raw: String,
        pub errors: Json,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
