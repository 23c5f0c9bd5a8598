//! The provider's I/O thread: one `mio` poll over every host socket (edge-triggered), started
//! on first use and shared by all sessions of the process.
//!
//! Each host socket is registered for readability and writability with its socket's key
//! (the `WSK_SOCKET` address) as token. On an event the thread moves the socket's queues
//! forward ([`super::queue::progress`]) and completes the IRPs that finished, at
//! DISPATCH_LEVEL, as a real provider completes from its DPCs. One thread serves any number
//! of connections: no thread ever blocks on a single socket.

use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use super::{queue, socket};

struct Reactor {
    registry: Registry,
}

static REACTOR: OnceLock<Reactor> = OnceLock::new();

fn reactor() -> &'static Reactor {
    REACTOR.get_or_init(|| {
        let poll = Poll::new().unwrap_or_else(|error| panic!("wsk-emulator: cannot create the I/O poller: {error}"));
        let registry = poll
            .registry()
            .try_clone()
            .unwrap_or_else(|error| panic!("wsk-emulator: cannot share the I/O poller: {error}"));
        std::thread::Builder::new()
            .name("wsk-emu-net".to_owned())
            .spawn(move || run(poll))
            .unwrap_or_else(|error| panic!("wsk-emulator: cannot start the I/O thread: {error}"));
        Reactor { registry }
    })
}

fn run(mut poll: Poll) {
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(error) = poll.poll(&mut events, None) {
            if error.kind() != std::io::ErrorKind::Interrupted {
                eprintln!("wsk-emulator: I/O poll failed: {error}");
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        for event in events.iter() {
            if let Some(socket) = socket::open_socket(event.token().0) {
                queue::progress(&socket);
            }
        }
    }
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
