//! The end-to-end echo client: a real TCP client on the host that drives an echo server (the
//! echo driver under Wine or on the emulator) and checks every byte.
//!
//! One run: `connections` concurrent connections, each sending a random payload of 1 byte to
//! `max_payload` bytes (the first two are exactly 1 byte and `max_payload`), half-closing, and
//! expecting the whole echo and then end of stream; then `resets` connections that send data
//! and reset (RST) without reading; then a second, smaller echo round to show the server kept
//! serving.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{Result, bail};

/// What to run.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub addr: SocketAddr,
    pub connections: usize,
    pub max_payload: usize,
    pub resets: usize,
    pub seed: u64,
}

impl ClientConfig {
    /// The workload: 50 connections, payloads up to 1 MiB, 5 resets.
    pub fn standard(addr: SocketAddr) -> Self {
        Self { addr, connections: 50, max_payload: 1 << 20, resets: 5, seed: 0x5eed_0001 }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct ClientReport {
    pub connections: usize,
    pub bytes: u64,
    pub resets: usize,
    pub elapsed: Duration,
}

const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift64*), so a failing run can be repeated.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Payload sizes of one round: the first is 1 byte, the second `max`, the rest random.
pub fn payload_sizes(count: usize, max: usize, rng: &mut Rng) -> Vec<usize> {
    (0..count)
        .map(|i| match i {
            0 => 1,
            1 => max,
            _ => 1 + (rng.next_u64() as usize) % max,
        })
        .collect()
}

/// Sends `payload` on a new connection, half-closes, reads the echo to end of stream and
/// compares it byte for byte.
pub fn echo_once(addr: SocketAddr, payload: Vec<u8>) -> Result<()> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let len = payload.len();
    let sender = thread::spawn(move || -> std::io::Result<Vec<u8>> {
        writer.write_all(&payload)?;
        writer.shutdown(Shutdown::Write)?;
        Ok(payload)
    });
    let mut echoed = Vec::with_capacity(len);
    let mut reader = stream;
    reader.read_to_end(&mut echoed)?;
    let payload = match sender.join() {
        Ok(sent) => sent?,
        Err(_) => bail!("sender thread panicked"),
    };
    if echoed.len() != payload.len() {
        bail!("echo of {} bytes came back with {} bytes before end of stream", payload.len(), echoed.len());
    }
    if let Some(at) = echoed.iter().zip(&payload).position(|(a, b)| a != b) {
        bail!("echo of {} bytes differs at byte {at}", payload.len());
    }
    Ok(())
}

/// Opens a connection, sends some data and resets it (SO_LINGER 0) without reading.
pub fn reset_once(addr: SocketAddr, bytes: usize) -> Result<()> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    let socket = socket2::SockRef::from(&stream);
    socket.set_linger(Some(Duration::ZERO))?;
    (&stream).write_all(&vec![0x5a; bytes])?;
    drop(stream);
    Ok(())
}

fn echo_round(config: &ClientConfig, count: usize, rng: &mut Rng) -> Result<u64> {
    let sizes = payload_sizes(count, config.max_payload, rng);
    let total: u64 = sizes.iter().map(|&s| s as u64).sum();
    let workers: Vec<_> = sizes
        .into_iter()
        .map(|size| {
            let mut payload = vec![0u8; size];
            rng.fill(&mut payload);
            let addr = config.addr;
            thread::spawn(move || echo_once(addr, payload).map_err(|e| format!("{size}-byte echo: {e}")))
        })
        .collect();
    let mut failures = Vec::new();
    for worker in workers {
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("client thread panicked".to_owned()),
        }
    }
    if !failures.is_empty() {
        bail!("{} of {count} connections failed: {}", failures.len(), failures.join("; "));
    }
    Ok(total)
}

/// Runs the whole workload against `config.addr`.
pub fn run(config: &ClientConfig) -> Result<ClientReport> {
    let start = Instant::now();
    let mut rng = Rng::new(config.seed);
    let mut bytes = echo_round(config, config.connections, &mut rng)?;
    for i in 0..config.resets {
        reset_once(config.addr, 1000 * (i + 1))?;
    }
    // The server must keep serving after the resets.
    let again = config.connections.clamp(1, 10);
    bytes += echo_round(config, again, &mut rng)?;
    Ok(ClientReport {
        connections: config.connections + config.resets + again,
        bytes,
        resets: config.resets,
        elapsed: start.elapsed(),
    })
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_cover_both_ends_and_stay_in_range() {
        let mut rng = Rng::new(7);
        let sizes = payload_sizes(50, 1 << 20, &mut rng);
        assert_eq!(sizes[0], 1);
        assert_eq!(sizes[1], 1 << 20);
        assert!(sizes.iter().all(|&s| (1..=1 << 20).contains(&s)));
    }

    /// The client against a known-good echo server (std threads): proves the client's checks
    /// pass on a correct server and fail on a corrupting one.
    fn spawn_server(corrupt: bool) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    let mut first = true;
                    loop {
                        let n = match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if corrupt && first {
                            buf[0] ^= 1;
                        }
                        first = false;
                        if stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = stream.shutdown(Shutdown::Write);
                });
            }
        });
        addr
    }

    #[test]
    fn passes_against_a_correct_server() {
        let addr = spawn_server(false);
        let config = ClientConfig { addr, connections: 8, max_payload: 100_000, resets: 2, seed: 1 };
        let report = run(&config).expect("client run");
        assert_eq!(report.resets, 2);
        assert!(report.bytes > 100_000);
    }

    #[test]
    fn fails_against_a_corrupting_server() {
        let addr = spawn_server(true);
        let config = ClientConfig { addr, connections: 3, max_payload: 1000, resets: 0, seed: 2 };
        let err = run(&config).expect_err("corruption must be detected").to_string();
        assert!(err.contains("differs at byte 0"), "{err}");
    }
}
