//! Operations: the records behind `/operations`, from `PENDING` to a terminal status.

use contree_core::models::{EventDataCompletion, EventPayload, OperationEvent, OperationKind, OperationStatus};
use contree_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::events::{self, EventRow};
use super::images::{self, ImageRecord};
use super::{
    DEFAULT_PAGE_LIMIT, Store, col_json, col_opt_time, col_opt_uuid, col_time, col_uuid, constraint_code, db_error,
    format_timestamp, from_nanos, not_found, now, opt_to_nanos, opt_uuid_text, page, to_nanos, uuid_text,
};

/// The error of operations that were running when the server stopped
/// ([`Store::fail_interrupted_operations`]).
pub const INTERRUPTED_ERROR: &str = "server restarted";

/// One operation.
///
/// `metadata` is stored as given: mask secrets (registry passwords, secret-named env values)
/// before storing it, since the API echoes it.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord {
    /// The operation's id.
    pub uuid: Uuid,
    /// `instance` or `image_import`.
    pub kind: OperationKind,
    /// Where the operation is in its life.
    pub status: OperationStatus,
    /// Why it failed, for `FAILED` (and possibly `CANCELLED`).
    pub error: Option<String>,
    /// When it was requested.
    pub created_at: OffsetDateTime,
    /// When it started running.
    pub started_at: Option<OffsetDateTime>,
    /// When it reached a terminal status.
    pub finished_at: Option<OffsetDateTime>,
    /// How long it ran, in seconds.
    pub duration: Option<f64>,
    /// The image it ran on (instances) or produced (imports).
    pub image_uuid: Option<Uuid>,
    /// The image it produced, for `SUCCESS` runs that are not disposable.
    pub result_image_uuid: Option<Uuid>,
    /// The tag of the produced image (imports).
    pub result_tag: Option<String>,
    /// The API's `metadata`: the request echo and, once finished, the result.
    pub metadata: Value,
}

impl OperationRecord {
    /// A `PENDING` operation created now.
    pub fn new(uuid: Uuid, kind: OperationKind, metadata: Value) -> OperationRecord {
        OperationRecord {
            uuid,
            kind,
            status: OperationStatus::Pending,
            error: None,
            created_at: now(),
            started_at: None,
            finished_at: None,
            duration: None,
            image_uuid: None,
            result_image_uuid: None,
            result_tag: None,
            metadata,
        }
    }
}

/// Which operations [`Store::list_operations`] returns. The default lists every operation,
/// first page.
#[derive(Debug, Clone, PartialEq)]
pub struct OpFilter {
    /// Only operations in this status.
    pub status: Option<OperationStatus>,
    /// Only operations of this kind.
    pub kind: Option<OperationKind>,
    /// Only operations created at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only operations created strictly before this time.
    pub until: Option<OffsetDateTime>,
    /// Page size, at least 1.
    pub limit: u32,
    /// How many matching operations to skip.
    pub offset: u64,
}

impl Default for OpFilter {
    fn default() -> Self {
        OpFilter { status: None, kind: None, since: None, until: None, limit: DEFAULT_PAGE_LIMIT, offset: 0 }
    }
}

const COLUMNS: &str = "uuid, kind, status, error, created_ns, started_ns, finished_ns, duration, \
                       image_uuid, result_image_uuid, result_tag, metadata";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OperationRecord> {
    let status: String = row.get(2)?;
    let status = status
        .parse::<OperationStatus>()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(OperationRecord {
        uuid: col_uuid(row, 0)?,
        kind: OperationKind::from_wire(&row.get::<_, String>(1)?),
        status,
        error: row.get(3)?,
        created_at: col_time(row, 4)?,
        started_at: col_opt_time(row, 5)?,
        finished_at: col_opt_time(row, 6)?,
        duration: row.get(7)?,
        image_uuid: col_opt_uuid(row, 8)?,
        result_image_uuid: col_opt_uuid(row, 9)?,
        result_tag: row.get(10)?,
        metadata: col_json(row, 11)?,
    })
}

/// The columns of `op` that need checking or converting.
struct Columns {
    created: i64,
    started: Option<i64>,
    finished: Option<i64>,
    metadata: String,
}

