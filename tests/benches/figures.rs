//! Figures of the sockets library on the emulated kernel (`cargo bench -p wsk-tests --bench
//! figures`, also run by `cargo xtask bench`):
//!
//! * allocations (pool, IRPs, MDLs) per send and per receive in steady state (target 0);
//! * non-paged bytes per idle connection, connected or accepted (target 1 KiB or less), and
//!   what a pending receive adds (target 0: its IRP is the connection's; its buffer is the
//!   caller's and counted apart).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use wsk::{IoBuf, TcpListener, TcpStream};
use wsk_emulator::{Kernel, counters};
use wsk_tests::harness::run_with;

const ROUNDS: u64 = 10_000;
const CONNECTIONS: usize = 200;

fn allocations() -> u64 {
    counters().allocations()
}

fn nonpaged() -> u64 {
    counters().live_nonpaged_bytes
}

struct Figures {
    allocs_per_send: f64,
    allocs_per_receive: f64,
    idle_stream_bytes: f64,
    accepted_bytes: f64,
    pending_receive_bytes: f64,
    buffer_bytes: u64,
}

fn main() {
    let kernel = Kernel::builder().verifier(false).capture_sites(false);
    let (figures, report) = run_with(kernel, Duration::from_secs(300), |env| async move {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut l = TcpListener::bind(env.wsk, addr).await.unwrap();
        let addr = l.query_local_addr().await.unwrap();

        // Steady state: one connection, reused buffers, after a warm-up round.
        let mut a = TcpStream::connect(env.wsk, addr).await.unwrap();
        let (mut b, _) = l.accept().await.unwrap();
        let mut out = IoBuf::copy_from(&[0x5a; 1024]).unwrap();
        let mut inb = IoBuf::with_capacity(1024).unwrap();
        let mut exchange = async |out: IoBuf, inb: IoBuf| -> (IoBuf, IoBuf, u64, u64) {
            let before = allocations();
            let (sent, out) = a.send_all(out).await;
            sent.unwrap();
            let mid = allocations();
            let mut inb = inb;
            let mut got = 0;
            while got < 1024 {
                let (n, back) = b.recv(inb).await;
                inb = back;
                got += n.unwrap();
            }
            (out, inb, mid - before, allocations() - mid)
        };
        (out, inb, _, _) = exchange(out, inb).await;
        let (mut send_allocs, mut recv_allocs) = (0, 0);
        for _ in 0..ROUNDS {
            let (o, i, s, r) = exchange(out, inb).await;
            out = o;
            inb = i;
            send_allocs += s;
            recv_allocs += r;
        }

        // Idle connections: CONNECTIONS client streams, then the accepted ends with a pending
        // receive each (receive buffers counted separately).
        let base = nonpaged();
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            clients.push(TcpStream::connect(env.wsk, addr).await.unwrap());
        }
        let after_clients = nonpaged();
        let mut accepted = Vec::new();
        for _ in 0..CONNECTIONS {
            accepted.push(l.accept().await.unwrap().0);
        }
        let before_receives = nonpaged();
        let buffers_start = nonpaged();
        let mut buffers = Vec::new();
        for _ in 0..CONNECTIONS {
            buffers.push(IoBuf::with_capacity(64).unwrap());
        }
        let buffer_bytes = (nonpaged() - buffers_start) / CONNECTIONS as u64;
        // Start one receive per accepted stream without a task per receive (the futures live
        // in host memory here, as they would in a driver's own task): poll each once.
        let mut pending: Vec<_> = accepted.iter_mut().zip(buffers).map(|(s, buf)| Box::pin(s.recv(buf))).collect();
        for f in &mut pending {
            let started = std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx).is_pending())).await;
            assert!(started, "nothing was sent: the receive is pending");
        }
        let with_receives = nonpaged();
        let idle_stream_bytes = (after_clients - base) as f64 / CONNECTIONS as f64;
        // Accepted streams (allocated before the accept: the listener reserves them) plus the
        // receive each now has pending, buffers excluded.
        let accepted_bytes = (before_receives - after_clients) as f64 / CONNECTIONS as f64;
        let pending_receive_bytes = (with_receives - buffers_start) as f64 / CONNECTIONS as f64 - buffer_bytes as f64;
        drop(pending);
        for c in clients {
            c.close().await.unwrap();
        }
        for s in accepted {
            s.close().await.unwrap();
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
        l.close().await.unwrap();
        Figures {
            allocs_per_send: send_allocs as f64 / ROUNDS as f64,
            allocs_per_receive: recv_allocs as f64 / ROUNDS as f64,
            idle_stream_bytes,
            accepted_bytes,
            pending_receive_bytes,
            buffer_bytes,
        }
    });
    report.assert_no_violations();
    println!(
        "Sockets figures on the emulated kernel ({ROUNDS} rounds of 1 KiB send + receive; {CONNECTIONS} idle connections)\n"
    );
    println!("| figure | value | target |");
    println!("|---|---:|---:|");
    println!("| allocations per send (steady state) | {:.3} | 0 |", figures.allocs_per_send);
    println!("| allocations per receive (steady state) | {:.3} | 0 |", figures.allocs_per_receive);
    println!("| non-paged bytes per idle connected stream | {:.0} | <= 1024 |", figures.idle_stream_bytes);
    println!("| non-paged bytes per idle accepted stream | {:.0} | <= 1024 |", figures.accepted_bytes);
    println!(
        "| additional non-paged bytes while a receive is pending (its buffer excluded) | {:.0} | 0 |",
        figures.pending_receive_bytes
    );
    println!("| (a 64-byte receive buffer with its MDL, the caller's) | {} | - |", figures.buffer_bytes);
}
