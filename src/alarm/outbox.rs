//! The durable outbox: every event is committed to SQLite (WAL) in the state directory before
//! any delivery is tried, with one delivery record per (event, sink). Sink workers take due
//! records, deliver, and mark them delivered, reschedule them (exponential backoff with
//! jitter) or move them to the dead-letter table. Undelivered records survive restarts and
//! crashes; the event id is the idempotency key receivers deduplicate on.
//!
//! Order: every event gets a per-stream sequence number (`seq`, kept in the `sequences`
//! table, so it goes on across restarts) in the transaction that commits it, and a sink only
//! ever gets the *oldest* pending record of each stream: a newer event of a stream is never
//! delivered before an older one (a `raised` never overtakes the `cleared` before it while a
//! receiver is down), and independent streams do not block each other.
//!
//! Each thread opens its own connection (SQLite serialises writers; WAL lets readers go on).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::AlarmEvent;

pub const DB_FILE: &str = "outbox.sqlite3";

/// A due delivery: the event and how many attempts were made before.
#[derive(Debug, Clone)]
pub struct Due {
    pub event: AlarmEvent,
    pub attempts: u32,
    pub created_ms: u64,
}

/// One line of `mpdr alarms list`.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub id: String,
    pub created_ms: u64,
    pub stream: String,
    pub kind: String,
    pub pending: u32,
    pub delivered: u32,
    pub dead: u32,
}

/// Delivery state of one (event, sink), for `mpdr alarms show`.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub sink: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt_ms: Option<u64>,
    pub delivered_ms: Option<u64>,
    pub error: Option<String>,
}

/// Per-sink counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

pub struct Outbox {
    conn: Connection,
    pub path: PathBuf,
}

/// What can go wrong with the outbox database.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("{}: cannot create the state folder: {error}", path.display())]
    Folder { path: PathBuf, error: std::io::Error },
    #[error("{}: {error}", path.display())]
    Db { path: PathBuf, error: rusqlite::Error },
    #[error("{}: the outbox is damaged ({check}); it is left as it is: move it aside (and keep it for recovery) to start a new one", path.display())]
    Damaged { path: PathBuf, check: String },
    #[error("{}: event {id} is not readable: {error}", path.display())]
    Event { path: PathBuf, id: String, error: serde_json::Error },
}

type Result<T, E = OutboxError> = std::result::Result<T, E>;

fn err(path: &Path, error: rusqlite::Error) -> OutboxError {
    OutboxError::Db { path: path.to_path_buf(), error }
}