fn columns(op: &OperationRecord) -> Result<Columns> {
    if let Some(d) = op.duration
        && !(d.is_finite() && d >= 0.0)
    {
        return Err(Error::invalid_argument("duration", "must be a finite number of seconds, at least 0"));
    }
    Ok(Columns {
        created: to_nanos("created_at", op.created_at)?,
        started: opt_to_nanos("started_at", op.started_at)?,
        finished: opt_to_nanos("finished_at", op.finished_at)?,
        metadata: serde_json::to_string(&op.metadata).map_err(|e| Error::decode("cannot encode metadata", e))?,
    })
}

fn update(conn: &Connection, op: &OperationRecord) -> Result<()> {
    let c = columns(op)?;
    let changed = conn
        .prepare_cached(
            "UPDATE operations SET status = ?2, error = ?3, started_ns = ?4, finished_ns = ?5, duration = ?6,
                 image_uuid = ?7, result_image_uuid = ?8, result_tag = ?9, metadata = ?10
             WHERE uuid = ?1",
        )
        .and_then(|mut st| {
            st.execute(params![
                uuid_text(op.uuid),
                op.status.as_str(),
                op.error,
                c.started,
                c.finished,
                op.duration,
                opt_uuid_text(op.image_uuid),
                opt_uuid_text(op.result_image_uuid),
                op.result_tag,
                c.metadata,
            ])
        })
        .map_err(db_error)?;
    if changed == 0 {
        return Err(not_found("operation", op.uuid));
    }
    Ok(())
}

