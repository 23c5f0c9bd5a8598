//! Host senders of UDP datagrams that keep a bounded number in flight.
//!
//! UDP may drop a datagram, and on loopback it does when the receiving host socket's buffer is
//! full, which a loaded machine reaches when the emulator's provider falls behind. A test that
//! checks that *every* datagram arrives exactly once must therefore not outrun the receiver:
//! [`PacedSenders`] keeps at most `window` datagrams sent and not yet counted by the receiver
//! ([`PacedSenders::received`]), few enough that the host socket's buffer always holds them.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a sender waits for the receiver to make room before it gives up (the receiver's
/// own timeout fails the test first).
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// Host threads sending datagrams to one address with a shared window.
pub struct PacedSenders {
    received: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<SocketAddr>>,
}

impl PacedSenders {
    /// Starts `senders` threads, each with its own host socket on 127.0.0.1, each sending
    /// `each` datagrams `make(id)` to `to` with ids `sender * each + i`; together they keep at
    /// most `window` datagrams unreceived.
    pub fn start(to: SocketAddr, senders: u32, each: u32, window: usize, make: fn(u32) -> Vec<u8>) -> Self {
        let received = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicUsize::new(0));
        let threads = (0..senders)
            .map(|sender| {
                let (received, sent) = (Arc::clone(&received), Arc::clone(&sent));
                thread::spawn(move || {
                    let host = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("host socket");
                    for i in 0..each {
                        let stalled = Instant::now();
                        while sent.load(Ordering::Acquire).saturating_sub(received.load(Ordering::Acquire)) >= window {
                            assert!(stalled.elapsed() < STALL_LIMIT, "the receiver took nothing for {STALL_LIMIT:?}");
                            thread::sleep(Duration::from_micros(200));
                        }
                        sent.fetch_add(1, Ordering::AcqRel);
                        host.send_to(&make(sender * each + i), to).expect("send_to");
                    }
                    host.local_addr().expect("local address")
                })
            })
            .collect();
        Self { received, threads }
    }

    /// The receiver counts `n` more datagrams as taken, making room for as many.
    pub fn received(&self, n: usize) {
        self.received.fetch_add(n, Ordering::AcqRel);
    }

    /// Waits for every sender; returns their host addresses.
    pub fn join(self) -> Vec<SocketAddr> {
        self.threads.into_iter().map(|t| t.join().expect("sender thread")).collect()
    }
}