impl Outbox {
    /// Open (creating the folder, file and tables when missing).
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|error| OutboxError::Folder { path: dir.to_path_buf(), error })?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|e| err(&path, e))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(|e| err(&path, e))?;
        // Before anything is written: a damaged outbox is refused and left byte for byte.
        let check: Vec<String> = conn
            .prepare("PRAGMA quick_check(5)")
            .and_then(|mut st| st.query_map([], |r| r.get::<_, String>(0))?.collect())
            .unwrap_or_else(|e| vec![e.to_string()]);
        if check != ["ok"] {
            return Err(OutboxError::Damaged { path, check: check.join("; ") });
        }
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS events (
                 id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, stream TEXT NOT NULL,
                 kind TEXT NOT NULL, json TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS events_created ON events (created_ms);
             CREATE TABLE IF NOT EXISTS deliveries (
                 event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
                 sink TEXT NOT NULL,
                 state TEXT NOT NULL CHECK (state IN ('pending', 'delivered')),
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_attempt_ms INTEGER NOT NULL,
                 last_error TEXT,
                 delivered_ms INTEGER,
                 PRIMARY KEY (event_id, sink));
             CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (sink, state, next_attempt_ms);
             CREATE TABLE IF NOT EXISTS dead_letters (
                 event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
                 sink TEXT NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL,
                 dead_ms INTEGER NOT NULL,
                 PRIMARY KEY (event_id, sink));
             CREATE TABLE IF NOT EXISTS sequences (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL);",
        )
        .map_err(|e| err(&path, e))?;
        // Outboxes of older versions: events without a sequence number (they sort first), and
        // deliveries without their stream and sequence (copied from their events).
        let has = |table: &str, column: &str| {
            conn.prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"))
                .and_then(|mut st| st.exists([]))
                .map_err(|e| err(&path, e))
        };
        if !has("events", "seq")? {
            conn.execute_batch("ALTER TABLE events ADD COLUMN seq INTEGER").map_err(|e| err(&path, e))?;
        }
        if !has("deliveries", "stream")? {
            conn.execute_batch(
                "ALTER TABLE deliveries ADD COLUMN stream TEXT;
                 ALTER TABLE deliveries ADD COLUMN seq INTEGER;
                 UPDATE deliveries SET
                     stream = (SELECT e.stream FROM events e WHERE e.id = deliveries.event_id),
                     seq = (SELECT COALESCE(e.seq, 0) FROM events e WHERE e.id = deliveries.event_id);",
            )
            .map_err(|e| err(&path, e))?;
        }
        // A sink's pending records, stream by stream in order: an index walk, no sort.
        conn.execute_batch("CREATE INDEX IF NOT EXISTS deliveries_order ON deliveries (sink, state, stream, seq)")
            .map_err(|e| err(&path, e))?;
        Ok(Outbox { conn, path })
    }

    /// Commit `event` with a pending delivery for each of `sinks` (one transaction); an event
    /// already there (same id) is left as it is.
    pub fn add(&mut self, event: &AlarmEvent, sinks: &[&str]) -> Result<()> {
        self.commit(&mut event.clone(), sinks)
    }

    /// [`add`](Self::add), giving the event its stream's next sequence number (`event.seq`)
    /// in the same transaction.
    pub fn commit(&mut self, event: &mut AlarmEvent, sinks: &[&str]) -> Result<()> {
        let tx = self.conn.transaction().map_err(|e| err(&self.path, e))?;
        let known: Option<Option<i64>> = tx
            .query_row("SELECT seq FROM events WHERE id = ?1", params![event.id], |r| r.get(0))
            .optional()
            .map_err(|e| err(&self.path, e))?;
        if let Some(seq) = known {
            event.seq = seq.map(|s| s as u64);
        } else {
            let last: Option<i64> = tx
                .query_row("SELECT seq FROM sequences WHERE stream = ?1", params![event.stream], |r| r.get(0))
                .optional()
                .map_err(|e| err(&self.path, e))?;
            let seq = last.unwrap_or(0) + 1;
            tx.execute(
                "INSERT INTO sequences (stream, seq) VALUES (?1, ?2) ON CONFLICT (stream) DO UPDATE SET seq = ?2",
                params![event.stream, seq],
            )
            .map_err(|e| err(&self.path, e))?;
            event.seq = Some(seq as u64);
            tx.execute(
                "INSERT INTO events (id, created_ms, stream, kind, json, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![event.id, event.unix_ms as i64, event.stream, event.kind.as_str(), event.to_json(), seq],
            )
            .map_err(|e| err(&self.path, e))?;
        }
        for s in sinks {
            tx.execute(
                "INSERT OR IGNORE INTO deliveries (event_id, sink, state, next_attempt_ms, stream, seq)
                 VALUES (?1, ?2, 'pending', ?3, ?4, ?5)",
                params![event.id, s, event.unix_ms as i64, event.stream, event.seq.unwrap_or(0) as i64],
            )
            .map_err(|e| err(&self.path, e))?;
        }
        tx.commit().map_err(|e| err(&self.path, e))
    }

    /// The oldest pending record of each stream of `sink`: (stream, its next attempt, ms).
    fn heads(&self, sink: &str) -> Result<Vec<(String, u64)>> {
        // SQLite gives the bare column of the row that holds the MIN().
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT stream, MIN(seq), next_attempt_ms FROM deliveries
                 WHERE sink = ?1 AND state = 'pending' GROUP BY stream",
            )
            .map_err(|e| err(&self.path, e))?;
        let rows = st
            .query_map(params![sink], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(2)? as u64)))
            .map_err(|e| err(&self.path, e))?;
        rows.collect::<Result<_, _>>().map_err(|e| err(&self.path, e))
    }

    /// Pending deliveries of `sink` due at `now_ms`, in order: of each stream its pending
    /// records from the oldest (by `seq`) up to the first that is not due yet — a stream's
    /// later events wait behind an earlier one that is being retried, other streams go on.
    pub fn due(&self, sink: &str, now_ms: u64, limit: usize) -> Result<Vec<Due>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT e.json, d.attempts, e.created_ms, d.next_attempt_ms, e.id
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.sink = ?1 AND d.state = 'pending' AND d.stream = ?2
                 ORDER BY d.seq, d.rowid LIMIT ?3",
            )
            .map_err(|e| err(&self.path, e))?;
        let mut out = Vec::new();
        for (stream, next) in self.heads(sink)? {
            if next > now_ms || out.len() >= limit {
                continue;
            }
            let rows = st
                .query_map(params![sink, stream, (limit - out.len()) as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .map_err(|e| err(&self.path, e))?;
            let mut unreadable = Vec::new();
            for row in rows {
                let (json, attempts, created, next, id) = row.map_err(|e| err(&self.path, e))?;
                if next as u64 > now_ms {
                    break; // the rest of this stream waits for this one
                }
                match serde_json::from_str(&json) {
                    Ok(event) => out.push(Due { event, attempts, created_ms: created as u64 }),
                    Err(e) => unreadable.push((id, e.to_string())),
                }
            }
            // An event that cannot be read never will be: a dead letter, said once (it was
            // re-read and logged on every pass).
            for (id, e) in unreadable {
                tracing::error!(outbox = %self.path.display(), event = %id, error = %e, "unreadable event: moved to dead letters");
                self.bury(&id, sink, &format!("unreadable event: {e}"), now_ms, 0)?;
            }
        }
        Ok(out)
    }

    /// Move a delivery to the dead-letter table, counting `attempted` more attempts (0 for
    /// an event that could not even be read). A shared borrow: the due scan finds those.
    fn bury(&self, id: &str, sink: &str, reason: &str, now_ms: u64, attempted: u32) -> Result<()> {
        let tx = self.conn.unchecked_transaction().map_err(|e| err(&self.path, e))?;
        tx.execute(
            "INSERT OR REPLACE INTO dead_letters (event_id, sink, attempts, reason, dead_ms)
             SELECT event_id, sink, attempts + ?5, ?3, ?4 FROM deliveries WHERE event_id = ?1 AND sink = ?2",
            params![id, sink, reason, now_ms as i64, attempted],
        )
        .map_err(|e| err(&self.path, e))?;
        tx.execute("DELETE FROM deliveries WHERE event_id = ?1 AND sink = ?2", params![id, sink])
            .map_err(|e| err(&self.path, e))?;
        tx.commit().map_err(|e| err(&self.path, e))
    }

    /// When the next deliverable record of `sink` (the oldest pending one of a stream) is due
    /// (ms since the epoch).
    pub fn next_due_ms(&self, sink: &str) -> Result<Option<u64>> {
        Ok(self.heads(sink)?.into_iter().map(|(_, next)| next).min())
    }

    pub fn mark_delivered(&mut self, id: &str, sink: &str, now_ms: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, delivered_ms = ?3, last_error = NULL
                 WHERE event_id = ?1 AND sink = ?2",
                params![id, sink, now_ms as i64],
            )
            .map(|_| ())
            .map_err(|e| err(&self.path, e))
    }

    pub fn reschedule(&mut self, id: &str, sink: &str, next_ms: u64, error: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt_ms = ?3, last_error = ?4
                 WHERE event_id = ?1 AND sink = ?2",
                params![id, sink, next_ms as i64, error],
            )
            .map(|_| ())
            .map_err(|e| err(&self.path, e))
    }

    /// Move a delivery to the dead-letter table.
    pub fn dead_letter(&mut self, id: &str, sink: &str, reason: &str, now_ms: u64) -> Result<()> {
        self.bury(id, sink, reason, now_ms, 1)
    }

    /// Put dead letters (of one event, or all with `None`) back to pending, due now.
    pub fn redrive(&mut self, id: Option<&str>, now_ms: u64) -> Result<usize> {
        let tx = self.conn.transaction().map_err(|e| err(&self.path, e))?;
        let filter = if id.is_some() { "WHERE event_id = ?1" } else { "WHERE ?1 IS NULL" };
        let xfilter = if id.is_some() { "WHERE x.event_id = ?1" } else { "WHERE ?1 IS NULL" };
        let n = tx
            .execute(
                &format!(
                    "INSERT OR REPLACE INTO deliveries (event_id, sink, state, attempts, next_attempt_ms, last_error, stream, seq)
                     SELECT x.event_id, x.sink, 'pending', 0, ?2, 'redriven: ' || x.reason, e.stream, COALESCE(e.seq, 0)
                     FROM dead_letters x JOIN events e ON e.id = x.event_id {xfilter}"
                ),
                params![id, now_ms as i64],
            )
            .map_err(|e| err(&self.path, e))?;
        tx.execute(&format!("DELETE FROM dead_letters {filter}"), params![id]).map_err(|e| err(&self.path, e))?;
        tx.commit().map_err(|e| err(&self.path, e))?;
        Ok(n)
    }

    /// Keep at most `max_events` events: delete the oldest fully delivered ones first, then the
    /// oldest dead-lettered ones; events with pending deliveries are never deleted. Returns
    /// how many were deleted.
    pub fn prune(&mut self, max_events: usize) -> Result<usize> {
        let count: i64 =
            self.conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).map_err(|e| err(&self.path, e))?;
        let mut excess = count - max_events as i64;
        let mut deleted = 0;
        for extra in ["NOT EXISTS (SELECT 1 FROM dead_letters x WHERE x.event_id = e.id)", "1 = 1"] {
            if excess <= 0 {
                break;
            }
            let n = self
                .conn
                .execute(
                    &format!(
                        "DELETE FROM events WHERE id IN (SELECT e.id FROM events e
                         WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = 'pending')
                         AND {extra} ORDER BY e.created_ms, e.id LIMIT ?1)"
                    ),
                    params![excess],
                )
                .map_err(|e| err(&self.path, e))?;
            excess -= n as i64;
            deleted += n;
        }
        Ok(deleted)
    }

    pub fn counts(&self, sink: &str) -> Result<SinkCounts> {
        let q = |sql: &str| -> Result<u64> {
            self.conn
                .query_row(sql, params![sink], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .map_err(|e| err(&self.path, e))
        };
        Ok(SinkCounts {
            pending: q("SELECT COUNT(*) FROM deliveries WHERE sink = ?1 AND state = 'pending'")?,
            delivered: q("SELECT COUNT(*) FROM deliveries WHERE sink = ?1 AND state = 'delivered'")?,
            dead: q("SELECT COUNT(*) FROM dead_letters WHERE sink = ?1")?,
        })
    }

    /// Newest first; `state` filters on "pending" or "dead" (events with such a delivery).
    pub fn list(&self, state: Option<&str>, limit: usize) -> Result<Vec<EventRow>> {
        let filter = match state {
            Some("pending") => "HAVING pending > 0",
            Some("dead") => "HAVING dead > 0",
            _ => "",
        };
        let sql = format!(
            "SELECT e.id, e.created_ms, e.stream, e.kind,
                 (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id AND d.state = 'pending') AS pending,
                 (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id AND d.state = 'delivered') AS delivered,
                 (SELECT COUNT(*) FROM dead_letters x WHERE x.event_id = e.id) AS dead
             FROM events e GROUP BY e.id {filter} ORDER BY e.created_ms DESC, e.id DESC LIMIT ?1"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| err(&self.path, e))?;
        let rows = st
            .query_map(params![limit as i64], |r| {
                Ok(EventRow {
                    id: r.get(0)?,
                    created_ms: r.get::<_, i64>(1)? as u64,
                    stream: r.get(2)?,
                    kind: r.get(3)?,
                    pending: r.get(4)?,
                    delivered: r.get(5)?,
                    dead: r.get(6)?,
                })
            })
            .map_err(|e| err(&self.path, e))?;
        rows.collect::<Result<_, _>>().map_err(|e| err(&self.path, e))
    }

    /// One event and the state of each of its deliveries.
    /// Whether the outbox still holds event `id`.
    pub fn has_event(&self, id: &str) -> Result<bool> {
        self.conn
            .query_row("SELECT COUNT(*) FROM events WHERE id = ?1", params![id], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
            .map_err(|e| err(&self.path, e))
    }

    pub fn show(&self, id: &str) -> Result<Option<(AlarmEvent, Vec<DeliveryRow>)>> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT json FROM events WHERE id = ?1", params![id], |r| r.get(0))
            .optional()
            .map_err(|e| err(&self.path, e))?;
        let Some(json) = json else { return Ok(None) };
        let event: AlarmEvent = serde_json::from_str(&json).map_err(|error| OutboxError::Event {
            path: self.path.clone(),
            id: id.to_string(),
            error,
        })?;
        let mut rows = Vec::new();
        let mut st = self
            .conn
            .prepare(
                "SELECT sink, state, attempts, next_attempt_ms, delivered_ms, last_error FROM deliveries WHERE event_id = ?1
                 UNION ALL SELECT sink, 'dead', attempts, NULL, NULL, reason FROM dead_letters WHERE event_id = ?1
                 ORDER BY 1",
            )
            .map_err(|e| err(&self.path, e))?;
        let it = st
            .query_map(params![id], |r| {
                Ok(DeliveryRow {
                    sink: r.get(0)?,
                    state: r.get(1)?,
                    attempts: r.get(2)?,
                    next_attempt_ms: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                    delivered_ms: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    error: r.get(5)?,
                })
            })
            .map_err(|e| err(&self.path, e))?;
        for r in it {
            rows.push(r.map_err(|e| err(&self.path, e))?);
        }
        Ok(Some((event, rows)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::EventKind;

    fn ev(stream: &str) -> AlarmEvent {
        AlarmEvent::new(EventKind::Raised, stream, 1.0)
    }

    #[test]
    fn an_outbox_damaged_in_the_middle_is_refused_with_its_path_and_left_byte_for_byte() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut o = Outbox::open(d.path()).unwrap();
            for i in 0..400 {
                let mut e = ev(&format!("s{}", i % 3));
                e.message = "x".repeat(900);
                o.add(&e, &["web"]).unwrap();
            }
        }
        let db = d.path().join(DB_FILE);
        let mut bytes = std::fs::read(&db).unwrap();
        assert!(bytes.len() > 200_000, "{}", bytes.len());
        let mid = bytes.len() / 2 / 4096 * 4096;
        for (i, b) in bytes[mid..mid + 4096].iter_mut().enumerate() {
            *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1];
        }
        std::fs::write(&db, &bytes).unwrap();
        let e = Outbox::open(d.path()).err().expect("refused").to_string();
        assert!(e.contains(DB_FILE) && e.contains("damaged"), "{e}");
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "left byte for byte");
    }

    #[test]
    fn deliveries_go_pending_to_delivered_rescheduled_or_dead_and_survive_reopening() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (ev("s1"), ev("s2"));
        {
            let mut o = Outbox::open(d.path()).unwrap();
            o.add(&a, &["web", "log"]).unwrap();
            o.add(&b, &["web"]).unwrap();
            o.add(&a, &["web", "log"]).unwrap(); // idempotent
            let now = a.unix_ms + 10_000;
            assert_eq!(o.due("web", now, 10).unwrap().len(), 2);
            o.mark_delivered(&a.id, "log", now).unwrap();
            o.reschedule(&a.id, "web", now + 5000, "HTTP 500").unwrap();
            o.dead_letter(&b.id, "web", "HTTP 404", now).unwrap();
        }
        let mut o = Outbox::open(d.path()).unwrap();
        let now = a.unix_ms + 10_000;
        assert!(o.due("web", now, 10).unwrap().is_empty(), "rescheduled into the future");
        let due = o.due("web", now + 5000, 10).unwrap();
        assert_eq!((due.len(), due[0].attempts, due[0].event.id.as_str()), (1, 1, a.id.as_str()));
        assert_eq!(o.next_due_ms("web").unwrap(), Some(now + 5000));
        assert_eq!(o.counts("web").unwrap(), SinkCounts { pending: 1, delivered: 0, dead: 1 });
        assert_eq!(o.counts("log").unwrap(), SinkCounts { pending: 0, delivered: 1, dead: 0 });
        let (_, rows) = o.show(&b.id).unwrap().unwrap();
        assert_eq!((rows[0].state.as_str(), rows[0].error.as_deref()), ("dead", Some("HTTP 404")));
        assert_eq!(o.list(Some("dead"), 10).unwrap().len(), 1);
        assert_eq!(o.redrive(None, now).unwrap(), 1);
        assert_eq!(o.counts("web").unwrap(), SinkCounts { pending: 2, delivered: 0, dead: 0 });
    }

    #[test]
    fn a_stream_is_delivered_in_order_and_streams_do_not_block_each_other() {
        let d = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(d.path()).unwrap();
        let mut evs: Vec<AlarmEvent> = ["a", "a", "b", "a"].iter().map(|s| ev(s)).collect();
        for e in evs.iter_mut() {
            o.commit(e, &["web"]).unwrap();
        }
        let seqs: Vec<Option<u64>> = evs.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [Some(1), Some(2), Some(1), Some(3)]);
        let now = evs[3].unix_ms + 1;
        let ids = |o: &Outbox, t| o.due("web", t, 10).unwrap().into_iter().map(|d| d.event.id).collect::<Vec<_>>();
        // Each stream's pending records in order.
        assert_eq!(ids(&o, now), [evs[0].id.clone(), evs[1].id.clone(), evs[3].id.clone(), evs[2].id.clone()]);
        // a's head fails and is rescheduled: a's later events wait; b goes on.
        o.reschedule(&evs[0].id, "web", now + 60_000, "down").unwrap();
        assert_eq!(ids(&o, now), [evs[2].id.clone()]);
        o.mark_delivered(&evs[2].id, "web", now).unwrap();
        assert!(ids(&o, now).is_empty(), "a's second event never overtakes its first");
        assert_eq!(ids(&o, now + 60_000), [evs[0].id.clone(), evs[1].id.clone(), evs[3].id.clone()]);
        o.mark_delivered(&evs[0].id, "web", now).unwrap();
        assert_eq!(ids(&o, now), [evs[1].id.clone(), evs[3].id.clone()]);
        // The sequence goes on after a reopen; committing an event twice keeps its number.
        drop(o);
        let mut o = Outbox::open(d.path()).unwrap();
        let mut again = evs[1].clone();
        again.seq = None;
        o.commit(&mut again, &["web"]).unwrap();
        assert_eq!(again.seq, Some(2));
        let mut next = ev("a");
        o.commit(&mut next, &["web"]).unwrap();
        assert_eq!(next.seq, Some(4));
        let stored: AlarmEvent = o.show(&next.id).unwrap().unwrap().0;
        assert_eq!(stored.seq, Some(4), "the stored and delivered JSON carries it");
    }

    #[test]
    fn a_blocked_stream_with_a_long_backlog_does_not_hide_another_streams_events() {
        let d = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(d.path()).unwrap();
        let first = ev("a");
        let mut e = first.clone();
        o.commit(&mut e, &["web"]).unwrap();
        o.reschedule(&first.id, "web", u64::MAX / 2, "down").unwrap();
        for _ in 0..4200 {
            o.commit(&mut ev("a"), &["web"]).unwrap();
        }
        let mut b = ev("b");
        o.commit(&mut b, &["web"]).unwrap();
        let due = o.due("web", b.unix_ms + 1, 64).unwrap();
        assert_eq!(due.iter().map(|d| d.event.id.as_str()).collect::<Vec<_>>(), [b.id.as_str()]);
    }

    #[test]
    fn an_outbox_of_an_older_version_is_migrated_and_its_pending_records_delivered_in_order() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (ev("s"), ev("s"));
        {
            let c = Connection::open(d.path().join(DB_FILE)).unwrap();
            c.execute_batch(
                "CREATE TABLE events (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, stream TEXT NOT NULL,
                     kind TEXT NOT NULL, json TEXT NOT NULL);
                 CREATE TABLE deliveries (event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
                     sink TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('pending', 'delivered')),
                     attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms INTEGER NOT NULL, last_error TEXT,
                     delivered_ms INTEGER, PRIMARY KEY (event_id, sink));",
            )
            .unwrap();
            for e in [&a, &b] {
                c.execute(
                    "INSERT INTO events VALUES (?1, ?2, ?3, 'raised', ?4)",
                    params![e.id, e.unix_ms as i64, e.stream, e.to_json()],
                )
                .unwrap();
                c.execute(
                    "INSERT INTO deliveries (event_id, sink, state, next_attempt_ms) VALUES (?1, 'web', 'pending', 0)",
                    params![e.id],
                )
                .unwrap();
            }
        }
        let mut o = Outbox::open(d.path()).unwrap();
        let due: Vec<String> = o.due("web", 1, 10).unwrap().into_iter().map(|d| d.event.id).collect();
        assert_eq!(due, [a.id.clone(), b.id.clone()]);
        let mut c = ev("s");
        o.commit(&mut c, &["web"]).unwrap();
        assert_eq!(c.seq, Some(1), "numbering starts for the new events; the old ones sort first");
        let due: Vec<String> = o.due("web", c.unix_ms, 10).unwrap().into_iter().map(|d| d.event.id).collect();
        assert_eq!(due, [a.id, b.id, c.id]);
    }

    #[test]
    fn an_unreadable_event_is_dead_lettered_once_and_the_stream_goes_on() {
        let d = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(d.path()).unwrap();
        let (mut a, mut b) = (ev("s"), ev("s"));
        o.commit(&mut a, &["web"]).unwrap();
        o.commit(&mut b, &["web"]).unwrap();
        o.conn.execute("UPDATE events SET json = '{broken' WHERE id = ?1", params![a.id]).unwrap();
        let due: Vec<String> = o.due("web", b.unix_ms, 10).unwrap().into_iter().map(|d| d.event.id).collect();
        assert_eq!(due, [b.id.clone()]);
        assert_eq!(o.counts("web").unwrap(), SinkCounts { pending: 1, delivered: 0, dead: 1 });
        let (_, rows) = o.show(&b.id).unwrap().unwrap();
        assert_eq!(rows[0].state, "pending");
        assert_eq!(o.list(Some("dead"), 10).unwrap()[0].id, a.id, "not re-read on the next pass");
    }

    #[test]
    fn pruning_drops_old_delivered_events_first_and_never_pending_ones() {
        let d = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(d.path()).unwrap();
        let evs: Vec<AlarmEvent> = (0..6).map(|i| ev(&format!("s{i}"))).collect();
        for (i, e) in evs.iter().enumerate() {
            o.add(e, &["web"]).unwrap();
            match i {
                0 | 2 | 4 => o.mark_delivered(&e.id, "web", e.unix_ms).unwrap(),
                1 => o.dead_letter(&e.id, "web", "gone", e.unix_ms).unwrap(),
                _ => {}
            }
        }
        // Bound 3: the delivered 0, 2 and 4 go first; the dead-lettered 1 and pending 3, 5 stay.
        assert_eq!(o.prune(3).unwrap(), 3);
        let left: Vec<String> = o.list(None, 10).unwrap().into_iter().map(|r| r.stream).collect();
        assert_eq!(left, ["s5", "s3", "s1"]);
        assert_eq!(o.prune(1).unwrap(), 1, "then the dead letter; never the pending ones");
        assert_eq!(o.counts("web").unwrap(), SinkCounts { pending: 2, delivered: 0, dead: 0 });
    }
}