impl Store {
    /// Records a new operation.
    ///
    /// `InvalidArgument` for a timestamp outside 1678..2261 or a negative or non-finite
    /// duration; `Conflict` when the uuid is taken.
    pub fn insert_operation(&self, op: &OperationRecord) -> Result<()> {
        let c = columns(op)?;
        self.with_conn(|conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO operations ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    uuid_text(op.uuid),
                    op.kind.as_str(),
                    op.status.as_str(),
                    op.error,
                    c.created,
                    c.started,
                    c.finished,
                    op.duration,
                    opt_uuid_text(op.image_uuid),
                    opt_uuid_text(op.result_image_uuid),
                    op.result_tag,
                    c.metadata,
                ])
            })
            .map_err(|e| match constraint_code(&e) {
                Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => {
                    super::conflict(format!("operation `{}` already exists", op.uuid))
                }
                _ => db_error(e),
            })?;
            Ok(())
        })
    }

    /// Saves every field of `op` except `kind` and `created_at`, which never change.
    ///
    /// `NotFound` for an unknown operation; `InvalidArgument` as for
    /// [`insert_operation`](Self::insert_operation).
    pub fn update_operation(&self, op: &OperationRecord) -> Result<()> {
        self.with_conn(|conn| update(conn, op))
    }

    /// Ends an operation in one transaction: records `result_image` when the run made one (its
    /// tag moves to it as in [`Store::insert_image`]), saves `op` and appends `events` to its
    /// log. Either all of it is stored or none.
    pub fn complete_operation(
        &self,
        op: &OperationRecord,
        events: &[EventRow],
        result_image: Option<&ImageRecord>,
    ) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction().map_err(db_error)?;
            if let Some(image) = result_image {
                images::insert(self, &tx, image)?;
            }
            update(&tx, op)?;
            events::append(&tx, op.uuid, events)?;
            tx.commit().map_err(db_error)
        })
    }

    /// The operation with this id, if any.
    pub fn get_operation(&self, uuid: Uuid) -> Result<Option<OperationRecord>> {
        self.with_read(|conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM operations WHERE uuid = ?1"))
                .and_then(|mut st| st.query_row([uuid_text(uuid)], from_row).optional())
                .map_err(db_error)
        })
    }

    /// One page of operations matching `filter`, newest first.
    pub fn list_operations(&self, filter: &OpFilter) -> Result<Vec<OperationRecord>> {
        let (limit, offset) = page(filter.limit, filter.offset)?;
        let since = opt_to_nanos("since", filter.since)?;
        let until = opt_to_nanos("until", filter.until)?;
        let status = filter.status.map(OperationStatus::as_str);
        let kind = filter.kind.as_ref().map(OperationKind::as_str);
        self.with_read(|conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM operations
                     WHERE (?1 IS NULL OR status = ?1)
                       AND (?2 IS NULL OR kind = ?2)
                       AND (?3 IS NULL OR created_ns >= ?3)
                       AND (?4 IS NULL OR created_ns < ?4)
                     ORDER BY created_ns DESC, seq DESC
                     LIMIT ?5 OFFSET ?6"
                ))
                .map_err(db_error)?;
            let rows = st.query_map(params![status, kind, since, until, limit, offset], from_row).map_err(db_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
        })
    }

    /// Marks every operation still `PENDING`, `ASSIGNED` or `EXECUTING` as `FAILED` with
    /// error [`INTERRUPTED_ERROR`], and appends a `completion` event to each one's log (id:
    /// the last one + 1; no spid; `duration_ms` since it started, or since it was created), so
    /// that clients following its events see it end. All in one transaction. Call it at
    /// startup, before accepting requests: nothing can still be running those operations.
    /// Returns their ids.
    pub fn fail_interrupted_operations(&self) -> Result<Vec<Uuid>> {
        let finished = now();
        let finished_ns = to_nanos("finished_at", finished)?;
        self.with_conn(|conn| {
            let tx = conn.transaction().map_err(db_error)?;
            let active: Vec<(Uuid, i64, Option<i64>)> = {
                let mut st = tx
                    .prepare_cached(
                        "SELECT uuid, created_ns, started_ns FROM operations
                         WHERE status IN ('PENDING', 'ASSIGNED', 'EXECUTING')",
                    )
                    .map_err(db_error)?;
                let rows = st.query_map([], |r| Ok((col_uuid(r, 0)?, r.get(1)?, r.get(2)?))).map_err(db_error)?;
                rows.collect::<rusqlite::Result<_>>().map_err(db_error)?
            };
            for (uuid, created_ns, started_ns) in &active {
                let start = from_nanos(started_ns.unwrap_or(*created_ns)).map_err(db_error)?;
                let ran = (finished - start).max(time::Duration::ZERO);
                tx.prepare_cached(
                    "UPDATE operations SET status = 'FAILED', error = ?2, finished_ns = ?3, duration = ?4
                     WHERE uuid = ?1",
                )
                .and_then(|mut st| {
                    st.execute(params![uuid_text(*uuid), INTERRUPTED_ERROR, finished_ns, ran.as_seconds_f64()])
                })
                .map_err(db_error)?;
                let id = events::last_id(&tx, *uuid)?.map_or(1, |last| last + 1);
                let completion = EventPayload::Completion(EventDataCompletion {
                    status: OperationStatus::Failed,
                    duration_ms: Some(u64::try_from(ran.whole_milliseconds()).unwrap_or(u64::MAX)),
                    result_image_uuid: None,
                    error: Some(INTERRUPTED_ERROR.to_owned()),
                    image_size_bytes: None,
                });
                let event = OperationEvent::new(id, format_timestamp(finished), None, &completion);
                let json = serde_json::to_value(&event).map_err(|e| Error::decode("cannot encode event", e))?;
                events::append(&tx, *uuid, &[EventRow::new(id, json)])?;
            }
            tx.commit().map_err(db_error)?;
            Ok(active.into_iter().map(|(uuid, _, _)| uuid).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::Duration;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn full_record() -> OperationRecord {
        let t = now();
        OperationRecord {
            uuid: Uuid::new_v4(),
            kind: OperationKind::ImageImport,
            status: OperationStatus::Success,
            error: Some("nothing, really".into()),
            created_at: t - Duration::seconds(3),
            started_at: Some(t - Duration::seconds(2)),
            finished_at: Some(t),
            duration: Some(2.25),
            image_uuid: Some(Uuid::new_v4()),
            result_image_uuid: Some(Uuid::new_v4()),
            result_tag: Some("app:1".into()),
            metadata: json!({"registry": {"url": "docker://x"}, "result": {"image": null, "tag": "app:1"}}),
        }
    }

    #[test]
    fn operation_round_trip_and_update() {
        let (_d, store) = store();
        let full = full_record();
        store.insert_operation(&full).unwrap();
        assert_eq!(store.get_operation(full.uuid).unwrap().unwrap(), full);
        assert!(store.insert_operation(&full).unwrap_err().is_conflict());

        let mut op = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({"command": "true"}));
        store.insert_operation(&op).unwrap();
        assert_eq!(store.get_operation(op.uuid).unwrap().unwrap(), op);
        assert_eq!(store.get_operation(Uuid::new_v4()).unwrap(), None);

        op.status = OperationStatus::Executing;
        op.started_at = Some(now());
        store.update_operation(&op).unwrap();
        assert_eq!(store.get_operation(op.uuid).unwrap().unwrap(), op);

        op.status = OperationStatus::Failed;
        op.error = Some("spawn failed".into());
        op.finished_at = Some(now());
        op.duration = Some(0.5);
        op.metadata = json!({"command": "true", "result": {"state": {"exit_code": -1}}});
        store.update_operation(&op).unwrap();
        assert_eq!(store.get_operation(op.uuid).unwrap().unwrap(), op);

        // Kinds this server does not know are kept as they are.
        let other = OperationRecord::new(Uuid::new_v4(), OperationKind::Other("build".into()), json!(null));
        store.insert_operation(&other).unwrap();
        assert_eq!(store.get_operation(other.uuid).unwrap().unwrap(), other);
    }

    #[test]
    fn bad_records_are_refused() {
        let (_d, store) = store();
        let unknown = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({}));
        assert!(store.update_operation(&unknown).unwrap_err().is_not_found());

        const FAR: OffsetDateTime = time::macros::datetime!(2300-01-01 0:00 UTC);
        type Spoil = fn(&mut OperationRecord);
        let cases: [(&str, Spoil); 5] = [
            ("created_at", |o| o.created_at = FAR),
            ("started_at", |o| o.started_at = Some(FAR)),
            ("finished_at", |o| o.finished_at = Some(FAR)),
            ("duration", |o| o.duration = Some(f64::NAN)),
            ("duration", |o| o.duration = Some(-1.0)),
        ];
        for (arg, spoil) in &cases {
            let mut op = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({}));
            spoil(&mut op);
            assert_eq!(store.insert_operation(&op).unwrap_err().argument(), Some(*arg), "{arg}");
        }
        let mut op = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({}));
        store.insert_operation(&op).unwrap();
        op.duration = Some(f64::INFINITY);
        assert_eq!(store.update_operation(&op).unwrap_err().argument(), Some("duration"));
        assert_eq!(store.list_operations(&OpFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn list_filters_and_pages_newest_first() {
        let (_d, store) = store();
        let t = now();
        let specs = [
            (OperationKind::Instance, OperationStatus::Success),
            (OperationKind::ImageImport, OperationStatus::Failed),
            (OperationKind::Instance, OperationStatus::Executing),
            (OperationKind::Instance, OperationStatus::Success),
        ];
        let mut ops = Vec::new();
        for (i, (kind, status)) in specs.into_iter().enumerate() {
            let mut op = OperationRecord::new(Uuid::new_v4(), kind, json!({"i": i}));
            op.status = status;
            op.created_at = t - Duration::seconds(10 - i as i64);
            store.insert_operation(&op).unwrap();
            ops.push(op);
        }
        let list = |f: OpFilter| store.list_operations(&f).unwrap().into_iter().map(|o| o.uuid).collect::<Vec<_>>();

        assert_eq!(list(OpFilter::default()), vec![ops[3].uuid, ops[2].uuid, ops[1].uuid, ops[0].uuid]);
        assert_eq!(list(OpFilter { limit: 2, offset: 1, ..OpFilter::default() }), vec![ops[2].uuid, ops[1].uuid]);
        assert_eq!(
            list(OpFilter { status: Some(OperationStatus::Success), ..OpFilter::default() }),
            vec![ops[3].uuid, ops[0].uuid]
        );
        assert_eq!(list(OpFilter { kind: Some(OperationKind::ImageImport), ..OpFilter::default() }), vec![ops[1].uuid]);
        assert_eq!(
            list(OpFilter {
                kind: Some(OperationKind::Instance),
                status: Some(OperationStatus::Executing),
                ..OpFilter::default()
            }),
            vec![ops[2].uuid]
        );
        assert_eq!(
            list(OpFilter { since: Some(ops[1].created_at), until: Some(ops[3].created_at), ..OpFilter::default() }),
            vec![ops[2].uuid, ops[1].uuid]
        );
        let zero = OpFilter { limit: 0, ..OpFilter::default() };
        assert_eq!(store.list_operations(&zero).unwrap_err().argument(), Some("limit"));
    }

    fn ev(id: u64, kind: &str) -> EventRow {
        EventRow::new(id, json!({"id": id, "type": kind}))
    }

    #[test]
    fn complete_operation_is_atomic() {
        let (_d, store) = store();
        let base = ImageRecord::new(Uuid::new_v4(), None, None);
        store.insert_image(&base).unwrap();
        let mut op = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({}));
        store.insert_operation(&op).unwrap();
        store.append_events(op.uuid, &[ev(1, "init")]).unwrap();

        // A failing part (a duplicate event id) keeps everything else out too.
        let image = ImageRecord::new(Uuid::new_v4(), Some(base.uuid), None).with_operation(op.uuid).with_tag("res:1");
        op.status = OperationStatus::Success;
        op.result_image_uuid = Some(image.uuid);
        let err = store.complete_operation(&op, &[ev(2, "exit"), ev(1, "again")], Some(&image)).unwrap_err();
        assert!(err.is_conflict(), "{err}");
        assert_eq!(store.get_image(image.uuid).unwrap(), None);
        assert_eq!(store.get_operation(op.uuid).unwrap().unwrap().status, OperationStatus::Pending);
        assert_eq!(store.load_events(op.uuid, None).unwrap(), vec![ev(1, "init")]);

        store.complete_operation(&op, &[ev(2, "exit"), ev(3, "completion")], Some(&image)).unwrap();
        assert_eq!(store.get_image(image.uuid).unwrap().unwrap(), image);
        assert_eq!(store.find_by_tag("res:1").unwrap().unwrap().uuid, image.uuid);
        assert_eq!(store.get_operation(op.uuid).unwrap().unwrap(), op);
        assert_eq!(store.load_events(op.uuid, None).unwrap(), vec![ev(1, "init"), ev(2, "exit"), ev(3, "completion")]);

        // Without an image (disposable or unchanged runs).
        let mut op2 = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({}));
        store.insert_operation(&op2).unwrap();
        op2.status = OperationStatus::Cancelled;
        store.complete_operation(&op2, &[], None).unwrap();
        assert_eq!(store.get_operation(op2.uuid).unwrap().unwrap().status, OperationStatus::Cancelled);

        let unknown = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({}));
        assert!(store.complete_operation(&unknown, &[], None).unwrap_err().is_not_found());
    }

    #[test]
    fn fail_interrupted_operations_marks_only_active_ones() {
        let (_d, store) = store();
        let mut by_status = Vec::new();
        for status in OperationStatus::ALL {
            let mut op = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({"s": status.as_str()}));
            op.status = status;
            op.created_at = now() - Duration::seconds(5);
            if status != OperationStatus::Pending {
                op.started_at = Some(now() - Duration::seconds(2));
            }
            if status.is_terminal() {
                op.error = Some("original".into());
                op.finished_at = Some(now() - Duration::seconds(1));
            }
            store.insert_operation(&op).unwrap();
            by_status.push(op);
        }
        let executing = by_status[2].uuid;
        store.append_events(executing, &[ev(1, "init"), ev(4, "stdout")]).unwrap();

        let mut failed = store.fail_interrupted_operations().unwrap();
        failed.sort();
        let mut expected: Vec<Uuid> = by_status[..3].iter().map(|o| o.uuid).collect();
        expected.sort();
        assert_eq!(failed, expected);

        for before in &by_status {
            let after = store.get_operation(before.uuid).unwrap().unwrap();
            if before.status.is_active() {
                assert_eq!(after.status, OperationStatus::Failed);
                assert_eq!(after.error.as_deref(), Some(INTERRUPTED_ERROR));
                assert!(after.finished_at.is_some());
                let ran_from = if before.status == OperationStatus::Pending { 5.0 } else { 2.0 };
                let d = after.duration.unwrap();
                assert!((ran_from..ran_from + 30.0).contains(&d), "{d}");
                let last = store.load_events(before.uuid, None).unwrap().pop().unwrap();
                let event: OperationEvent = serde_json::from_value(last.event).unwrap();
                assert_eq!(event.id, last.id);
                assert!(event.is_completion());
                assert_eq!(event.spid, None);
                match event.payload() {
                    EventPayload::Completion(c) => {
                        assert_eq!(c.status, OperationStatus::Failed);
                        assert_eq!(c.error.as_deref(), Some(INTERRUPTED_ERROR));
                        assert_eq!(c.result_image_uuid, None);
                        assert!(c.duration_ms.unwrap() >= (ran_from * 1000.0) as u64);
                    }
                    other => panic!("not a completion: {other:?}"),
                }
            } else {
                assert_eq!(&after, before, "terminal operations are untouched");
                assert!(store.load_events(before.uuid, None).unwrap().is_empty());
            }
        }
        // The completion event continues the existing log.
        assert_eq!(store.last_event_id(executing).unwrap(), Some(5));
        assert_eq!(store.last_event_id(by_status[0].uuid).unwrap(), Some(1));

        assert!(store.fail_interrupted_operations().unwrap().is_empty());
    }
}
