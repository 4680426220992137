//! Persistent state of the local server: SQLite metadata, content-addressed blobs and layer
//! directories.
//!
//! Everything lives under one data directory:
//!
//! ```text
//! <data>/db.sqlite        images, tags, files, operations and their event logs
//! <data>/blobs/<sha256>   uploaded files, named by the SHA-256 of their content
//! <data>/layers/<id>/     one immutable overlay upper dir per image layer
//! ```
//!
//! [`Store`] is a cheap-to-clone handle (an `Arc` inside) with a synchronous, blocking API:
//! async code calls it on a blocking thread (`spawn_blocking`), because a call waits for
//! SQLite, for the disk and for other callers' locks, and under load those waits add up to
//! milliseconds that would stall the executor's few threads.
//!
//! SQLite runs in WAL mode, where readers never wait for a writer and see every transaction
//! committed before they start. The store uses that: one writer connection (behind a mutex,
//! since SQLite allows one writer at a time anyway) and a small pool of read-only connections
//! ([`READERS`]), so status reads and listings proceed while a run's results are committed.
//! Each lock is held for one call only and no guard escapes a method, so none is ever held
//! across an `.await`. Calls that copy file content ([`Store::put_blob`]) take time
//! proportional to the content: feed a [`BlobWriter`](blobs::BlobWriter) chunk by chunk
//! to keep memory bounded.
//!
//! Errors are [`contree_core::Error`]s whose kind says what the API should answer: bad input
//! is `InvalidArgument` naming the argument, a missing record is `NotFound` (status 404), a
//! duplicate is `Conflict` (409), and database or disk failures are `Server` (500) or `Io`.

mod blobs;
mod events;
mod files;
mod images;
mod layers;
mod operations;
mod schema;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::Duration;

use contree_core::{Error, Result};
use rusqlite::Connection;
use time::OffsetDateTime;
use uuid::Uuid;

pub use events::EventRow;
pub use files::{FileFilter, FileRecord};
pub use images::{ImageFilter, ImageRecord};
pub use operations::{OpFilter, OperationRecord};

/// Default page size of the list filters, as the API's own default.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;

/// Prepared statements kept per connection. Comfortably more than the distinct statements
/// the store uses, so none is ever re-prepared.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// How long a write waits for another connection (another process on the same data dir)
/// before failing. One process uses one connection, so this only matters for tooling.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections kept next to the writer. Reads take microseconds, so a few are
/// enough to keep the executor's and the blocking pool's threads from queueing behind one
/// another; each costs a descriptor and a page cache.
pub const READERS: usize = 4;

