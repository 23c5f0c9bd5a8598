//! Socket objects: the `WSK_SOCKET` the client sees, the provider state behind it, the table
//! that maps one to the other, and the WSK contract checks made on every call.
//!
//! ```text
//!   WskSocket / WskSocketConnect / WskAccept
//!        |  header (WSK_SOCKET) allocated, host socket created and registered
//!        v
//!      Open  --- calls: in_calls++ ... in_calls-- (CallGuard) ---
//!        |  WskCloseSocket: close_issued, pending IRPs cancelled, host socket closed
//!        v
//!     Closing  (close IRP pending until every cancelled IRP has completed)
//!        |  close IRP completed
//!        v
//!     Closed  (tombstone: the header stays allocated until the session ends, so a late
//!              call is reported as WSK_SOCKET_USED_AFTER_CLOSE instead of reading freed memory)
//! ```
//!
//! Lock order: a socket's `state`, then the socket table, then the registrations.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use wsk_sys::{NTSTATUS, STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER, WSK_SOCKET};

use super::addr::Family;
use super::events;
use super::model::{Events, Kind, Memory, Phase, Queue, Recorded, State};
use super::{loopback, reactor, registration};
use crate::sync::lock;
use crate::verifier::{Leak, LeakKind, Rule, bugcheck};

impl State {
    /// Closes the host socket: deregisters it, and resets the connection (SO_LINGER 0) when
    /// `abortive`.
    pub(crate) fn close_host(&mut self, abortive: bool) {
        match self.memory.take() {
            Some(Memory::End(end)) if abortive => loopback::reset(&end),
            Some(Memory::End(end)) => loopback::shutdown(&end),
            Some(Memory::Listener(backlog)) => {
                loopback::forget_listener(&backlog.address);
                for (key, ..) in backlog.waiting {
                    loopback::discard_later(key);
                }
            }
            None => {}
        }
        if let Some(host) = self.host.take() {
            reactor::deregister(&host);
            if abortive {
                let _ = host.set_linger(Some(std::time::Duration::ZERO));
            }
            drop(host);
        }
    }
}

/// A socket the provider created.
pub(crate) struct Socket {
    /// Address of the `WSK_SOCKET` header: the socket's identity (and its reactor token).
    pub key: usize,
    pub kind: Kind,
    pub family: Family,
    /// The session (driver load) that created it.
    pub session: u64,
    /// The registration (`PWSK_CLIENT`) it was created through.
    pub client: usize,
    /// Calls into the socket executing now.
    in_calls: AtomicU32,
    /// `WskCloseSocket` was called.
    close_issued: AtomicBool,
    /// An in-memory socket (see `loopback`): its kicks run on the kicking thread.
    pub in_memory: AtomicBool,
    pub state: Mutex<State>,
    /// What the client holds of the socket's indications (lock order: after `state`).
    pub retention: Mutex<events::Retention>,
}

impl Socket {
    /// The `PWSK_SOCKET` handed to the client.
    pub(crate) fn handle(&self) -> usize {
        self.key
    }

    /// Whether `WskCloseSocket` was called (possibly not processed yet).
    pub(crate) fn close_issued(&self) -> bool {
        self.close_issued.load(Ordering::SeqCst)
    }
}

enum Entry {
    Open(Arc<Socket>),
    /// Closed: only the header remains (freed when the session ends).
    Closed {
        session: u64,
    },
}

impl Entry {
    fn session(&self) -> u64 {
        match self {
            Entry::Open(socket) => socket.session,
            Entry::Closed { session } => *session,
        }
    }
}

/// Every socket header the provider allocated and not yet freed, by address.
static SOCKETS: Mutex<BTreeMap<usize, Entry>> = Mutex::new(BTreeMap::new());

