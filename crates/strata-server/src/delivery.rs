//! The delivery pool: where SSE subscriptions read and render their events, at a lower CPU priority
//! than everything else the server does.
//!
//! Writers come first (DESIGN.md: consumers never slow the writers down). A subscription's work —
//! reading the log, rendering every event for its connection — grows with subscribers × events, and
//! with a thousand subscribers it would take most of the CPU from the appends. So it runs on threads
//! of their own at nice [`DELIVERY_NICE`], the lowest priority: they get the CPU the
//! request handlers and the committer leave. A subscriber that cannot keep up falls behind (its
//! subscription says `fell_behind` and reads on from the log) rather than holding the writers back.
//! A connection that opens with a subscription is served here whole (see `serve_router`); its
//! subscription's reader hands it rendered batches through a channel of one.

use std::sync::OnceLock;
use tokio::runtime::{Builder, Handle, Runtime};

/// The nice value of delivery threads (0 is normal, 19 the lowest priority).
pub const DELIVERY_NICE: i32 = 19;
/// Threads of the delivery pool.
pub const DELIVERY_THREADS: usize = 2;

/// The process's delivery pool (started on first use, never stopped: it holds no state of its own,
/// and a task of it ends when its connection's receiver is dropped).
pub fn handle() -> &'static Handle {
    static POOL: OnceLock<Runtime> = OnceLock::new();
    POOL.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(DELIVERY_THREADS)
            .thread_name("strata-delivery")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .expect("start the delivery threads")
    })
    .handle()
}

/// Lowers the calling thread's priority. On Linux the nice value is a thread's own, and
/// `setpriority(PRIO_PROCESS, tid)` sets it for that thread only. Elsewhere (or if refused) the
/// threads run at normal priority: delivery still works, only without the precedence.
///
/// Not `SCHED_IDLE`: delivery threads take the index's read lock for their reads, and the committer
/// needs its write lock after every commit; a thread that held the read lock when it was preempted
/// must get the CPU back soon. At nice 19 it gets a share of it within milliseconds; under
/// `SCHED_IDLE` only when the CPU is otherwise idle (measured: no gain for the writers either).
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, DELIVERY_NICE);
    }
}
