//! [`EventReader`]: a connection's event stream read as bytes (`embedded-io-async`), with
//! [`BufRead::fill_buf`] lending WSK's own buffers, without a copy.

use core::future::poll_fn;
use core::pin::Pin;

use embedded_io_async::{BufRead, ErrorType, Read};
use futures_core::Stream;

use super::connection::{ConnectionEvent, ConnectionEvents, Received};
use crate::error::{Error, Result};

/// The received bytes of a [`ConnectionEvents`] stream, in order, as
/// `embedded_io_async::{Read, BufRead}` (from [`ConnectionEvents::into_reader`]).
///
/// `fill_buf` returns the rest of the current contiguous piece of the indication WSK
/// delivered (an MDL's mapped memory), so a parser reads the provider's buffers directly; the
/// indication is released (`WskRelease`) once every byte of it was consumed. `read` copies out
/// of the same pieces. A graceful disconnect is the end of the stream (`Ok(0)` / an empty
/// slice); an abortive one is `ConnectionReset`; the socket's close ends it too. Send-backlog
/// events are skipped.
///
/// Both are cancel-safe: an item is taken from the event stream only inside a poll that then
/// stores it, so a dropped `fill_buf` or `read` loses nothing.
///
/// IRQL == PASSIVE_LEVEL (task context), as the event stream.
pub struct EventReader {
    events: ConnectionEvents,
    current: Option<Received>,
    /// Bytes of `current` consumed.
    at: usize,
    /// The stream ended: only empty reads from now on.
    ended: bool,
}

impl ConnectionEvents {
    /// Reads this stream's data as bytes: see [`EventReader`]. Any IRQL (it only moves the
    /// stream).
    pub fn into_reader(self) -> EventReader {
        EventReader { events: self, current: None, at: 0, ended: false }
    }
}

impl EventReader {
    /// The event stream (for [`ConnectionEvents::retained_bytes`] and the like). Any IRQL.
    pub fn events(&self) -> &ConnectionEvents {
        &self.events
    }

    /// Waits until the current item has unconsumed bytes or the stream ended.
    async fn fill(&mut self) -> Result<()> {
        loop {
            if self.current.as_ref().is_some_and(|r| self.at < r.len()) || self.ended {
                return Ok(());
            }
            // Every byte consumed: the indication goes back to WSK here.
            self.current = None;
            self.at = 0;
            let events = &mut self.events;
            match poll_fn(|cx| Pin::new(&mut *events).poll_next(cx)).await {
                Some(Ok(ConnectionEvent::Data(received))) => self.current = Some(received),
                Some(Ok(ConnectionEvent::SendBacklog(_))) => {}
                Some(Ok(ConnectionEvent::Disconnected { abortive: false })) | None => self.ended = true,
                Some(Ok(ConnectionEvent::Disconnected { abortive: true })) => {
                    self.ended = true;
                    return Err(Error::Status(wsk_sys::STATUS_CONNECTION_RESET));
                }
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// The unconsumed rest of the current piece (empty when there is no current item).
    fn piece(&self) -> &[u8] {
        let Some(received) = self.current.as_ref() else { return &[] };
        let mut start = 0;
        for segment in received.segments() {
            let end = start + segment.len();
            if self.at < end {
                return &segment[self.at - start..];
            }
            start = end;
        }
        &[]
    }
}

impl ErrorType for EventReader {
    type Error = Error;
}

impl Read for EventReader {
    /// Copies from the current piece; `Ok(0)` at the end of the stream.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let piece = self.fill_buf().await?;
        let n = piece.len().min(buf.len());
        buf[..n].copy_from_slice(&piece[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for EventReader {
    /// The rest of the current piece of WSK's buffer, waiting for data if none is left;
    /// empty at the end of the stream.
    async fn fill_buf(&mut self) -> Result<&[u8]> {
        self.fill().await?;
        Ok(self.piece())
    }

    fn consume(&mut self, amt: usize) {
        let len = self.current.as_ref().map_or(0, Received::len);
        self.at = (self.at + amt).min(len);
    }
}
