//! Counters of a stress run, readable while it runs and after unload.

use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use wsk::Error;

/// Operation kinds counted.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Op {
    /// A client's `TcpStream::connect`.
    Connect,
    /// The listener's `accept`.
    Accept,
    /// A send on a connection (either side).
    Send,
    /// A receive on a connection, by IRP or by receive event.
    Receive,
    /// A graceful disconnect (`shutdown`).
    Disconnect,
    /// An abortive disconnect (`abort`).
    Abort,
    /// A socket close.
    Close,
    /// A receive abandoned by dropping it, or a receiving task that ended without a result.
    Cancel,
    /// A receive whose deadline passed first: its IRP was cancelled and its buffer handed back.
    Timeout,
}

/// Names of [`Op`] in order, for tables.
pub const OP_NAMES: [&str; 9] =
    ["connect", "accept", "send", "receive", "disconnect", "abort", "close", "cancel", "timeout"];

const FAILURE_SLOTS: usize = 16;

/// Everything a run counts.
pub struct Stats {
    /// Operations attempted, by kind: index `Op as usize`, names in [`OP_NAMES`].
    pub ops: [AtomicU64; 9],
    /// Failures by NTSTATUS: (status, count) slots filled on first use.
    pub failure_status: [AtomicI32; FAILURE_SLOTS],
    /// Failures counted for the status in the same slot of `failure_status`.
    pub failure_count: [AtomicU64; FAILURE_SLOTS],
    /// Failures whose status found no slot.
    pub failure_other: AtomicU64,
    /// Received bytes that differed from what was sent (must stay 0).
    pub data_errors: AtomicU64,
    /// Operations that exceeded their time bound (must stay 0 without fault injection).
    pub hangs: AtomicU64,
    /// Bytes received back and checked against the pattern that was sent.
    pub bytes: AtomicU64,
    /// Connection sockets (client and server sides) open now.
    pub open_sockets: AtomicU64,
    /// The highest `open_sockets` seen.
    pub peak_sockets: AtomicU64,
    /// Client workers running now.
    pub running: AtomicU64,
}

#[expect(
    clippy::declare_interior_mutable_const,
    reason = "only used as an array repeat operand, each use a fresh value"
)]
const ZERO64: AtomicU64 = AtomicU64::new(0);
#[expect(
    clippy::declare_interior_mutable_const,
    reason = "only used as an array repeat operand, each use a fresh value"
)]
const ZERO32: AtomicI32 = AtomicI32::new(0);

/// The driver's counters.
pub static STATS: Stats = Stats {
    ops: [ZERO64; 9],
    failure_status: [ZERO32; FAILURE_SLOTS],
    failure_count: [ZERO64; FAILURE_SLOTS],
    failure_other: AtomicU64::new(0),
    data_errors: AtomicU64::new(0),
    hangs: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    open_sockets: AtomicU64::new(0),
    peak_sockets: AtomicU64::new(0),
    running: AtomicU64::new(0),
};

impl Stats {
    /// Counts one attempt of `op`, successful or not. IRQL <= DISPATCH_LEVEL.
    pub fn op(&self, op: Op) {
        self.ops[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed operation under its NTSTATUS. IRQL <= DISPATCH_LEVEL.
    pub fn failure(&self, error: Error) {
        let status = error.to_status();
        for i in 0..FAILURE_SLOTS {
            let slot = &self.failure_status[i];
            let current = slot.load(Ordering::Acquire);
            if current == status
                || (current == 0 && slot.compare_exchange(0, status, Ordering::AcqRel, Ordering::Acquire).is_ok())
                || slot.load(Ordering::Acquire) == status
            {
                self.failure_count[i].fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.failure_other.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection socket opened and raises the peak if needed.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn socket_opened(&self) {
        let now = self.open_sockets.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_sockets.fetch_max(now, Ordering::Relaxed);
    }

    /// Counts a connection socket closed (or dropped). IRQL <= DISPATCH_LEVEL.
    pub fn socket_closed(&self) {
        self.open_sockets.fetch_sub(1, Ordering::Relaxed);
    }

    /// Total operations so far. IRQL <= DISPATCH_LEVEL.
    pub fn total_ops(&self) -> u64 {
        self.ops.iter().map(|o| o.load(Ordering::Relaxed)).sum()
    }
}
