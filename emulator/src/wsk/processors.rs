//! The provider's "processors" under the adversary's `processors` (see
//! [`crate::adversary`]): provider threads (`wsk-emu-cpuN`) that move sockets forward,
//! complete IRPs and call event callbacks, as the DPCs of a multiprocessor Windows machine do.
//!
//! With processors, the I/O thread only polls: each readiness event becomes a [`Job::Ready`]
//! and each kick a [`Job::Deliver`] for a processor chosen at random, and a completion the
//! provider has ready may be handed to another processor ([`Job::Complete`]) instead of run
//! where it was found. Each job waits a random delay first (up to the adversary's
//! `max_delay_us`). So one socket's completions and callbacks come from any processor, in any
//! order between sockets and between operations of one socket.
//!
//! What stays serialized, and why (Microsoft documents no ordering of completions, so none is
//! kept between operations):
//! * the *data* of one connection stays in order: a queue's operations are still served in
//!   order under the socket's lock (bytes go to the host socket, or come from it, in
//!   submission order); only their completion routines may run in any order;
//! * one connection socket's callbacks never overlap (`deliver::overlapping` says why);
//!   datagram and listening sockets' callbacks may, with `concurrent_callbacks`;
//! * a close completes only after every completion it waits for ran (the in-flight count is
//!   settled by whichever processor completed the IRP).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use wsk_sys::NTSTATUS;

use super::deliver;
use super::model::{Irp, Queue};
use super::queue;
use super::socket::{self, Socket};
use crate::adversary;
use crate::sync::{lock, wait, wait_for};

/// Work for a processor.
pub(crate) enum Job {
    /// The socket's host socket is ready: move its queues forward, then deliver.
    /// The bool: the host reported the read side closed or an error (see
    /// `State::host_ready`).
    Ready(usize, bool),
    /// A delivery pass over the socket.
    Deliver(usize),
    /// Complete an IRP the provider took out of a socket's queue (it holds a socket
    /// reference in `DriverContext[0]`, and is counted in the socket's in-flight IRPs).
    Complete { socket: Arc<Socket>, irp: Irp, status: NTSTATUS, info: usize },
    /// Cancel the pending ops of one of the socket's queues on the provider's own account
    /// (`Adversary::provider_cancel_ppm`).
    ProviderCancel(usize, Queue),
}

struct Processor {
    jobs: Mutex<VecDeque<(Instant, Job)>>,
    ready: Condvar,
}

static PROCESSORS: OnceLock<Vec<Processor>> = OnceLock::new();

/// Whether the processors do the provider's work (the adversary asks for them).
pub(crate) fn active() -> bool {
    adversary::get().processors > 0
}

fn processors() -> &'static [Processor] {
    PROCESSORS.get_or_init(|| {
        let count = adversary::get().processors.max(1);
        for index in 0..count {
            std::thread::Builder::new()
                .name(format!("wsk-emu-cpu{index}"))
                .spawn(move || run(index))
                .unwrap_or_else(|error| panic!("wsk-emulator: cannot start provider processor {index}: {error}"));
        }
        (0..count).map(|_| Processor { jobs: Mutex::new(VecDeque::new()), ready: Condvar::new() }).collect()
    })
}

/// Hands `job` to a processor chosen at random, to run after a random delay (any thread, any
/// IRQL, any provider lock held: the processor's queue lock is a leaf).
pub(crate) fn post(job: Job) {
    let all = processors();
    let chosen = &all[(adversary::roll() % all.len() as u64) as usize];
    let max_delay = adversary::get().max_delay_us;
    let delay = if max_delay == 0 { 0 } else { adversary::roll() % u64::from(max_delay + 1) };
    let due = Instant::now() + Duration::from_micros(delay);
    lock(&chosen.jobs).push_back((due, job));
    chosen.ready.notify_one();
}

/// A processor: runs its jobs in order, each once it is due (PASSIVE_LEVEL between jobs; the
/// jobs raise to DISPATCH_LEVEL where the provider does).
fn run(index: usize) {
    let processor = loop {
        // The table is published right after the threads start.
        if let Some(all) = PROCESSORS.get() {
            break &all[index];
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    loop {
        let job = {
            let mut jobs = lock(&processor.jobs);
            loop {
                match jobs.front() {
                    None => jobs = wait(&processor.ready, jobs),
                    Some(&(due, _)) => {
                        let now = Instant::now();
                        if due <= now {
                            break jobs.pop_front().map(|(_, job)| job);
                        }
                        jobs = wait_for(&processor.ready, jobs, due - now);
                    }
                }
            }
        };
        match job {
            Some(Job::Ready(key, closed)) => {
                if let Some(socket) = socket::open_socket(key) {
                    queue::ready(&socket, closed);
                    deliver::deliver(&socket);
                }
            }
            Some(Job::Deliver(key)) => {
                if let Some(socket) = socket::open_socket(key) {
                    deliver::deliver(&socket);
                }
            }
            Some(Job::Complete { socket, irp, status, info }) => queue::complete_late(&socket, irp, status, info),
            Some(Job::ProviderCancel(key, which)) => {
                if let Some(socket) = socket::open_socket(key) {
                    queue::adversary_cancels(&socket, which);
                }
            }
            None => {}
        }
    }
}
