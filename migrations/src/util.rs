//! Helpers shared by migrations. Changing one changes how a migration that
//! has landed would run on a new database: only ever add to this file.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// A `tenant_id` column with its foreign key to `tenants`. Every table but
/// `tenants` has one: rows always belong to exactly one tenant.
pub fn tenant_col(t: &mut TableCreateStatement, table: &'static str) {
    t.col(uuid("tenant_id")).foreign_key(
        ForeignKey::create()
            .name(format!("fk_{table}_tenant"))
            .from(table, "tenant_id")
            .to("tenants", "id")
            .on_delete(ForeignKeyAction::Cascade),
    );
}

pub fn fk(
    t: &mut TableCreateStatement,
    table: &'static str,
    col: &'static str,
    to: &'static str,
    on_delete: ForeignKeyAction,
) {
    t.foreign_key(
        ForeignKey::create()
            .name(format!("fk_{table}_{col}"))
            .from(table, col)
            .to(to, "id")
            .on_delete(on_delete),
    );
}

pub fn index(
    name: &str,
    table: &'static str,
    cols: &[&'static str],
    unique: bool,
) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(table).if_not_exists();
    for c in cols {
        i.col(*c);
    }
    if unique {
        i.unique();
    }
    i.take()
}
