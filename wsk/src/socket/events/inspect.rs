//! Conditional accept's callbacks (`WskInspectEvent`, `WskAbortEvent`) of every listen socket:
//! the listener's [`Admission`](crate::socket::admission::Admission) decides.
//!
//! Every listen socket is created with the library's listen table, which has both callbacks;
//! WSK calls them only on a listener with `SO_CONDITIONAL_ACCEPT` on, which the library sets
//! only on listeners created with an admission (`TcpListener::bind_conditional`). Microsoft
//! documents both callbacks at IRQL <= DISPATCH_LEVEL; we assume DISPATCH_LEVEL and any CPU,
//! and concurrent calls for different connection requests of one listener (nothing documents
//! their serialization): the callback reads only the core and calls the admission, which is
//! `Sync`.

use wsk_sys::{
    NTSTATUS, PVOID, SOCKADDR, STATUS_SUCCESS, WSK_INSPECT_ACTION, WSK_INSPECT_ID, WskInspectAccept, WskInspectReject,
};

use crate::addr;
use crate::socket::admission::Verdict;
use crate::socket::kind::Listen;
use crate::socket::shared::SocketCore;

/// `WskInspectEvent`: the listener's admission decides; `WskInspectReject` when it cannot
/// (no usable address, no admission, or WSK's null inspect ID that says the listener no
/// longer works: the driver then learns it from its accepts, which fail).
/// IRQL <= DISPATCH_LEVEL; never blocks or allocates.
pub(crate) unsafe extern "system" fn on_inspect(
    context: PVOID,
    _local: *mut SOCKADDR,
    remote: *mut SOCKADDR,
    inspect_id: *mut WSK_INSPECT_ID,
) -> WSK_INSPECT_ACTION {
    if inspect_id.is_null() {
        return WskInspectReject;
    }
    let decide = |core: crate::socket::shared::CoreRef<'_, Listen>| {
        let Some(admission) = core.admission() else { return WskInspectReject };
        // SAFETY: WSK's remote address, valid during the call (or null: refused).
        let Ok(peer) = (unsafe { addr::from_sockaddr(remote) }) else { return WskInspectReject };
        match admission.inspect(peer) {
            Verdict::Accept => WskInspectAccept,
            Verdict::Reject => WskInspectReject,
        }
    };
    // SAFETY: WSK passes the context we created the listen socket with along with this table,
    // and calls only until the close completed.
    unsafe { SocketCore::<Listen>::with_context(context, decide) }.unwrap_or(WskInspectReject)
}

/// `WskAbortEvent`: the library never pends an inspection, so there is nothing to end.
/// Returns `STATUS_SUCCESS`, as Microsoft documents it must. IRQL <= DISPATCH_LEVEL.
pub(crate) unsafe extern "system" fn on_abort(_context: PVOID, _inspect_id: *mut WSK_INSPECT_ID) -> NTSTATUS {
    STATUS_SUCCESS
}
