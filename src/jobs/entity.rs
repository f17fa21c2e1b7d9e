//! The `job_records` table (apalis owns `Jobs`; SQLite names are case-insensitive).

pub mod job {
    use sea_orm::entity::prelude::*;

    use crate::ids::{JobId, TenantId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "job_records")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: JobId,
        pub tenant_id: TenantId,
        pub kind: String,
        pub status: String,
        pub params: Json,
        pub progress_done: i64,
        pub progress_total: Option<i64>,
        pub checkpoint: Option<Json>,
        pub result: Option<Json>,
        pub error: Option<String>,
        pub attempts: i32,
        pub cancel_requested: bool,
        pub created_by: Option<Uuid>,
        /// The node running the job, while it holds the lease.
        pub lease_owner: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
        /// When a "run" message was last pushed to the job storage.
        pub pushed_at: DateTimeUtc,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub started_at: Option<DateTimeUtc>,
        pub finished_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
