//! Operation event logs: the events served by `GET /operations/{id}/events`, kept as JSON
//! keyed by (operation, event id).
//!
//! The store does not interpret events (apart from writing a `completion` event for
//! operations failed by a restart); callers convert their typed events
//! (`contree_core::models::OperationEvent`) with `serde_json::to_value` and back with
//! `serde_json::from_value`.

use contree_core::{Error, Result};
use rusqlite::{Connection, params};
use serde_json::Value;
use uuid::Uuid;

use super::{Store, col_json, col_opt_u64, col_u64, constraint_code, db_error, not_found, uuid_text};

/// One logged event: its id (strictly increasing within an operation, gaps allowed) and its
/// JSON (conventionally the whole `OperationEvent`, `id` included).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// The event id, as sent in SSE `id:` lines.
    pub id: u64,
    /// The event.
    pub event: Value,
}

impl EventRow {
    /// An event row.
    pub fn new(id: u64, event: Value) -> EventRow {
        EventRow { id, event }
    }
}

fn id_sql(id: u64) -> Result<i64> {
    i64::try_from(id).map_err(|_| Error::invalid_argument("id", "event ids must be below 2^63"))
}

/// Appends `events` on an open transaction.
pub(super) fn append(conn: &Connection, op: Uuid, events: &[EventRow]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let op_text = uuid_text(op);
    let mut st = conn
        .prepare_cached("INSERT INTO operation_events (operation, id, event) VALUES (?1, ?2, ?3)")
        .map_err(db_error)?;
    for row in events {
        let json = serde_json::to_string(&row.event).map_err(|e| Error::decode("cannot encode event", e))?;
        st.execute(params![op_text, id_sql(row.id)?, json]).map_err(|e| match constraint_code(&e) {
            Some(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => not_found("operation", op),
            Some(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                super::conflict(format!("operation `{op}` already has an event with id {}", row.id))
            }
            _ => db_error(e),
        })?;
    }
    Ok(())
}

pub(super) fn last_id(conn: &Connection, op: Uuid) -> Result<Option<u64>> {
    conn.prepare_cached("SELECT max(id) FROM operation_events WHERE operation = ?1")
        .and_then(|mut st| st.query_row([uuid_text(op)], |r| col_opt_u64(r, 0)))
        .map_err(db_error)
}

impl Store {
    /// Appends events to operation `op`'s log, all or none (one transaction).
    ///
    /// `NotFound` for an unknown operation, `Conflict` when an id is already logged.
    #[cfg(test)]
    pub fn append_events(&self, op: Uuid, events: &[EventRow]) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction().map_err(db_error)?;
            append(&tx, op, events)?;
            tx.commit().map_err(db_error)
        })
    }

    /// Operation `op`'s events with an id above `since_id` (all when `None`), in id order.
    /// An unknown operation has no events.
    pub fn load_events(&self, op: Uuid, since_id: Option<u64>) -> Result<Vec<EventRow>> {
        // Ids above i64::MAX cannot be stored, so "since" anything larger means "none".
        let since = match since_id.map(i64::try_from) {
            None => None,
            Some(Ok(since)) => Some(since),
            Some(Err(_)) => return Ok(Vec::new()),
        };
        self.with_read(|conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT id, event FROM operation_events
                     WHERE operation = ?1 AND (?2 IS NULL OR id > ?2)
                     ORDER BY id",
                )
                .map_err(db_error)?;
            let rows = st
                .query_map(params![uuid_text(op), since], |r| {
                    Ok(EventRow { id: col_u64(r, 0)?, event: col_json(r, 1)? })
                })
                .map_err(db_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
        })
    }

    /// The highest event id logged for `op`, if any.
    #[cfg(test)]
    pub fn last_event_id(&self, op: Uuid) -> Result<Option<u64>> {
        self.with_read(|conn| last_id(conn, op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OperationRecord;
    use contree_core::models::{EventDataStream, EventPayload, OperationEvent, OperationKind};
    use serde_json::json;

    fn store_with_op() -> (tempfile::TempDir, Store, Uuid) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let op = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({}));
        store.insert_operation(&op).unwrap();
        (dir, store, op.uuid)
    }

    fn ev(id: u64, kind: &str) -> EventRow {
        EventRow::new(id, json!({"id": id, "ts": "2025-01-01T00:00:00Z", "type": kind, "data": {"n": id}}))
    }

    #[test]
    fn events_round_trip_in_id_order() {
        let (_d, store, op) = store_with_op();
        assert_eq!(store.last_event_id(op).unwrap(), None);
        assert!(store.load_events(op, None).unwrap().is_empty());

        store.append_events(op, &[ev(1, "init"), ev(2, "spawn")]).unwrap();
        store.append_events(op, &[ev(5, "stdout"), ev(3, "stdout")]).unwrap();
        store.append_events(op, &[]).unwrap();

        let all = store.load_events(op, None).unwrap();
        assert_eq!(all, vec![ev(1, "init"), ev(2, "spawn"), ev(3, "stdout"), ev(5, "stdout")]);
        assert_eq!(store.load_events(op, Some(2)).unwrap(), vec![ev(3, "stdout"), ev(5, "stdout")]);
        assert_eq!(store.load_events(op, Some(0)).unwrap().len(), 4);
        assert!(store.load_events(op, Some(5)).unwrap().is_empty());
        assert!(store.load_events(op, Some(u64::MAX)).unwrap().is_empty());
        assert_eq!(store.last_event_id(op).unwrap(), Some(5));

        // Another operation's log is separate.
        let other = OperationRecord::new(Uuid::new_v4(), OperationKind::Instance, json!({}));
        store.insert_operation(&other).unwrap();
        assert!(store.load_events(other.uuid, None).unwrap().is_empty());
        assert!(store.load_events(Uuid::new_v4(), None).unwrap().is_empty());
    }

    #[test]
    fn typed_events_survive_the_round_trip() {
        let (_d, store, op) = store_with_op();
        let payload = EventPayload::Stdout(EventDataStream::from_bytes(b"hi\n\xff"));
        let event = OperationEvent::new(7, "2025-01-01T00:00:00.000001Z", Some(1), &payload);
        store.append_events(op, &[EventRow::new(event.id, serde_json::to_value(&event).unwrap())]).unwrap();
        let rows = store.load_events(op, None).unwrap();
        let back: OperationEvent = serde_json::from_value(rows[0].event.clone()).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.payload(), payload);
    }

    #[test]
    fn appends_are_all_or_nothing() {
        let (_d, store, op) = store_with_op();
        store.append_events(op, &[ev(1, "init")]).unwrap();
        let err = store.append_events(op, &[ev(2, "spawn"), ev(1, "init")]).unwrap_err();
        assert!(err.is_conflict(), "{err}");
        assert_eq!(store.load_events(op, None).unwrap(), vec![ev(1, "init")]);

        let err = store.append_events(Uuid::new_v4(), &[ev(1, "init")]).unwrap_err();
        assert!(err.is_not_found(), "{err}");

        let err = store.append_events(op, &[ev(u64::MAX, "x")]).unwrap_err();
        assert_eq!(err.argument(), Some("id"));
    }
}
