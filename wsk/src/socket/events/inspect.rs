//! Conditional accept's callbacks (`WskInspectEvent`, `WskAbortEvent`) of every listen socket:
//! the listener's [`Admission`](crate::socket::admission::Admission) decides, at once or
//! later through a pended [`Inspection`](crate::socket::inspection::Inspection).
//!
//! Every listen socket is created with the library's listen table, which has both callbacks;
//! WSK calls them only on a listener with `SO_CONDITIONAL_ACCEPT` on, which the library sets
//! only on listeners created with an admission (`TcpListener::bind_conditional`). Microsoft
//! documents both callbacks at IRQL <= DISPATCH_LEVEL; we assume DISPATCH_LEVEL and any CPU,
//! and concurrent calls for different connection requests of one listener (nothing documents
//! their serialization): the callback reads only the core and calls the admission, which is
//! `Sync`; a pended inspection takes a slot of the listener's table by compare-exchange.

use wsk_sys::{
    NTSTATUS, PVOID, SOCKADDR, STATUS_SUCCESS, WSK_INSPECT_ACTION, WSK_INSPECT_ID, WskInspectAccept, WskInspectReject,
};

use crate::addr;
use crate::socket::admission::Verdict;
use crate::socket::inspection::Inspections;
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
            Verdict::Pend => {
                let Some(table) = core.inspections() else { return WskInspectReject };
                // SAFETY: WSK's inspect ID (not null, checked), valid during the call: copied.
                let id = unsafe { inspect_id.read() };
                // SAFETY: the table of this core.
                unsafe { Inspections::pend(table, &core, id, peer, |inspection| admission.pended(inspection)) }
            }
        }
    };
    // SAFETY: WSK passes the context we created the listen socket with along with this table,
    // and calls only until the close completed.
    unsafe { SocketCore::<Listen>::with_context(context, decide) }.unwrap_or(WskInspectReject)
}

/// `WskAbortEvent`: the peer left a request; marks its pended inspection, if the listener
/// holds one with that ID (Microsoft documents the callback for accepted requests too: those
/// are not ours to mark). Returns `STATUS_SUCCESS`, as Microsoft documents it must.
/// IRQL <= DISPATCH_LEVEL.
pub(crate) unsafe extern "system" fn on_abort(context: PVOID, inspect_id: *mut WSK_INSPECT_ID) -> NTSTATUS {
    if inspect_id.is_null() {
        return STATUS_SUCCESS;
    }
    // SAFETY: WSK's inspect ID (not null, checked), valid during the call.
    let id = unsafe { inspect_id.read() };
    let mark = |core: crate::socket::shared::CoreRef<'_, Listen>| {
        if let Some(table) = core.inspections() {
            // SAFETY: the core's table lives as long as the core, which the callback keeps.
            unsafe { table.as_ref() }.abort(id);
        }
    };
    // SAFETY: WSK passes the context we created the listen socket with, and calls only until
    // the close completed.
    unsafe { SocketCore::<Listen>::with_context(context, mark) };
    STATUS_SUCCESS
}

#[cfg(all(test, not(loom)))]
mod tests {
    use core::net::{Ipv4Addr, SocketAddr};

    use wsk_sys::{SOCKADDR, SOCKADDR_STORAGE, WSK_INSPECT_ID};

    use super::*;
    use crate::socket::admission::{Admission, Verdict};

    /// Admits peers on even ports.
    struct EvenPorts;

    impl Admission for EvenPorts {
        fn inspect(&self, peer: SocketAddr) -> Verdict {
            if peer.port().is_multiple_of(2) { Verdict::Accept } else { Verdict::Reject }
        }
    }

    static EVEN_PORTS: EvenPorts = EvenPorts;

    fn inspect(core: &SocketCore<Listen>, remote: Option<SocketAddr>, id: bool) -> WSK_INSPECT_ACTION {
        let mut storage = remote.map_or(SOCKADDR_STORAGE::zeroed(), |remote| addr::to_storage(&remote));
        let remote = if remote.is_some() { addr::as_sockaddr(&mut storage) } else { core::ptr::null_mut::<SOCKADDR>() };
        let mut inspect_id = WSK_INSPECT_ID { Key: 1, SerialNumber: 1 };
        let id = if id { &raw mut inspect_id } else { core::ptr::null_mut() };
        // SAFETY: the context of a live listen core; the address and the ID live across the call.
        unsafe { on_inspect(core.context(), core::ptr::null_mut(), remote, id) }
    }

    /// The admission's verdict becomes the action; without an admission, a usable remote
    /// address or an inspect ID (WSK's sign of a broken listener) the request is rejected.
    #[test]
    fn the_admission_decides_and_anything_unusable_is_rejected() {
        let core = SocketCore::<Listen>::new_admitting(Some(&EVEN_PORTS)).unwrap();
        let at = |port| Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        assert_eq!(inspect(&core, at(4000), true), WskInspectAccept);
        assert_eq!(inspect(&core, at(4001), true), WskInspectReject);
        assert_eq!(inspect(&core, at(4000), false), WskInspectReject, "null inspect ID");
        assert_eq!(inspect(&core, None, true), WskInspectReject, "no remote address");
        let plain = SocketCore::<Listen>::new().unwrap();
        assert_eq!(inspect(&plain, at(4000), true), WskInspectReject, "no admission");
        // SAFETY: the abort callback touches nothing.
        assert_eq!(unsafe { on_abort(core.context(), core::ptr::null_mut()) }, STATUS_SUCCESS);
    }
}
