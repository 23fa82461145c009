//! How the committer answers an append: through a tokio oneshot for async callers, or by unparking the
//! waiting thread for blocking ones. The committer wakes every appender of a group one after another,
//! so the wake-up is on the commit path; `thread::unpark` is a single futex wake, where tokio's
//! blocking receive goes through a mutex and a condition variable.

use crate::error::AppendError;
use crate::store::MultiAppendOutcome;
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use tokio::sync::oneshot;

pub(crate) type AppendReply = Result<MultiAppendOutcome, AppendError>;

/// The committer's end. Dropping it unanswered (the committer stopped) answers `Closed`.
#[derive(Debug)]
pub(crate) enum Reply {
    Task(oneshot::Sender<AppendReply>),
    Thread(ThreadSender),
    /// The committer's own appends (`$store-created`): nobody waits.
    Nobody,
}

#[derive(Debug)]
pub(crate) struct ThreadSender {
    slot: Option<Arc<Slot>>,
}

#[derive(Debug)]
struct Slot {
    value: Mutex<Option<AppendReply>>,
    thread: Thread,
}

/// The blocking caller's end.
#[derive(Debug)]
pub(crate) struct ThreadReceiver {
    slot: Arc<Slot>,
}

/// A reply channel for the calling thread, which must be the one that later calls `wait`.
pub(crate) fn for_this_thread() -> (Reply, ThreadReceiver) {
    let slot = Arc::new(Slot { value: Mutex::new(None), thread: std::thread::current() });
    (Reply::Thread(ThreadSender { slot: Some(slot.clone()) }), ThreadReceiver { slot })
}

impl Reply {
    pub fn send(self, reply: AppendReply) {
        match self {
            Reply::Task(sender) => {
                let _ = sender.send(reply);
            }
            Reply::Thread(mut sender) => sender.deliver(reply),
            Reply::Nobody => {}
        }
    }
}

impl ThreadSender {
    fn deliver(&mut self, reply: AppendReply) {
        if let Some(slot) = self.slot.take() {
            *slot.value.lock().expect("reply slot lock") = Some(reply);
            slot.thread.unpark();
        }
    }
}

impl Drop for ThreadSender {
    fn drop(&mut self) {
        self.deliver(Err(AppendError::Closed));
    }
}

impl ThreadReceiver {
    pub fn wait(self) -> AppendReply {
        loop {
            if let Some(reply) = self.slot.value.lock().expect("reply slot lock").take() {
                return reply;
            }
            // Spurious wake-ups are allowed: look again.
            std::thread::park();
        }
    }
}
