//! Per-connection idle timeout: the longest a connection may wait for its peer's next data, on
//! either receive path.
//!
//! * IRP receives: [`IdleRecv`] wraps a [`TcpReadHalf`]; its [`recv`](IdleRecv::recv) is
//!   [`TcpReadHalf::recv_timeout`] with the idle limit (the timer lives in the half's receive
//!   slot: nothing is allocated per receive).
//! * Receive events: [`IdleEvents`] wraps an event stream (any [`Stream`] of `Result`s, such as
//!   [`ConnectionEvents`](crate::events::ConnectionEvents)); when no item arrives within the
//!   limit it yields `Err(Error::TimedOut)` once, then goes on with the stream. Every item
//!   counts as activity (a connection's send backlog indication too), and so does the
//!   stream's [`Activity`] (a connection's reflections, checked when the limit is reached:
//!   a connection whose data all goes back from the receive callback is not idle).
//!
//! The limit counts from the moment the connection begins to wait for its peer (a receive is
//! started, or the stream is polled after it gave an item), so time the connection spends
//! sending does not count as idle; a send blocked on a peer that does not read is bounded by
//! other means (keep-alive, [`SocketOption::KeepAlive`](crate::SocketOption::KeepAlive), or
//! the driver's own deadline).
//!
//! # When it fires
//!
//! The helpers only report: the receive (or the wait for the next item) ends with
//! `Err(Error::TimedOut)`, and the connection itself is left as it was, usable. An IRP receive
//! is cancelled at the deadline and its buffer comes back with the error; data that won the
//! race with the cancel is returned instead (`Ok`), so no byte is lost. The driver decides what
//! follows; closing the connection without a disconnect resets it (the echo driver does that).
//!
//! All of it runs in the connection's task: IRQL == PASSIVE_LEVEL.

use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use futures_core::Stream;
use wsk_executor::platform::Platform;
use wsk_executor::{Kernel, Sleep};

use crate::error::{Error, Result};
use crate::{IoBuf, TcpReadHalf};

/// An idle limit, or none.
///
/// Eight bytes (the limit in nanoseconds, 0 for none): it is part of every connection task
/// that uses it, and an idle connection's task is most of what the connection costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdleTimeout {
    /// The limit in nanoseconds; 0: none.
    nanos: u64,
}

impl IdleTimeout {
    /// No limit: receives wait as long as it takes.
    pub const NONE: Self = Self { nanos: 0 };

    /// A limit of `limit`; a zero limit is no limit. Any IRQL.
    pub const fn after(limit: Duration) -> Self {
        // Limits beyond u64 nanoseconds (584 years) are as good as none.
        let nanos = limit.as_nanos();
        if nanos > u64::MAX as u128 { Self::NONE } else { Self { nanos: nanos as u64 } }
    }

    /// A limit of `seconds` seconds; 0 is no limit (a registry parameter's convention). Any
    /// IRQL.
    pub const fn from_secs(seconds: u32) -> Self {
        Self::after(Duration::from_secs(seconds as u64))
    }

    /// The limit, if any. Any IRQL.
    pub const fn limit(&self) -> Option<Duration> {
        if self.nanos == 0 { None } else { Some(Duration::from_nanos(self.nanos)) }
    }
}

/// A read half whose receives end with `Err(Error::TimedOut)` after the idle limit (see the
/// [module docs](self)).
pub struct IdleRecv<'a> {
    half: &'a mut TcpReadHalf,
    idle: IdleTimeout,
}

impl<'a> IdleRecv<'a> {
    /// Wraps `half`. Any IRQL.
    pub fn new(half: &'a mut TcpReadHalf, idle: IdleTimeout) -> Self {
        Self { half, idle }
    }

    /// [`TcpReadHalf::recv`], for at most the idle limit: on timeout `Err(Error::TimedOut)`
    /// with the same buffer back ([`TcpReadHalf::recv_timeout`]).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv(&mut self, buf: IoBuf) -> (Result<usize>, IoBuf) {
        match self.idle.limit() {
            Some(limit) => self.half.recv_timeout(buf, limit).await,
            None => self.half.recv(buf).await,
        }
    }
}

/// An event stream that yields `Err(Error::TimedOut)` when its connection waited for the
/// idle limit without an item (see the [module docs](self)).
///
/// It keeps one timer while it waits and re-arms it only when it fires early (an item came
/// after it was armed), so it allocates at most one timer block per idle limit of elapsed
/// time, not one per item.
#[derive(Debug)]
pub struct IdleEvents<S> {
    stream: S,
    idle: IdleTimeout,
    /// When the current wait began (`Kernel::now_nanos`).
    since: u64,
    /// A wait is under way (the stream returned `Pending` since it last gave an item).
    waiting: bool,
    /// The stream's [`Activity`] when the current wait began (4 bytes next to `waiting`:
    /// the wrapper is part of every connection task that uses it).
    activity: u32,
    sleep: Option<Sleep>,
}

impl<S> IdleEvents<S> {
    /// Wraps `stream`. Any IRQL.
    pub fn new(stream: S, idle: IdleTimeout) -> Self {
        Self { stream, idle, since: 0, waiting: false, activity: 0, sleep: None }
    }

    /// The wrapped stream. Any IRQL.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// The wrapped stream, borrowed (for calls that do not wait, such as
    /// `ConnectionEvents::try_next_data`). Any IRQL.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }
}

/// Progress a stream makes without giving an item, which [`IdleEvents`] counts as activity:
/// a connection stream's reflections
/// ([`EventConfig::reflect`](crate::events::EventConfig::reflect)), data that went back to the
/// peer from the receive callback and never reached the stream.
pub trait Activity {
    /// A count that changes with such progress (it may wrap: only a change is read); streams
    /// without any keep the default, 0. Any IRQL.
    fn activity(&self) -> u32 {
        0
    }
}

impl<T: Activity + ?Sized> Activity for &mut T {
    fn activity(&self) -> u32 {
        (**self).activity()
    }
}

impl Activity for crate::events::ConnectionEvents {
    fn activity(&self) -> u32 {
        self.reflections()
    }
}

impl<S, T> Stream for IdleEvents<S>
where
    S: Stream<Item = Result<T>> + Activity + Unpin,
{
    type Item = Result<T>;

    /// IRQL == PASSIVE_LEVEL (task context).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let this = self.get_mut();
        let activity = this.stream.activity();
        if !this.waiting || activity != this.activity {
            // A new wait, or progress without an item during this one: the limit counts
            // from now.
            this.waiting = true;
            this.since = Kernel::now_nanos();
            this.activity = activity;
        }
        if let Poll::Ready(item) = Pin::new(&mut this.stream).poll_next(cx) {
            this.waiting = false;
            return Poll::Ready(item);
        }
        let limit_nanos = this.idle.nanos;
        if limit_nanos == 0 {
            return Poll::Pending;
        }
        loop {
            let waited = Kernel::now_nanos().saturating_sub(this.since);
            if waited >= limit_nanos {
                this.sleep = None;
                this.waiting = false;
                return Poll::Ready(Some(Err(Error::TimedOut)));
            }
            let sleep = this.sleep.get_or_insert_with(|| Sleep::new(Duration::from_nanos(limit_nanos - waited)));
            match Pin::new(sleep).poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Armed for an earlier wait: arm again for the rest of this one.
                Poll::Ready(()) => this.sleep = None,
            }
        }
    }
}
