//! Forwarding numbers: a number may send its calls out through one of the
//! tenant's trunks (to a fixed number, or to the number dialed) instead of
//! into a queue or flow, and may greet callers with a prompt first.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: [&str; 3] = ["forward_trunk_id", "forward_to", "greeting"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement (SQLite alters one at a time). The trunk
        // is checked by the service (a deleted trunk leaves the number
        // without its entry point, answered 480).
        for col in [
            uuid_null("forward_trunk_id"),
            string_null("forward_to"),
            string_null("greeting"),
        ] {
            m.alter_table(Table::alter().table("sip_numbers").add_column(col).take())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in COLUMNS.iter().rev() {
            m.alter_table(
                Table::alter()
                    .table("sip_numbers")
                    .drop_column(Alias::new(*col))
                    .take(),
            )
            .await?;
        }
        Ok(())
    }
}
