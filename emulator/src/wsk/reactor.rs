//! The provider's I/O thread: one `mio` poll over every host socket (edge-triggered), started
//! on first use and shared by all sessions of the process.
//!
//! Each host socket is registered for readability and writability with its socket's key
//! (the `WSK_SOCKET` address) as token. On an event the thread moves the socket's queues
//! forward ([`super::queue::progress`]) and completes the IRPs that finished, at
//! DISPATCH_LEVEL, as a real provider completes from its DPCs, then runs the socket's due
//! event callbacks ([`super::deliver::deliver`]). One thread serves any number of
//! connections: no thread ever blocks on a single socket.
//!
//! Readiness is edge-triggered: work left behind without a new edge (a callback enabled with
//! data already buffered, a receive IRP that took only part of it, a delivery pass that used
//! up its budget) is resumed by [`kick`]ing the socket: its key is queued and the thread woken
//! for a delivery pass. A client's call that resumes indications runs its pass itself, at the
//! end of that call ([`kick_here`]).

use std::os::fd::AsRawFd;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use super::processors::{self, Job};
use super::{deliver, loopback, queue, socket};
use crate::sync::lock;

struct Reactor {
    registry: Registry,
    waker: Waker,
}

/// The waker's token (no socket key is 0: keys are header addresses).
const WAKE: Token = Token(0);

/// Sockets kicked since the thread last looked (a leaf lock: taken under socket locks).
static KICKS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

static REACTOR: OnceLock<Reactor> = OnceLock::new();

fn reactor() -> &'static Reactor {
    REACTOR.get_or_init(|| {
        let poll = Poll::new().unwrap_or_else(|error| panic!("wsk-emulator: cannot create the I/O poller: {error}"));
        let registry = poll
            .registry()
            .try_clone()
            .unwrap_or_else(|error| panic!("wsk-emulator: cannot share the I/O poller: {error}"));
        let waker = Waker::new(poll.registry(), WAKE)
            .unwrap_or_else(|error| panic!("wsk-emulator: cannot create the I/O waker: {error}"));
        std::thread::Builder::new()
            .name("wsk-emu-net".to_owned())
            .spawn(move || run(poll))
            .unwrap_or_else(|error| panic!("wsk-emulator: cannot start the I/O thread: {error}"));
        Reactor { registry, waker }
    })
}

fn run(mut poll: Poll) {
    crate::threads::no_wakeup_preemption();
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(error) = poll.poll(&mut events, None) {
            if error.kind() != std::io::ErrorKind::Interrupted {
                eprintln!("wsk-emulator: I/O poll failed: {error}");
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        let mut woken = false;
        for event in &events {
            if event.token() == WAKE {
                woken = true;
            } else if processors::active() {
                processors::post(Job::Ready(event.token().0, read_closed(event)));
            } else if let Some(socket) = socket::open_socket(event.token().0) {
                queue::ready(&socket, read_closed(event));
                deliver::deliver(&socket);
            }
        }
        if woken {
            let mut kicked = std::mem::take(&mut *lock(&KICKS));
            kicked.sort_unstable();
            kicked.dedup();
            for key in kicked {
                if let Some(socket) = socket::open_socket(key) {
                    deliver::deliver(&socket);
                }
            }
        }
    }
}

/// Whether a readiness event says the host socket's read side is closed (the peer's FIN,
/// `EPOLLRDHUP` / `EPOLLHUP`) or has an error (a reset): what is left to read then ends in
/// something a short read does not reveal.
fn read_closed(event: &mio::event::Event) -> bool {
    event.is_read_closed() || event.is_error()
}

/// Asks the I/O thread for a delivery pass over the socket `key` (any thread, any IRQL, any
/// lock held but `KICKS` and the socket table's). An in-memory socket's pass runs on the
/// calling thread instead, once it holds no lock (see `loopback`).
pub(crate) fn kick(key: usize) {
    if loopback::owns(key) {
        loopback::wake_later(key);
        return;
    }
    if processors::active() {
        processors::post(Job::Deliver(key));
        return;
    }
    let first = {
        let mut kicks = lock(&KICKS);
        kicks.push(key);
        kicks.len() == 1
    };
    if first && let Err(error) = reactor().waker.wake() {
        eprintln!("wsk-emulator: cannot wake the I/O thread: {error}");
    }
}

/// Asks for a delivery pass over the socket `key` on the calling thread, at the end of the
/// WSK call it is making, once the provider holds no lock (the caller is inside a WSK call,
/// whose end runs `loopback::run_pending`). Used where a client's call resumes indications
/// (a zero-length `WskReceive`): the thread that asked for the data takes it on, as a
/// stack's receive path may indicate what it buffered from the caller's context, instead of
/// handing the pass to the I/O thread (a thread switch per resume, and every later callback
/// on the other thread). Under the adversary's `processors` the pass goes to a processor.
pub(crate) fn kick_here(key: usize) {
    if processors::active() {
        processors::post(Job::Deliver(key));
        return;
    }
    loopback::wake_later(key);
}

/// Registers a host socket under `key`.
pub(crate) fn register(host: &socket2::Socket, key: usize) -> std::io::Result<()> {
    let fd = host.as_raw_fd();
    reactor().registry.register(&mut SourceFd(&fd), Token(key), Interest::READABLE | Interest::WRITABLE)
}

/// Deregisters a host socket (before it is closed).
pub(crate) fn deregister(host: &socket2::Socket) {
    let fd = host.as_raw_fd();
    let _ = reactor().registry.deregister(&mut SourceFd(&fd));
}
