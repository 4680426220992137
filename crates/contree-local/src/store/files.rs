//! File records: the API's view of uploaded blobs (`/files`). One record per distinct content:
//! uploading the same bytes again returns the same record with `updated_at` bumped.

use contree_core::{Error, Result};
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::blobs::normalize_sha;
use super::{
    DEFAULT_PAGE_LIMIT, Store, col_time, col_u64, col_uuid, db_error, now, opt_to_nanos, page, to_nanos, uuid_text,
};

/// One uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// The file's id.
    pub uuid: Uuid,
    /// SHA-256 of the content, lowercase hex; the blob is at [`Store::blob_path`].
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// When this content was first uploaded.
    pub created_at: OffsetDateTime,
    /// When this content was last uploaded.
    pub updated_at: OffsetDateTime,
}

/// Which files [`Store::list_files`] returns. The default lists every file, first page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFilter {
    /// Only files created at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only files created strictly before this time.
    pub until: Option<OffsetDateTime>,
    /// Page size, at least 1.
    pub limit: u32,
    /// How many matching files to skip.
    pub offset: u64,
}

impl Default for FileFilter {
    fn default() -> Self {
        FileFilter { since: None, until: None, limit: DEFAULT_PAGE_LIMIT, offset: 0 }
    }
}

const COLUMNS: &str = "uuid, sha256, size, created_ns, updated_ns";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        uuid: col_uuid(row, 0)?,
        sha256: row.get(1)?,
        size: col_u64(row, 2)?,
        created_at: col_time(row, 3)?,
        updated_at: col_time(row, 4)?,
    })
}