thread_local! {
    /// Sockets the current thread is inside a call of (innermost last).
    static INSIDE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Creates a socket around `host` (already nonblocking) and registers it with the reactor;
/// without a host socket, an in-memory socket (see `loopback`). Fails when the client's
/// registration is going away.
pub(crate) fn create(
    kind: Kind,
    family: Family,
    client: usize,
    host: Option<socket2::Socket>,
    phase: Phase,
    handed_out: bool,
) -> Result<Arc<Socket>, NTSTATUS> {
    registration::socket_opened(client)?;
    let header = Box::into_raw(Box::new(WSK_SOCKET { Dispatch: super::tables::dispatch_for(kind) }));
    let key = header as usize;
    let socket = Arc::new(Socket {
        key,
        kind,
        family,
        session: crate::kernel::session(),
        client,
        in_calls: AtomicU32::new(0),
        close_issued: AtomicBool::new(false),
        in_memory: AtomicBool::new(false),
        state: Mutex::new(State {
            host,
            memory: None,
            phase,
            fin_sent: false,
            peer_fin: false,
            error: None,
            host_drained: false,
            host_closed: false,
            handed_out,
            closing: false,
            recorded: Recorded::default(),
            connects: VecDeque::new(),
            accepts: VecDeque::new(),
            sends: VecDeque::new(),
            receives: VecDeque::new(),
            inflight: 0,
            close_irp: None,
            events: Events::default(),
            inspect: Default::default(),
        }),
        retention: Mutex::new(events::Retention::default()),
    });
    lock(&SOCKETS).insert(key, Entry::Open(Arc::clone(&socket)));
    // Registered once the table has the socket: the I/O thread drops an event of a key it does
    // not find, and the first one reports what is already there (data, the peer's FIN) with no
    // edge after it; a socket whose reads then came back short would wait for a FIN forever.
    let registered = lock(&socket.state).host.as_ref().map_or(Ok(()), |host| reactor::register(host, key));
    if let Err(error) = registered {
        lock(&SOCKETS).remove(&key);
        registration::socket_closed(client);
        drop(socket);
        // SAFETY: allocated just above, out of the table again, never handed out.
        drop(unsafe { Box::from_raw(header) });
        return Err(super::status::from_io(&error));
    }
    Ok(socket)
}

/// Ends a socket's life: its table entry becomes a tombstone and the registration stops
/// counting it. Called once, when the close completes (or when a `WskSocketConnect` fails).
pub(crate) fn retire(socket: &Socket) {
    let retired = {
        let mut sockets = lock(&SOCKETS);
        match sockets.get_mut(&socket.key) {
            Some(entry @ Entry::Open(_)) => {
                *entry = Entry::Closed { session: socket.session };
                true
            }
            _ => false,
        }
    };
    if retired {
        registration::socket_closed(socket.client);
    }
}

/// An open socket by key (for the reactor).
pub(crate) fn open_socket(key: usize) -> Option<Arc<Socket>> {
    match lock(&SOCKETS).get(&key) {
        Some(Entry::Open(socket)) => Some(Arc::clone(socket)),
        _ => None,
    }
}

/// Proof that a call into a socket is executing; dropping it ends the call.
pub(crate) struct Call {
    pub socket: Arc<Socket>,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.socket.in_calls.fetch_sub(1, Ordering::SeqCst);
        INSIDE.with(|inside| {
            let mut inside = inside.borrow_mut();
            if let Some(at) = inside.iter().rposition(|&k| k == self.socket.key) {
                inside.remove(at);
            }
        });
        // What the call made ready on in-memory peers runs now that no lock is held.
        loopback::run_pending();
    }
}

fn verifier_on() -> bool {
    crate::kernel::verifier()
}

