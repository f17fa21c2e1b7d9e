//! Trunk registration: whether we REGISTER with the trunk, and for how long
//! we ask each registration to last.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement (SQLite alters one at a time).
        m.alter_table(
            Table::alter()
                .table("sip_trunks")
                .add_column(boolean("register").default(false))
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("sip_trunks")
                .add_column(integer("register_expires_secs").default(3600))
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in ["register_expires_secs", "register"] {
            m.alter_table(
                Table::alter()
                    .table("sip_trunks")
                    .drop_column(Alias::new(col))
                    .take(),
            )
            .await?;
        }
        Ok(())
    }
}