impl Store {
    /// Records that content `sha256` of `size` bytes was uploaded: a new record the first
    /// time, else the existing record with `updated_at` set to now. The blob must already be
    /// stored ([`Store::put_blob`]).
    ///
    /// `InvalidArgument` for a malformed digest (`sha256`), a missing blob (`sha256`), or a
    /// size that contradicts the stored content (`size`).
    pub fn insert_or_touch_file(&self, sha256: &str, size: u64) -> Result<FileRecord> {
        let sha = normalize_sha(sha256)?;
        let blob_len = std::fs::metadata(self.blobs_dir().join(&sha))
            .map_err(|_| Error::invalid_argument("sha256", format!("no blob `{sha}` is stored")))?
            .len();
        if blob_len != size {
            return Err(Error::invalid_argument("size", format!("blob `{sha}` holds {blob_len} bytes, not {size}")));
        }
        let size_sql = i64::try_from(size).map_err(|_| Error::invalid_argument("size", "is too large"))?;
        let at = to_nanos("updated_at", now())?;
        self.with_conn(|conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO files ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (sha256) DO UPDATE SET updated_ns = max(updated_ns, excluded.updated_ns)
                 RETURNING {COLUMNS}"
            ))
            .and_then(|mut st| st.query_row(params![uuid_text(Uuid::new_v4()), sha, size_sql, at], from_row))
            .map_err(db_error)
        })
    }

    /// The file record of content `sha256` (any case), if any. `InvalidArgument` for a
    /// malformed digest.
    pub fn get_file_by_sha(&self, sha256: &str) -> Result<Option<FileRecord>> {
        let sha = normalize_sha(sha256)?;
        self.with_read(|conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM files WHERE sha256 = ?1"))
                .and_then(|mut st| st.query_row([sha], from_row).optional())
                .map_err(db_error)
        })
    }

    /// The file record with this id, if any.
    pub fn get_file_by_uuid(&self, uuid: Uuid) -> Result<Option<FileRecord>> {
        self.with_read(|conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM files WHERE uuid = ?1"))
                .and_then(|mut st| st.query_row([uuid_text(uuid)], from_row).optional())
                .map_err(db_error)
        })
    }

    /// One page of file records matching `filter`, newest first.
    pub fn list_files(&self, filter: &FileFilter) -> Result<Vec<FileRecord>> {
        let (limit, offset) = page(filter.limit, filter.offset)?;
        let since = opt_to_nanos("since", filter.since)?;
        let until = opt_to_nanos("until", filter.until)?;
        self.with_read(|conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM files
                     WHERE (?1 IS NULL OR created_ns >= ?1) AND (?2 IS NULL OR created_ns < ?2)
                     ORDER BY created_ns DESC, seq DESC
                     LIMIT ?3 OFFSET ?4"
                ))
                .map_err(db_error)?;
            let rows = st.query_map(params![since, until, limit, offset], from_row).map_err(db_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn pause() {
        // Timestamps have microsecond resolution; make consecutive ones distinct.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }

    #[test]
    fn file_round_trip_and_dedup() {
        let (_d, store) = store();
        let (sha, size) = store.put_blob(&b"hello"[..]).unwrap();
        let first = store.insert_or_touch_file(&sha, size).unwrap();
        assert_eq!(first.sha256, sha);
        assert_eq!(first.size, 5);
        assert_eq!(first.created_at, first.updated_at);

        assert_eq!(store.get_file_by_sha(&sha).unwrap().unwrap(), first);
        assert_eq!(store.get_file_by_sha(&sha.to_uppercase()).unwrap().unwrap(), first);
        assert_eq!(store.get_file_by_uuid(first.uuid).unwrap().unwrap(), first);
        assert_eq!(store.get_file_by_uuid(Uuid::new_v4()).unwrap(), None);
        assert_eq!(store.get_file_by_sha(&"a".repeat(64)).unwrap(), None);
        assert_eq!(store.get_file_by_sha("zz").unwrap_err().argument(), Some("sha256"));

        pause();
        let (sha2, size2) = store.put_blob(&b"hello"[..]).unwrap();
        let again = store.insert_or_touch_file(&sha2, size2).unwrap();
        assert_eq!(again.uuid, first.uuid);
        assert_eq!(again.created_at, first.created_at);
        assert!(again.updated_at > first.updated_at);
        assert_eq!(store.list_files(&FileFilter::default()).unwrap(), vec![again]);
    }

    #[test]
    fn insert_requires_a_matching_blob() {
        let (_d, store) = store();
        let missing = "b".repeat(64);
        assert_eq!(store.insert_or_touch_file(&missing, 1).unwrap_err().argument(), Some("sha256"));
        assert_eq!(store.insert_or_touch_file("nope", 1).unwrap_err().argument(), Some("sha256"));
        let (sha, _) = store.put_blob(&b"abc"[..]).unwrap();
        assert_eq!(store.insert_or_touch_file(&sha, 4).unwrap_err().argument(), Some("size"));
        assert!(store.list_files(&FileFilter::default()).unwrap().is_empty());
    }

    #[test]
    fn list_is_newest_first_with_pages_and_time_window() {
        let (_d, store) = store();
        let mut records = Vec::new();
        for i in 0..4u8 {
            let (sha, size) = store.put_blob(&[i][..]).unwrap();
            records.push(store.insert_or_touch_file(&sha, size).unwrap());
            pause();
        }
        let shas = |v: Vec<FileRecord>| v.into_iter().map(|f| f.sha256).collect::<Vec<_>>();
        let newest_first: Vec<String> = records.iter().rev().map(|f| f.sha256.clone()).collect();
        assert_eq!(shas(store.list_files(&FileFilter::default()).unwrap()), newest_first);
        let page = FileFilter { limit: 3, offset: 1, ..FileFilter::default() };
        assert_eq!(shas(store.list_files(&page).unwrap()), newest_first[1..4]);
        let window = FileFilter {
            since: Some(records[1].created_at),
            until: Some(records[3].created_at),
            ..FileFilter::default()
        };
        assert_eq!(shas(store.list_files(&window).unwrap()), newest_first[1..3]);
        let zero = FileFilter { limit: 0, ..FileFilter::default() };
        assert_eq!(store.list_files(&zero).unwrap_err().argument(), Some("limit"));
    }
}