/// Handle to the local server's persistent state. Clone it freely: clones share one
/// connection and one data directory.
///
/// See the [module documentation](self) for the locking rules (sync API, never held across
/// an `.await`).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    /// Read-only connections ([`READERS`]); see [`Store::with_read`].
    readers: Vec<Mutex<Connection>>,
    /// Where the next read starts looking for a free reader (spreads the load).
    next_reader: AtomicUsize,
    data_dir: PathBuf,
    blobs_dir: PathBuf,
    layers_dir: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("data_dir", &self.inner.data_dir).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when needed) the store in `data_dir`: the directory itself, `blobs/`,
    /// `layers/` and `db.sqlite` with its schema, migrated to the current version.
    ///
    /// Upload temp files left in `blobs/` by a crash are removed, so a data dir must not be
    /// shared by two running servers.
    pub fn open(data_dir: &Path) -> Result<Store> {
        let blobs_dir = data_dir.join("blobs");
        let layers_dir = data_dir.join("layers");
        for dir in [data_dir, &blobs_dir, &layers_dir] {
            fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create store directory {}", dir.display()), e))?;
        }
        blobs::remove_stale_uploads(&blobs_dir)?;

        let db_path = data_dir.join("db.sqlite");
        create_private_file(&db_path)?;
        let mut conn = Connection::open(&db_path).map_err(|e| {
            Error::from_status(500, format!("cannot open the store database {}", db_path.display()), None)
                .with_source(e)
        })?;
        configure(&conn).map_err(db_error)?;
        schema::migrate(&mut conn)?;
        // Opened after the migration, so readers never see an old schema.
        let readers = (0..READERS)
            .map(|_| open_reader(&db_path).map(Mutex::new))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::from_status(500, format!("cannot open the store database {}", db_path.display()), None)
                    .with_source(e)
            })?;

        Ok(Store {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                readers,
                next_reader: AtomicUsize::new(0),
                data_dir: data_dir.to_path_buf(),
                blobs_dir,
                layers_dir,
            }),
        })
    }

    /// The data directory this store was opened on.
    #[cfg(test)]
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// `<data>/blobs`, where uploaded files live.
    pub fn blobs_dir(&self) -> &Path {
        &self.inner.blobs_dir
    }

    /// `<data>/layers`, where image layers live.
    pub fn layers_dir(&self) -> &Path {
        &self.inner.layers_dir
    }

    /// Hands the page caches of idle connections back to the allocator (SQLite's
    /// `shrink_memory`), so that a trim of the heap can return them to the system. Busy
    /// connections are skipped: they are in use, and the next idle trim gets them.
    ///
    /// Why: each connection keeps up to 2 MiB of pages (SQLite's default `cache_size`), and a
    /// burst of runs fills all of them with event rows that no one reads again. The caches
    /// refill on demand, so this costs a few page reads on the next queries, once.
    pub fn release_memory(&self) {
        let conns = std::iter::once(&self.inner.conn).chain(self.inner.readers.iter());
        for conn in conns {
            if let Ok(conn) = conn.try_lock()
                && let Err(e) = conn.execute_batch("PRAGMA shrink_memory")
            {
                tracing::debug!(error = %e, "SQLite could not release its page cache");
            }
        }
    }

    /// Runs `f` with the connection locked. The guard never leaves this function, which is what
    /// keeps the lock from being held across an `.await` by any caller.
    fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        // A panic while the lock was held cannot leave a half-applied write behind (every
        // multi-statement write is a transaction, rolled back on drop), so a poisoned lock
        // still guards a consistent connection.
        let mut conn = self.inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    }

    /// Runs the read-only `f` on a free reader connection, so it does not wait for the
    /// writer (WAL: it sees everything committed before it starts). Waits for a reader only
    /// when all are busy. As with [`with_conn`](Self::with_conn), the guard never leaves.
    fn with_read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let readers = &self.inner.readers;
        let start = self.inner.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..readers.len() {
            match readers[(start + i) % readers.len()].try_lock() {
                Ok(conn) => return f(&conn),
                Err(TryLockError::Poisoned(p)) => return f(&p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        // A read cannot leave a connection half-changed, so a poisoned one is still usable.
        let conn = readers[start % readers.len()].lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn)
    }
}

/// A connection for [`Store::with_read`]: `query_only`, so a write through it is an error
/// rather than a second writer.
fn open_reader(db_path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(db_path)?;
    conn.pragma_update(None, "query_only", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(conn)
}

/// Creates `path` empty with mode 0600 unless it exists. SQLite gives its `-wal` and `-shm`
/// files the database's mode, so they are private too.
fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(format!("cannot create {}", path.display()), e)),
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // WAL lets readers proceed during a write and makes commits cheap; with WAL,
    // synchronous=NORMAL only risks the last commits on power loss, never corruption.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite refused WAL mode; the store will be slower");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(())
}

/// The current time in UTC, truncated to microseconds so that it survives
/// [`format_timestamp`] and a round trip through the store unchanged.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().truncate_to_microsecond()
}

/// Formats `t` as RFC 3339 in UTC with microseconds and a `Z` suffix, the way the API
/// reports timestamps.
///
pub fn format_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Timestamps are stored as Unix nanoseconds: exact round trips, and ordering and range
/// filters are integer comparisons on an index.
fn to_nanos(arg: &'static str, t: OffsetDateTime) -> Result<i64> {
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| Error::invalid_argument(arg, "timestamp is outside the years 1678..2261"))
}

fn opt_to_nanos(arg: &'static str, t: Option<OffsetDateTime>) -> Result<Option<i64>> {
    t.map(|t| to_nanos(arg, t)).transpose()
}

fn from_nanos(nanos: i64) -> rusqlite::Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e)))
}

fn col_time(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<OffsetDateTime> {
    from_nanos(row.get(idx)?)
}

fn col_opt_time(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<OffsetDateTime>> {
    row.get::<_, Option<i64>>(idx)?.map(from_nanos).transpose()
}

fn parse_uuid(idx: usize, text: &str) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}

/// Counts and ids are stored as SQLite integers (i64) and never negative.
fn col_u64(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

fn col_opt_u64(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(v) => u64::try_from(v).map(Some).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v)),
    }
}

