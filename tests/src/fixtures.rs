//! Small pieces many test binaries share: a loopback address to bind, a byte pattern to check
//! transfers with, and a listener in the test driver.

use std::net::{Ipv4Addr, SocketAddr};

use wsk::TcpListener;

use crate::harness::Env;

/// `127.0.0.1`, any port.
pub fn any_local() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// `len` bytes of a pattern that differs with `seed` and does not repeat within 256 bytes, so
/// that a byte lost, doubled or moved shows.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// A listener in the test driver on [`any_local`], and the address it got.
pub async fn bound_listener(env: &Env) -> (TcpListener, SocketAddr) {
    let mut l = TcpListener::bind(env.wsk, any_local()).await.expect("bind");
    let addr = l.query_local_addr().await.expect("local address");
    (l, addr)
}
