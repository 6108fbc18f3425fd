//! The alert outbox's rows (table `outbox` in the index): one per message an
//! action owes, stored before its first attempt, updated after each.
//!
//! Owns the table's SQL and nothing else: it never decides when to retry or
//! give up (that is `events::outbox`'s policy) and never sends anything.

use rusqlite::{params, Connection, OptionalExtension};

use crate::alerts::Message;
use crate::events::outbox::{Due, State, Step};

/// A row as the API and the workers see it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Row {
    pub id: i64,
    pub action: String,
    pub channel: Option<u32>,
    pub created_ms: i64,
    pub message: Message,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub give_up_ms: i64,
    pub state: State,
    pub last_error: Option<String>,
    pub delivered_ms: Option<i64>,
}

/// A message to queue.
pub struct NewRow {
    pub action: String,
    pub channel: Option<u32>,
    pub created_ms: i64,
    pub give_up_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("alert outbox: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("alert outbox: {0}")]
    Schema(String),
    #[error("alert outbox row {id}: the stored message does not parse: {e}")]
    BadMessage { id: i64, e: serde_json::Error },
}

pub type Result<T> = std::result::Result<T, OutboxError>;

const COLS: &str =
    "id, action, channel, created_ms, message, attempts, next_attempt_ms, give_up_ms, state, last_error, delivered_ms";

fn row(r: &rusqlite::Row) -> rusqlite::Result<(Row, String)> {
    let state: String = r.get(8)?;
    Ok((
        Row {
            id: r.get(0)?,
            action: r.get(1)?,
            channel: r.get(2)?,
            created_ms: r.get(3)?,
            message: Message {
                id: String::new(),
                subject: String::new(),
                body: String::new(),
                json: serde_json::Value::Null,
                event_id: None,
            },
            attempts: r.get(5)?,
            next_attempt_ms: r.get(6)?,
            give_up_ms: r.get(7)?,
            // The table's CHECK admits only the three states.
            state: State::parse(&state).unwrap_or(State::Failed),
            last_error: r.get(9)?,
            delivered_ms: r.get(10)?,
        },
        r.get(4)?,
    ))
}

fn parsed((mut r, text): (Row, String)) -> Result<Row> {
    r.message = serde_json::from_str(&text).map_err(|e| OutboxError::BadMessage { id: r.id, e })?;
    Ok(r)
}

fn query(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<Row>> {
    let mut st = conn.prepare_cached(sql)?;
    let rows = st.query_map(p, row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(parsed).collect()
}

/// Queues a message: the row is stored (pending, due now) and committed
/// before this returns, with the message `make` builds from the row's id
/// (its `Message.id` is derived from it, stable across retries and restarts).
pub fn insert(conn: &Connection, n: &NewRow, make: impl FnOnce(i64) -> Message) -> Result<Row> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "INSERT INTO outbox (action, channel, created_ms, message, next_attempt_ms, give_up_ms, state) \
         VALUES (?1, ?2, ?3, '{}', ?3, ?4, 'pending')",
        params![n.action, n.channel, n.created_ms, n.give_up_ms],
    )?;
    let id = tx.last_insert_rowid();
    let message = make(id);
    let text = serde_json::to_string(&message).map_err(|e| OutboxError::BadMessage { id, e })?;
    tx.execute("UPDATE outbox SET message = ?2 WHERE id = ?1", params![id, text])?;
    tx.commit()?;
    Ok(Row {
        id,
        action: n.action.clone(),
        channel: n.channel,
        created_ms: n.created_ms,
        message,
        attempts: 0,
        next_attempt_ms: n.created_ms,
        give_up_ms: n.give_up_ms,
        state: State::Pending,
        last_error: None,
        delivered_ms: None,
    })
}

/// The next pending rows of `action` by due time (then age), at most `limit`.
pub fn pending(conn: &Connection, action: &str, limit: usize) -> Result<Vec<Due>> {
    let mut st = conn.prepare_cached(
        "SELECT id, next_attempt_ms FROM outbox WHERE action = ?1 AND state = 'pending' \
         ORDER BY next_attempt_ms, id LIMIT ?2",
    )?;
    let rows = st
        .query_map(params![action, limit as i64], |r| {
            Ok(Due {
                id: r.get(0)?,
                next_attempt_ms: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Row>> {
    let r = conn
        .prepare_cached(&format!("SELECT {COLS} FROM outbox WHERE id = ?1"))?
        .query_row(params![id], row)
        .optional()?;
    r.map(parsed).transpose()
}

/// Records the outcome of an attempt (the row's `attempts` grows by one).
pub fn record(conn: &Connection, id: i64, step: &Step, now_ms: i64) -> Result<()> {
    match step {
        Step::Delivered => conn.execute(
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_ms = ?2 \
             WHERE id = ?1 AND state = 'pending'",
            params![id, now_ms],
        )?,
        Step::RetryAt { at_ms, error } => conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 \
             WHERE id = ?1 AND state = 'pending'",
            params![id, at_ms, error],
        )?,
        Step::Failed { error } => conn.execute(
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?2 \
             WHERE id = ?1 AND state = 'pending'",
            params![id, error],
        )?,
    };
    Ok(())
}

/// Fails every pending row of an action the configuration no longer has,
/// or of `action` the oldest `count` (the outbox is full); returns them.
fn fail_where(conn: &Connection, filter: &str, p: impl rusqlite::Params, error: &str) -> Result<Vec<Row>> {
    let tx = conn.unchecked_transaction()?;
    let rows = query(&tx, &format!("SELECT {COLS} FROM outbox WHERE {filter}"), p)?;
    for r in &rows {
        tx.execute(
            "UPDATE outbox SET state = 'failed', last_error = ?2 WHERE id = ?1",
            params![r.id, error],
        )?;
    }
    tx.commit()?;
    Ok(rows)
}

/// Fails the pending rows of actions not in `names` (removed by a live
/// apply or a new configuration): nobody would ever send them.
pub fn fail_orphans(conn: &Connection, names: &[String]) -> Result<Vec<Row>> {
    let list = serde_json::to_string(names).unwrap_or_else(|_| "[]".into());
    fail_where(
        conn,
        "state = 'pending' AND action NOT IN (SELECT value FROM json_each(?1))",
        params![list],
        "the action was removed from the configuration",
    )
}

/// Pending rows in all, and of `action`.
pub fn pending_counts(conn: &Connection, action: &str) -> Result<(i64, i64)> {
    Ok(conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(action = ?1), 0) FROM outbox WHERE state = 'pending'",
        params![action],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Fails the `count` oldest pending rows of `action` ("outbox full").
pub fn fail_oldest(conn: &Connection, action: &str, count: i64) -> Result<Vec<Row>> {
    fail_where(
        conn,
        "id IN (SELECT id FROM outbox WHERE action = ?1 AND state = 'pending' ORDER BY id LIMIT ?2)",
        params![action, count],
        "the outbox is full: the oldest pending alerts were dropped",
    )
}

/// Deletes finished rows created before `before_ms`, and all but the newest
/// `keep` finished rows; returns how many went.
pub fn prune(conn: &Connection, before_ms: i64, keep: i64) -> Result<usize> {
    let n = conn.execute(
        "DELETE FROM outbox WHERE state != 'pending' AND (created_ms < ?1 OR id <= \
         (SELECT id FROM outbox WHERE state != 'pending' ORDER BY id DESC LIMIT 1 OFFSET ?2))",
        params![before_ms, keep],
    )?;
    Ok(n)
}

/// One action's outbox at a glance.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    /// The newest row's error, if it has one.
    pub last_error: Option<String>,
    pub last_delivered_ms: Option<i64>,
}

pub fn summary(conn: &Connection, action: &str) -> Result<Summary> {
    let (pending, delivered, failed, last_delivered_ms) = conn.query_row(
        "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'delivered'), 0), \
         COALESCE(SUM(state = 'failed'), 0), MAX(delivered_ms) FROM outbox WHERE action = ?1",
        params![action],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let last_error = conn
        .query_row(
            "SELECT last_error FROM outbox WHERE action = ?1 AND last_error IS NOT NULL \
             ORDER BY id DESC LIMIT 1",
            params![action],
            |r| r.get(0),
        )
        .optional()?;
    Ok(Summary {
        pending,
        delivered,
        failed,
        last_error,
        last_delivered_ms,
    })
}

/// The newest `limit` rows of `action`, newest first.
pub fn recent(conn: &Connection, action: &str, limit: usize) -> Result<Vec<Row>> {
    query(
        conn,
        &format!("SELECT {COLS} FROM outbox WHERE action = ?1 ORDER BY id DESC LIMIT ?2"),
        params![action, limit as i64],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::db::migrate(&mut c).unwrap();
        c
    }

    fn msg(id: i64) -> Message {
        Message {
            id: format!("tandem-x-{id}"),
            subject: "s".into(),
            body: "b".into(),
            json: serde_json::json!({ "n": id }),
            event_id: Some(7),
        }
    }

    fn queue(c: &Connection, action: &str, at: i64) -> Row {
        insert(
            c,
            &NewRow {
                action: action.to_string(),
                channel: Some(1),
                created_ms: at,
                give_up_ms: at + 3_000,
            },
            msg,
        )
        .unwrap()
    }

    #[test]
    fn a_row_is_stored_pending_then_follows_its_attempts() {
        let c = db();
        let r = queue(&c, "mail", 100);
        assert_eq!(r.message.id, format!("tandem-x-{}", r.id));
        assert_eq!(get(&c, r.id).unwrap().unwrap(), r);
        assert_eq!(
            pending(&c, "mail", 10).unwrap(),
            vec![Due {
                id: r.id,
                next_attempt_ms: 100
            }]
        );
        record(
            &c,
            r.id,
            &Step::RetryAt {
                at_ms: 1_100,
                error: "refused".into(),
            },
            100,
        )
        .unwrap();
        let g = get(&c, r.id).unwrap().unwrap();
        assert_eq!((g.attempts, g.next_attempt_ms, g.state), (1, 1_100, State::Pending));
        assert_eq!(g.last_error.as_deref(), Some("refused"));
        record(&c, r.id, &Step::Delivered, 1_200).unwrap();
        let g = get(&c, r.id).unwrap().unwrap();
        assert_eq!(
            (g.attempts, g.state, g.delivered_ms),
            (2, State::Delivered, Some(1_200))
        );
        assert!(pending(&c, "mail", 10).unwrap().is_empty());
        // A late outcome for a finished row changes nothing.
        record(&c, r.id, &Step::Failed { error: "x".into() }, 1_300).unwrap();
        assert_eq!(get(&c, r.id).unwrap().unwrap().state, State::Delivered);
        let s = summary(&c, "mail").unwrap();
        assert_eq!((s.pending, s.delivered, s.failed), (0, 1, 0));
        assert_eq!(s.last_delivered_ms, Some(1_200));
        assert_eq!(s.last_error.as_deref(), Some("refused"));
    }

    #[test]
    fn pending_rows_come_by_due_time_per_action() {
        let c = db();
        let a = queue(&c, "a", 300);
        let b = queue(&c, "a", 100);
        let other = queue(&c, "b", 0);
        let ids: Vec<i64> = pending(&c, "a", 10).unwrap().iter().map(|d| d.id).collect();
        assert_eq!(ids, vec![b.id, a.id]);
        assert_eq!(pending(&c, "a", 1).unwrap().len(), 1);
        assert_eq!(pending_counts(&c, "a").unwrap(), (3, 2));
        // Removing action b from the configuration fails its rows.
        let gone = fail_orphans(&c, &["a".to_string()]).unwrap();
        assert_eq!(gone.iter().map(|r| r.id).collect::<Vec<_>>(), vec![other.id]);
        assert_eq!(get(&c, other.id).unwrap().unwrap().state, State::Failed);
        assert_eq!(pending_counts(&c, "a").unwrap(), (2, 2));
        // Overflow fails the oldest of the action.
        let dropped = fail_oldest(&c, "a", 1).unwrap();
        assert_eq!(dropped.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a.id]);
        assert_eq!(recent(&c, "a", 10).unwrap().len(), 2);
        assert_eq!(recent(&c, "a", 10).unwrap()[0].id, b.id);
    }

    #[test]
    fn pruning_keeps_pending_rows_and_the_newest_finished() {
        let c = db();
        let rows: Vec<Row> = (0..5).map(|i| queue(&c, "a", i * 1_000)).collect();
        for r in &rows[..4] {
            record(&c, r.id, &Step::Delivered, 0).unwrap();
        }
        // Older than 1.5 s: rows 0 and 1 go.
        assert_eq!(prune(&c, 1_500, 100).unwrap(), 2);
        // Keep the newest one finished row: row 2 goes, row 3 stays.
        assert_eq!(prune(&c, 0, 1).unwrap(), 1);
        let left: Vec<i64> = recent(&c, "a", 10).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(left, vec![rows[4].id, rows[3].id]);
        // The pending row is never pruned.
        assert_eq!(prune(&c, i64::MAX, 0).unwrap(), 1);
        assert_eq!(pending(&c, "a", 10).unwrap().len(), 1);
    }
}