fn col_uuid(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Uuid> {
    parse_uuid(idx, &row.get::<_, String>(idx)?)
}

fn col_opt_uuid(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<Uuid>> {
    row.get::<_, Option<String>>(idx)?.map(|s| parse_uuid(idx, &s)).transpose()
}

fn col_json<T: serde::de::DeserializeOwned>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}

fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

fn opt_uuid_text(id: Option<Uuid>) -> Option<String> {
    id.map(uuid_text)
}

/// `limit`/`offset` as SQLite wants them; a zero limit is refused like the API does.
fn page(limit: u32, offset: u64) -> Result<(i64, i64)> {
    if limit == 0 {
        return Err(Error::invalid_argument("limit", "must be at least 1"));
    }
    let offset = i64::try_from(offset).map_err(|_| Error::invalid_argument("offset", "is too large"))?;
    Ok((i64::from(limit), offset))
}

/// A database failure: a 500, with SQLite's message (which names tables and constraints,
/// never values).
fn db_error(e: rusqlite::Error) -> Error {
    Error::from_status(500, "store database error", None).with_source(e)
}

fn not_found(what: &str, id: impl fmt::Display) -> Error {
    Error::from_status(404, format!("{what} `{id}` not found"), None)
}

fn conflict(message: impl Into<String>) -> Error {
    Error::from_status(409, message, None)
}

/// The extended SQLite result code of a constraint failure, if `e` is one.
fn constraint_code(e: &rusqlite::Error) -> Option<i32> {
    match e {
        rusqlite::Error::SqliteFailure(err, _) if err.code == rusqlite::ErrorCode::ConstraintViolation => {
            Some(err.extended_code)
        }
        _ => None,
    }
}

/// Makes the rename of an entry of `dir` durable: without it a crash may forget the rename
/// even though the database, committed later, already refers to the new name.
fn fsync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("cannot sync directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339_utc() {
        let t = time::macros::datetime!(2024-02-29 23:59:59.123456789 -02:00);
        assert_eq!(format_timestamp(t), "2024-03-01T01:59:59.123456Z");
        let parsed =
            OffsetDateTime::parse(&format_timestamp(t), &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(parsed, t.truncate_to_microsecond());
        let n = now();
        assert_eq!(n.nanosecond() % 1000, 0);
        assert_eq!(n.offset(), time::UtcOffset::UTC);
        assert_eq!(from_nanos(to_nanos("t", t).unwrap()).unwrap(), t);
    }

    #[test]
    fn open_creates_layout_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        let store = Store::open(&data).unwrap();
        assert!(data.join("db.sqlite").is_file());
        for f in ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm"] {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(fs::metadata(data.join(f)).unwrap().mode() & 0o777, 0o600, "{f}");
        }
        assert!(data.join("blobs").is_dir());
        assert!(data.join("layers").is_dir());
        assert_eq!(store.data_dir(), data);
        assert_eq!(store.blobs_dir(), data.join("blobs"));
        assert_eq!(store.layers_dir(), data.join("layers"));
        let mode: String =
            store.with_conn(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(db_error)).unwrap();
        assert_eq!(mode, "wal");
        drop(store);
        Store::open(&data).unwrap();
    }

    #[test]
    fn images_tags_blobs_and_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let base = ImageRecord::new(Uuid::new_v4(), None, None).with_tag("contree-local/base:latest");
        store.insert_image(&base).unwrap();
        assert_eq!(store.find_by_tag("contree-local/base:latest").unwrap().unwrap().uuid, base.uuid);
        let (sha, size) = store.put_blob(&b"hello"[..]).unwrap();
        let file = store.insert_or_touch_file(&sha, size).unwrap();
        assert_eq!(file.size, 5);
        assert_eq!(fs::read(store.blob_path(&sha).unwrap()).unwrap(), b"hello");
        let tagged = store.list_images(&ImageFilter { tagged: true, ..ImageFilter::default() }).unwrap();
        assert_eq!(tagged.len(), 1);
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        use time::macros::datetime;
        assert_eq!(format_timestamp(datetime!(2025-01-02 03:04:05.678 +01:00)), "2025-01-02T02:04:05.678000Z");
    }

    #[test]
    fn reopen_keeps_everything() {
        use contree_core::models::{OperationKind, OperationStatus};
        use serde_json::json;

        let dir = tempfile::tempdir().unwrap();
        let (base, child, file, op, layer) = {
            let store = Store::open(dir.path()).unwrap();
            let base = ImageRecord::new(Uuid::new_v4(), None, None).with_tag("contree-local/base:latest");
            store.insert_image(&base).unwrap();
            let upper = dir.path().join("runs/x/upper");
            fs::create_dir_all(&upper).unwrap();
            fs::write(upper.join("f"), b"layer content").unwrap();
            let layer = store.adopt_layer(&upper).unwrap();
            let child = ImageRecord::new(Uuid::new_v4(), Some(base.uuid), Some(layer.clone()))
                .with_tag("mine:1")
                .with_env([("K".to_owned(), "V".to_owned())].into());
            store.insert_image(&child).unwrap();
            let (sha, size) = store.put_blob(&b"payload"[..]).unwrap();
            let file = store.insert_or_touch_file(&sha, size).unwrap();
            let mut op = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({"command": "ls"}));
            store.insert_operation(&op).unwrap();
            op.status = OperationStatus::Success;
            op.result_image_uuid = Some(child.uuid);
            store.complete_operation(&op, &[EventRow::new(1, json!({"type": "completion"}))], None).unwrap();
            (base, child, file, op, layer)
        };

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get_image(base.uuid).unwrap().unwrap(), base);
        assert_eq!(store.get_image(child.uuid).unwrap().unwrap(), child);
        assert_eq!(store.find_by_tag("mine:1").unwrap().unwrap().uuid, child.uuid);
        assert_eq!(store.list_images(&ImageFilter::default()).unwrap().len(), 2);
        assert_eq!(store.layer_stack(child.uuid).unwrap().layers, vec![store.layer_path(&layer).unwrap()]);
        assert_eq!(fs::read(store.layer_path(&layer).unwrap().join("f")).unwrap(), b"layer content");
        assert_eq!(store.get_file_by_sha(&file.sha256).unwrap().unwrap(), file);
        assert_eq!(fs::read(store.blob_path(&file.sha256).unwrap()).unwrap(), b"payload");
        assert_eq!(store.get_operation(op.uuid).unwrap().unwrap(), op);
        assert_eq!(store.load_events(op.uuid, None).unwrap(), vec![EventRow::new(1, json!({"type": "completion"}))]);
        // Nothing was running, so a restart fails nothing.
        assert!(store.fail_interrupted_operations().unwrap().is_empty());
    }

    /// The per-call cost of a run's store traffic. Ignored by default (timing on shared CI
    /// machines is noisy); run with `cargo test -p contree-local store_call_costs -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore]
    fn store_call_costs() {
        use contree_core::models::{OperationKind, OperationStatus};
        use serde_json::json;
        use std::time::Instant;

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let base = ImageRecord::new(Uuid::new_v4(), None, None).with_tag("contree-local/base:latest");
        store.insert_image(&base).unwrap();
        let rounds = 500;
        let mut t = [std::time::Duration::ZERO; 6];
        for i in 0..rounds {
            let start = Instant::now();
            let source = store.find_by_tag("contree-local/base:latest").unwrap().unwrap();
            let _ = store.layer_stack(source.uuid).unwrap();
            t[0] += start.elapsed();

            let start = Instant::now();
            let mut op = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({"command": "true"}));
            store.insert_operation(&op).unwrap();
            t[1] += start.elapsed();

            let start = Instant::now();
            op.status = OperationStatus::Executing;
            op.started_at = Some(now());
            store.update_operation(&op).unwrap();
            t[2] += start.elapsed();

            let start = Instant::now();
            op.status = OperationStatus::Success;
            let events: Vec<EventRow> = (1..=8)
                .map(|id| EventRow::new(id, json!({"id": id, "type": "stdout", "data": {"value": "x"}})))
                .collect();
            let image = ImageRecord::new(Uuid::new_v4(), Some(source.uuid), None).with_operation(op.uuid);
            store.complete_operation(&op, &events, Some(&image)).unwrap();
            t[3] += start.elapsed();

            let start = Instant::now();
            let _ = store.get_operation(op.uuid).unwrap().unwrap();
            let _ = store.list_images(&ImageFilter { limit: 10, offset: (i % 3) as u64, ..ImageFilter::default() });
            t[4] += start.elapsed();

            let upper = dir.path().join("runs").join(op.uuid.to_string()).join("upper");
            fs::create_dir_all(upper.join("etc")).unwrap();
            fs::write(upper.join("etc/x"), b"x").unwrap();
            let start = Instant::now();
            store.adopt_layer(&upper).unwrap();
            t[5] += start.elapsed();
        }
        let names = [
            "resolve image + layers",
            "insert op",
            "update op",
            "complete op (8 events + image)",
            "get op + list",
            "adopt layer",
        ];
        for (name, total) in names.iter().zip(t) {
            let per_call = total / rounds;
            println!("{name}: {per_call:?} per call");
            assert!(per_call < std::time::Duration::from_millis(5), "{name} took {per_call:?}");
        }
    }

    /// While the writer is inside a transaction (a run's results being committed), reads go
    /// on without waiting: they see the last commit, then the new one once it lands.
    #[test]
    fn reads_proceed_while_the_writer_commits() {
        use contree_core::models::{OperationKind, OperationStatus};
        use serde_json::json;
        use std::sync::mpsc;

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut op = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({}));
        store.insert_operation(&op).unwrap();
        let (in_tx, in_tx_rx) = mpsc::channel();
        let (commit, commit_rx) = mpsc::channel::<()>();
        let writer = {
            let store = store.clone();
            let uuid = op.uuid;
            std::thread::spawn(move || {
                store
                    .with_conn(|conn| {
                        let tx = conn.transaction().map_err(db_error)?;
                        tx.execute("UPDATE operations SET status = 'SUCCESS' WHERE uuid = ?1", [uuid_text(uuid)])
                            .map_err(db_error)?;
                        in_tx.send(()).unwrap();
                        commit_rx.recv_timeout(Duration::from_secs(30)).unwrap();
                        tx.commit().map_err(db_error)
                    })
                    .unwrap();
            })
        };
        in_tx_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        // The writer holds its lock and an open write transaction; readers don't wait for it.
        for _ in 0..2 * READERS {
            let (done, done_rx) = mpsc::channel();
            let reader = store.clone();
            let uuid = op.uuid;
            std::thread::spawn(move || {
                let _ = done.send(reader.get_operation(uuid).map(|o| o.map(|o| o.status)));
            });
            let seen = done_rx.recv_timeout(Duration::from_secs(10)).expect("a read waited for the writer");
            assert_eq!(seen.unwrap(), Some(OperationStatus::Pending), "an uncommitted write was visible");
            assert_eq!(store.list_operations(&OpFilter::default()).unwrap().len(), 1);
        }
        commit.send(()).unwrap();
        writer.join().unwrap();
        op.status = OperationStatus::Success;
        assert_eq!(store.get_operation(op.uuid).unwrap().unwrap().status, OperationStatus::Success);
        // Readers are read-only: a write through one is refused, not a second writer.
        let err = store.with_read(|c| c.execute("DELETE FROM operations", []).map_err(db_error)).unwrap_err();
        assert!(err.to_string().contains("store database error"), "{err}");
        assert_eq!(store.get_operation(op.uuid).unwrap().unwrap(), op);
    }

    /// Bytes of page cache that SQLite itself counts for `conn`.
    fn cache_used(conn: &Connection) -> i32 {
        let (mut current, mut high) = (0, 0);
        // SAFETY: the handle is live for the duration of the borrow, and the status call only
        // reads counters into the two ints.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                conn.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
                &mut current,
                &mut high,
                0,
            )
        };
        assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
        current
    }

    #[test]
    fn idle_connections_give_their_page_cache_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // A burst's worth of operations, written and then listed through every reader.
        let payload = "x".repeat(2048);
        for _ in 0..600 {
            let op = OperationRecord::new(
                Uuid::new_v4(),
                contree_core::models::OperationKind::Instance,
                serde_json::json!({ "p": payload }),
            );
            store.insert_operation(&op).unwrap();
        }
        let filter = OpFilter { limit: 1000, ..OpFilter::default() };
        for reader in &store.inner.readers {
            let conn = reader.lock().unwrap();
            let n: i64 =
                conn.query_row("SELECT count(*) FROM operations WHERE length(metadata) > 0", [], |r| r.get(0)).unwrap();
            assert_eq!(n, 600);
        }
        assert_eq!(store.list_operations(&filter).unwrap().len(), 600);
        let filled: Vec<i32> = std::iter::once(&store.inner.conn)
            .chain(&store.inner.readers)
            .map(|c| cache_used(&c.lock().unwrap()))
            .collect();
        assert!(filled.iter().all(|&b| b > 256 * 1024), "caches were not filled: {filled:?}");

        // A busy connection is skipped, not waited for.
        let busy = store.inner.readers[0].lock().unwrap();
        store.release_memory();
        let held = cache_used(&busy);
        drop(busy);
        assert_eq!(held, filled[1], "a connection in use was touched");
        let released: Vec<i32> = std::iter::once(&store.inner.conn)
            .chain(&store.inner.readers[1..])
            .map(|c| cache_used(&c.lock().unwrap()))
            .collect();
        assert!(released.iter().all(|&b| b < 64 * 1024), "page caches kept: {released:?} (filled: {filled:?})");
        // And the store still answers.
        assert_eq!(store.list_operations(&filter).unwrap().len(), 600);
    }

    #[test]
    fn zero_limit_is_invalid() {
        let err = page(0, 0).unwrap_err();
        assert_eq!(err.argument(), Some("limit"));
        assert_eq!(page(5, 7).unwrap(), (5, 7));
        assert_eq!(page(1, u64::MAX).unwrap_err().argument(), Some("offset"));
    }
}
