//! A thousand concurrent connections, each with an IRP pending, served by the provider's one
//! I/O thread.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use wsk_sys::*;

use crate::support::*;

const CONNECTIONS: usize = 1000;

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(Iterator::count).unwrap_or(0)
}

/// Raises the soft limit on open files to the hard limit (2,000+ sockets are open at once).
fn raise_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit);
    }
    assert!(limit.rlim_cur >= 4 * CONNECTIONS as u64, "open file limit {} too low for the test", limit.rlim_cur);
}

#[test]
fn a_thousand_concurrent_connections_without_a_thousand_threads() {
    raise_file_limit();
    clean_session(|client| {
        let (listener, local) = client.listener(v4(0));
        let threads_before = thread_count();
        let mut addresses: Vec<Box<[SOCKADDR_STORAGE; 2]>> =
            (0..CONNECTIONS).map(|_| Box::new([SOCKADDR_STORAGE::zeroed(); 2])).collect();
        let accepts: Vec<Req> = addresses.iter_mut().map(|a| listener.accept_start(a)).collect();
        let mut peers: Vec<TcpStream> = (0..CONNECTIONS).map(|_| TcpStream::connect(local).unwrap()).collect();
        let by_address: HashMap<_, usize> =
            peers.iter().enumerate().map(|(i, p)| (p.local_addr().unwrap(), i)).collect();
        // Accepted socket for each peer.
        let mut sockets = vec![None; CONNECTIONS];
        for (accept, address) in accepts.iter().zip(&addresses) {
            let done = accept.wait();
            assert_eq!(done.status, STATUS_SUCCESS);
            let peer = by_address[&crate::support::address(&address[1]).unwrap()];
            sockets[peer] = Some(Sock(done.info as *mut WSK_SOCKET));
        }
        drop(accepts);
        let sockets: Vec<Sock> = sockets.into_iter().map(Option::unwrap).collect();

        // A receive pending on every connection at once.
        let mut bufs: Vec<Buf> = (0..CONNECTIONS).map(|_| Buf::zeroed(8)).collect();
        let receives: Vec<Req> =
            sockets.iter().zip(bufs.iter_mut()).map(|(s, b)| s.receive_start(b, WSK_FLAG_WAITALL)).collect();
        assert!(receives.iter().all(|r| r.done().is_none()), "every receive pends");
        let threads = thread_count();
        assert!(
            threads < threads_before + 16,
            "{} threads with {CONNECTIONS} pending receives (was {threads_before})",
            threads
        );
        for (i, peer) in peers.iter_mut().enumerate() {
            peer.write_all(&(i as u64).to_le_bytes()).unwrap();
        }
        for (i, receive) in receives.iter().enumerate() {
            let done = receive.wait();
            assert_eq!((done.status, done.info), (STATUS_SUCCESS, 8));
            assert_eq!(bufs[i].data, (i as u64).to_le_bytes());
        }
        drop(receives);
        // Echo back and close.
        for (i, socket) in sockets.iter().enumerate() {
            socket.send_all(&bufs[i].data);
        }
        for (i, peer) in peers.iter_mut().enumerate() {
            let mut got = [0u8; 8];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(got, (i as u64).to_le_bytes());
        }
        for socket in &sockets {
            socket.close();
        }
        listener.close();
    });
}