/// Looks `pointer` up as a socket of one of `kinds` for `routine`, and counts the call.
/// A pointer that is no socket, a socket of another kind, or a socket whose close was issued
/// is a verifier violation; the status to complete the request with is returned.
pub(crate) fn enter(routine: &str, pointer: *mut WSK_SOCKET, kinds: &[Kind]) -> Result<Call, NTSTATUS> {
    let key = pointer as usize;
    let socket = {
        let sockets = lock(&SOCKETS);
        match sockets.get(&key) {
            Some(Entry::Open(socket)) => Arc::clone(socket),
            Some(Entry::Closed { .. }) => {
                drop(sockets);
                if verifier_on() {
                    bugcheck(
                        Rule::WskSocketUsedAfterClose,
                        format!("{routine}({pointer:p}): the socket was closed (WskCloseSocket completed)"),
                    );
                }
                return Err(STATUS_INVALID_HANDLE);
            }
            None => {
                drop(sockets);
                if verifier_on() {
                    bugcheck(
                        Rule::WskInvalidSocket,
                        format!("{routine}({pointer:p}): not a socket created by the WSK provider"),
                    );
                }
                return Err(STATUS_INVALID_PARAMETER);
            }
        }
    };
    socket.in_calls.fetch_add(1, Ordering::SeqCst);
    INSIDE.with(|inside| inside.borrow_mut().push(key));
    let call = Call { socket };
    if call.socket.close_issued.load(Ordering::SeqCst) {
        if verifier_on() {
            bugcheck(
                Rule::WskSocketUsedAfterClose,
                format!("{routine}({pointer:p}): called after WskCloseSocket was issued for the socket"),
            );
        }
        return Err(STATUS_INVALID_HANDLE);
    }
    if !kinds.contains(&call.socket.kind) {
        if verifier_on() {
            bugcheck(
                Rule::WskInvalidSocket,
                format!(
                    "{routine}({pointer:p}): the socket is a {} socket; the routine belongs to another socket kind's \
                     dispatch table",
                    call.socket.kind.name()
                ),
            );
        }
        return Err(STATUS_INVALID_PARAMETER);
    }
    Ok(call)
}

/// Looks up `pointer` for `WskCloseSocket` and marks its close issued. A second close, a close
/// of something that is no socket, or a close while another thread is inside a call into the
/// socket is a verifier violation. On the last one the close goes ahead.
pub(crate) fn begin_close(pointer: *mut WSK_SOCKET) -> Result<Arc<Socket>, NTSTATUS> {
    let key = pointer as usize;
    let found = match lock(&SOCKETS).get(&key) {
        Some(Entry::Open(socket)) => Ok(Arc::clone(socket)),
        Some(Entry::Closed { .. }) => Err(true),
        None => Err(false),
    };
    let socket = match found {
        Ok(socket) => socket,
        Err(closed) => {
            if verifier_on() {
                if closed {
                    bugcheck(
                        Rule::WskSocketUsedAfterClose,
                        format!("WskCloseSocket({pointer:p}): the socket was closed already"),
                    );
                } else {
                    bugcheck(
                        Rule::WskInvalidSocket,
                        format!("WskCloseSocket({pointer:p}): not a socket created by the WSK provider"),
                    );
                }
            }
            return Err(if closed { STATUS_INVALID_HANDLE } else { STATUS_INVALID_PARAMETER });
        }
    };
    if socket.close_issued.swap(true, Ordering::SeqCst) {
        if verifier_on() {
            bugcheck(
                Rule::WskSocketUsedAfterClose,
                format!("WskCloseSocket({pointer:p}): WskCloseSocket was issued for the socket already"),
            );
        }
        return Err(STATUS_INVALID_HANDLE);
    }
    // Calls this thread is inside (a completion routine run inline closing the socket) are
    // not "in progress on another thread".
    let own = INSIDE.with(|inside| inside.borrow().iter().filter(|&&k| k == key).count()) as u32;
    let executing = socket.in_calls.load(Ordering::SeqCst).saturating_sub(own);
    if executing > 0 && verifier_on() {
        bugcheck(
            Rule::WskCloseWithCallInProgress,
            format!(
                "WskCloseSocket({pointer:p}) while {executing} other call(s) into the socket are executing on other \
                 threads"
            ),
        );
    }
    Ok(socket)
}

