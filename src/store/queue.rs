//! The writer's two inboxes. Frames (and the commands that must stay in order
//! with them: end of run, sync, shutdown) travel on one bounded queue; events
//! from every source (HTTP and MQTT triggers, motion, cameras, rules) on a
//! second one. A flood of events therefore fills only its own queue and is
//! refused there: it can never take the place of a frame.
//!
//! The writer sleeps on the frame queue; an event that arrives while no frame
//! does pokes it with a single `Wake` (at most one is ever queued, so pokes
//! cannot crowd out frames either). Must never block a sender that used
//! `try_send`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SendError, SyncSender, TrySendError};
use std::sync::Arc;

use super::writer::Command;

/// Frames queued for the writer before ingest starts dropping (about 2 s of 64 streams).
pub const FRAME_QUEUE_DEPTH: usize = 4096;
/// Events queued for the writer before sources are refused (an HTTP trigger answers 503).
pub const EVENT_QUEUE_DEPTH: usize = 1024;

/// The sending side, cloned into every producer.
#[derive(Clone)]
pub struct WriterTx {
    frames: SyncSender<Command>,
    events: SyncSender<Command>,
    /// A `Wake` is queued and not yet handled.
    wake: Arc<AtomicBool>,
}

/// The writer's side.
pub struct WriterRx {
    pub(super) frames: Receiver<Command>,
    pub(super) events: Receiver<Command>,
    pub(super) wake: Arc<AtomicBool>,
}

pub fn channel() -> (WriterTx, WriterRx) {
    let (ftx, frx) = std::sync::mpsc::sync_channel(FRAME_QUEUE_DEPTH);
    let (etx, erx) = std::sync::mpsc::sync_channel(EVENT_QUEUE_DEPTH);
    let wake = Arc::new(AtomicBool::new(false));
    (
        WriterTx {
            frames: ftx,
            events: etx,
            wake: wake.clone(),
        },
        WriterRx {
            frames: frx,
            events: erx,
            wake,
        },
    )
}

fn is_event(c: &Command) -> bool {
    matches!(c, Command::Event { .. } | Command::EventEdge(_))
}

impl WriterTx {
    /// Queues without waiting; a full queue hands the command back.
    pub fn try_send(&self, c: Command) -> Result<(), TrySendError<Command>> {
        if is_event(&c) {
            self.events.try_send(c)?;
            self.poke();
            Ok(())
        } else {
            self.frames.try_send(c)
        }
    }

    /// Queues, waiting for room. Only for threads that may wait (shutdown,
    /// tests); never from a task that serves a camera or a client.
    pub fn send(&self, c: Command) -> Result<(), SendError<Command>> {
        if is_event(&c) {
            self.events.send(c)?;
            self.poke();
            Ok(())
        } else {
            self.frames.send(c)
        }
    }

    fn poke(&self) {
        if !self.wake.swap(true, Ordering::AcqRel) && self.frames.try_send(Command::Wake).is_err() {
            // The frame queue is full, so the writer is busy and will look at
            // the events after this batch anyway; let a later event poke again.
            self.wake.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Time90k;

    fn ev() -> Command {
        Command::Event {
            channel: Some(1),
            kind: "camera_online",
            time: Time90k(0),
            details: serde_json::json!({}),
        }
    }

    #[test]
    fn an_event_flood_never_takes_a_frame_slot() {
        let (tx, rx) = channel();
        for _ in 0..EVENT_QUEUE_DEPTH {
            tx.try_send(ev()).unwrap();
        }
        assert!(matches!(tx.try_send(ev()), Err(TrySendError::Full(_))));
        // Exactly one wake was queued for all those events.
        let mut wakes = 0;
        while let Ok(c) = rx.frames.try_recv() {
            assert!(matches!(c, Command::Wake));
            wakes += 1;
        }
        assert_eq!(wakes, 1);
        // Frames still have the whole queue but for that one wake.
        for _ in 0..FRAME_QUEUE_DEPTH {
            tx.try_send(Command::EndRun { channel: 1 }).unwrap();
        }
        assert!(matches!(
            tx.try_send(Command::EndRun { channel: 1 }),
            Err(TrySendError::Full(_))
        ));
    }

    #[test]
    fn a_handled_wake_lets_the_next_event_poke_again() {
        let (tx, rx) = channel();
        tx.try_send(ev()).unwrap();
        assert!(matches!(rx.frames.try_recv(), Ok(Command::Wake)));
        tx.try_send(ev()).unwrap();
        assert!(
            rx.frames.try_recv().is_err(),
            "no second wake while the first is unhandled"
        );
        rx.wake.store(false, Ordering::Release);
        tx.try_send(ev()).unwrap();
        assert!(matches!(rx.frames.try_recv(), Ok(Command::Wake)));
        assert_eq!(rx.events.try_iter().count(), 3);
    }
}
