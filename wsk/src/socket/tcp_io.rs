//! `embedded-io-async` for TCP streams: [`Read`], [`BufRead`] and [`Write`] for
//! [`TcpStream`] and its halves, so `no_std` protocol crates written against those traits
//! (HTTP, MQTT, TLS) run over WSK sockets.
//!
//! WSK reads and writes memory described by MDLs that must stay valid until the IRP completes,
//! even if the future that issued it is dropped, so a borrowed `&mut [u8]` can never be
//! handed to the provider. Each half keeps an owned buffer of [`IO_BUFFER_SIZE`] bytes
//! instead, allocated at its first use and reused: reads receive into it and copy out (or lend
//! it through [`BufRead::fill_buf`]), writes copy into it and send it whole.
//!
//! # Cancellation
//!
//! * **Reads are cancel-safe.** Dropping a `read` or `fill_buf` future loses no byte: data
//!   the dropped receive brings in is kept by the socket and returned by the next read (the
//!   same guarantee as [`TcpStream::recv`]). The buffer goes with the dropped receive, so the
//!   next read allocates a new one (and reports `OutOfMemory` if pool memory is short).
//! * **Writes are not.** A `write` future dropped while its send is pending may have sent
//!   none, part or all of the bytes (as with any stream socket). `write` returns only once
//!   the provider completed the send, so `flush` has nothing to wait for.
//!
//! Reads and [`TcpStream::recv`] may be mixed: `recv` returns the bytes a read left in the
//! buffer first. [`TcpStream::into_events`] refuses while such bytes are left.
//!
//! IRQL: as the underlying calls, PASSIVE_LEVEL (task context).
//!
//! ```no_run
//! # async fn example(mut stream: wsk::TcpStream) -> Result<(), wsk::Error> {
//! use embedded_io_async::{BufRead, Write};
//! stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
//! let head = stream.fill_buf().await?; // borrowed from the stream's buffer, no copy
//! let n = head.len();
//! stream.consume(n);
//! # Ok(()) }
//! ```

use embedded_io_async::{BufRead, ErrorKind, ErrorType, Read, Write};

use crate::buf::IoBuf;
use crate::error::{Error, ErrorKind as Kind, Result};
use crate::socket::tcp::{TcpReadHalf, TcpStream, TcpWriteHalf};

/// Size of each half's buffer: the most one read receives and one write sends.
pub const IO_BUFFER_SIZE: usize = 4096;

impl embedded_io_async::Error for Error {
    fn kind(&self) -> ErrorKind {
        match Error::kind(self) {
            Kind::Cancelled => ErrorKind::Interrupted,
            Kind::Closed | Kind::NotConnected => ErrorKind::NotConnected,
            Kind::ConnectionRefused => ErrorKind::ConnectionRefused,
            Kind::ConnectionReset => ErrorKind::ConnectionReset,
            Kind::ConnectionAborted => ErrorKind::ConnectionAborted,
            Kind::AddrInUse => ErrorKind::AddrInUse,
            Kind::TimedOut => ErrorKind::TimedOut,
            Kind::Unsupported => ErrorKind::Unsupported,
            Kind::PermissionDenied => ErrorKind::PermissionDenied,
            Kind::ResourceShortage => ErrorKind::OutOfMemory,
            Kind::InvalidInput => ErrorKind::InvalidInput,
            Kind::WrongIrql | Kind::NotReady | Kind::Other => ErrorKind::Other,
        }
    }
}

impl ErrorType for TcpReadHalf {
    type Error = Error;
}

impl ErrorType for TcpWriteHalf {
    type Error = Error;
}

impl ErrorType for TcpStream {
    type Error = Error;
}

impl TcpReadHalf {
    /// The unread bytes in the buffer, receiving into it first if there are none. Empty at
    /// the end of the stream.
    async fn fill(&mut self) -> Result<&[u8]> {
        if self.rx.unread() == 0 {
            let mut buf = match self.rx.buf.take() {
                Some(buf) => buf,
                None => IoBuf::with_capacity(IO_BUFFER_SIZE)?,
            };
            buf.clear();
            self.rx.at = 0;
            // Reads bypass the read-ahead check in `recv`: the buffer is empty.
            let (result, back) = self.recv_unbuffered(buf).await;
            self.rx.buf = Some(back);
            if let Err(e) = result {
                if let Some(buf) = self.rx.buf.as_mut() {
                    buf.clear();
                }
                return Err(e);
            }
        }
        Ok(self.rx.buf.as_ref().map_or(&[][..], |buf| &buf.as_slice()[self.rx.at..]))
    }
}

impl Read for TcpReadHalf {
    /// Receives into the half's buffer when it is empty, then copies out. `Ok(0)` at the end
    /// of the stream (or for an empty `buf`). Cancel-safe (module documentation).
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let data = self.fill().await?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        self.rx.consume(n);
        Ok(n)
    }
}

impl BufRead for TcpReadHalf {
    /// The buffered bytes, receiving first if there are none; empty at the end of the stream.
    async fn fill_buf(&mut self) -> Result<&[u8]> {
        self.fill().await
    }

    fn consume(&mut self, amt: usize) {
        self.rx.consume(amt);
    }
}

impl Write for TcpWriteHalf {
    /// Copies up to [`IO_BUFFER_SIZE`] bytes into the half's buffer and sends them all;
    /// returns how many. Not cancel-safe (module documentation).
    async fn write(&mut self, buf: &[u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut tx = match self.tx.take() {
            Some(tx) => tx,
            None => IoBuf::with_capacity(IO_BUFFER_SIZE)?,
        };
        tx.clear();
        let n = tx.extend_from_slice(buf);
        let (result, back) = self.send_all(tx).await;
        self.tx = Some(back);
        result.map(|()| n)
    }

    /// Nothing to do: `write` returns once the provider completed the send.
    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

impl Read for TcpStream {
    /// See [`TcpReadHalf`]'s `read`.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.read_half().read(buf).await
    }
}

impl BufRead for TcpStream {
    async fn fill_buf(&mut self) -> Result<&[u8]> {
        self.read_half().fill_buf().await
    }

    fn consume(&mut self, amt: usize) {
        self.read_half().consume(amt);
    }
}

impl Write for TcpStream {
    /// See [`TcpWriteHalf`]'s `write`.
    async fn write(&mut self, buf: &[u8]) -> Result<usize> {
        self.write_half().write(buf).await
    }

    async fn flush(&mut self) -> Result<()> {
        self.write_half().flush().await
    }
}