/// Every open socket of the process of a kind `wanted` accepts.
pub(crate) fn open_sockets(wanted: impl Fn(Kind) -> bool) -> Vec<Arc<Socket>> {
    lock(&SOCKETS)
        .values()
        .filter_map(|entry| match entry {
            Entry::Open(socket) if wanted(socket.kind) => Some(Arc::clone(socket)),
            _ => None,
        })
        .collect()
}

/// Open sockets of `session` the client knows about, as leaks, and WSK_SOCKET_LEAKED_AT_UNLOAD
/// if there are any.
pub(crate) fn leaks(session: u64) -> Vec<Leak> {
    let open: Vec<Arc<Socket>> = lock(&SOCKETS)
        .values()
        .filter_map(|entry| match entry {
            Entry::Open(socket) if socket.session == session => Some(Arc::clone(socket)),
            _ => None,
        })
        .collect();
    let leaks: Vec<Leak> = open
        .iter()
        .filter_map(|socket| {
            let state = lock(&socket.state);
            if !state.handed_out {
                return None;
            }
            let pending: usize = Queue::ALL.iter().map(|&q| queue_len(&state, q)).sum();
            let closing = if state.closing { ", close pending" } else { "" };
            let local = state
                .host
                .as_ref()
                .and_then(|h| h.local_addr().ok())
                .and_then(|a| super::addr::from_host(&a))
                .or(match state.memory.as_ref() {
                    Some(Memory::End(end)) => Some(end.local),
                    Some(Memory::Listener(backlog)) => Some(backlog.address),
                    None => None,
                })
                .map_or_else(String::new, |a| format!(", local {a}"));
            Some(Leak::new(
                LeakKind::WskSocket,
                0,
                0,
                socket.key,
                format!("{} socket{local}, {pending} pending IRP(s){closing}", socket.kind.name()),
            ))
        })
        .collect();
    if !leaks.is_empty() {
        bugcheck(Rule::WskSocketLeak, format!("the driver unloaded with {} WSK socket(s) not closed", leaks.len()));
    }
    leaks
}

fn queue_len(state: &State, queue: Queue) -> usize {
    match queue {
        Queue::Connect => state.connects.len(),
        Queue::Accept => state.accepts.len(),
        Queue::Send => state.sends.len(),
        Queue::Receive => state.receives.len(),
    }
}

/// Forgets every socket of `session` (after unload): host sockets are closed, pending IRPs
/// are taken out of the cancelable state and abandoned (the driver is gone), headers freed.
pub(crate) fn teardown(session: u64) {
    let entries: Vec<(usize, Entry)> = {
        let mut sockets = lock(&SOCKETS);
        let keys: Vec<usize> = sockets.iter().filter(|(_, e)| e.session() == session).map(|(&k, _)| k).collect();
        keys.into_iter().filter_map(|k| sockets.remove(&k).map(|e| (k, e))).collect()
    };
    for (key, entry) in entries {
        if let Entry::Open(socket) = entry {
            let abandoned = {
                let mut state = lock(&socket.state);
                state.closing = true;
                state.close_host(true);
                state.close_irp = None;
                events::forget(&socket, &mut state);
                let mut abandoned = Vec::new();
                for queue in Queue::ALL {
                    abandoned.extend(state.queue(queue).drain(..));
                }
                abandoned
            };
            for op in abandoned {
                // SAFETY: the op's IRP is still owned by the provider (it was never completed).
                unsafe { super::queue::abandon(op) };
            }
            registration::socket_closed(socket.client);
        }
        // SAFETY: the header was allocated by `create` with `Box::into_raw`, is removed from
        // the table (so freed once), and the driver that could use it is gone.
        drop(unsafe { Box::from_raw(key as *mut WSK_SOCKET) });
    }
}

/// A dispatch table pointer as `WSK_SOCKET::Dispatch` stores it.
pub(crate) fn table_pointer<T>(table: &'static T) -> *const c_void {
    std::ptr::from_ref::<T>(table).cast()
}
