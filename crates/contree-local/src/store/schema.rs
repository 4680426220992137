//! The database schema and its migrations.
//!
//! `PRAGMA user_version` records how many migrations a database has had; [`migrate`] applies
//! the missing ones in one transaction. Migrations are append-only: never edit a released one,
//! add the next.
//!
//! Timestamps are Unix nanoseconds (`*_ns`, exact round trips; ordering and range filters
//! are integer comparisons), UUIDs hyphenated lowercase text, JSON columns text. `seq` (the
//! rowid) breaks ties between equal timestamps so that "newest first" is stable.

use contree_core::{Error, Result};
use rusqlite::Connection;

use super::db_error;

const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "
    CREATE TABLE images (
        seq            INTEGER PRIMARY KEY,
        uuid           TEXT NOT NULL UNIQUE,
        parent         TEXT REFERENCES images(uuid),
        layer          TEXT,
        tag            TEXT UNIQUE,
        created_ns     INTEGER NOT NULL,
        operation_uuid TEXT,
        env            TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX images_by_created ON images(created_ns DESC, seq DESC);
    CREATE INDEX images_by_parent ON images(parent);

    CREATE TABLE files (
        seq        INTEGER PRIMARY KEY,
        uuid       TEXT NOT NULL UNIQUE,
        sha256     TEXT NOT NULL UNIQUE,
        size       INTEGER NOT NULL,
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL
    );
    CREATE INDEX files_by_created ON files(created_ns DESC, seq DESC);

    CREATE TABLE operations (
        seq               INTEGER PRIMARY KEY,
        uuid              TEXT NOT NULL UNIQUE,
        kind              TEXT NOT NULL,
        status            TEXT NOT NULL,
        error             TEXT,
        created_ns        INTEGER NOT NULL,
        started_ns        INTEGER,
        finished_ns       INTEGER,
        duration          REAL,
        image_uuid        TEXT,
        result_image_uuid TEXT,
        result_tag        TEXT,
        metadata          TEXT NOT NULL
    );
    CREATE INDEX operations_by_created ON operations(created_ns DESC, seq DESC);
    CREATE INDEX operations_by_status ON operations(status);

    -- One row per event: its JSON, keyed by its id.

    CREATE TABLE operation_events (
        operation TEXT NOT NULL REFERENCES operations(uuid),
        id        INTEGER NOT NULL,
        event     TEXT NOT NULL,
        PRIMARY KEY (operation, id)
    ) WITHOUT ROWID;
    ",
    // 2: images imported from registries: more layers below `layer` (a JSON array of layer
    // ids, topmost first), and images that stand on their own root instead of the base.
    "
    ALTER TABLE images ADD COLUMN lower_layers TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE images ADD COLUMN own_root INTEGER NOT NULL DEFAULT 0;
    ",
    // 3: an image's default working directory (`preserve_cwd`); NULL means `/`.
    "ALTER TABLE images ADD COLUMN workdir TEXT;",
];

/// Brings the database to the latest schema version.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction().map_err(db_error)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_error)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(Error::from_status(
            500,
            format!(
                "the store database has schema version {version}, newer than this server's {known}; \
                 use a newer contree-local or another data dir"
            ),
            None,
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(db_error)?;
        tx.pragma_update(None, "user_version", i as i64 + 1).map_err(db_error)?;
    }
    tx.commit().map_err(db_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_databases() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        // Running again is a no-op, not a "table exists" failure.
        migrate(&mut conn).unwrap();

        conn.pragma_update(None, "user_version", 999).unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn images_of_a_first_version_database_get_no_workdir() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute("INSERT INTO images (uuid, created_ns) VALUES ('u', 1)", []).unwrap();
        migrate(&mut conn).unwrap();
        let workdir: Option<String> =
            conn.query_row("SELECT workdir FROM images WHERE uuid = 'u'", [], |r| r.get(0)).unwrap();
        assert_eq!(workdir, None, "an older image keeps the default working directory");
    }
}
