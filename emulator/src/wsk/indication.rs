//! Indications: the `WSK_DATA_INDICATION` and `WSK_DATAGRAM_INDICATION` chains the provider
//! hands to `WskReceiveEvent` / `WskReceiveFromEvent`, built in provider [`Block`]s, filled
//! from the data the client refused before and then from the host socket; and `WskRelease`.
//!
//! A data chain is one block: up to [`DATA_CAPACITY`] (64 KiB) bytes cut into indications of
//! at most [`SEGMENT`] (16 KiB), each with its own MDL over its segment. A datagram chain is
//! one block per datagram (at most [`DATAGRAMS_PER_CHAIN`]), each holding its indication, MDL,
//! sender address and data. Header layout of a block (its first page):
//!
//! ```text
//!   data block:      [indication 0..4][MDL 0..4 (header + page frames)]      data: 64 KiB
//!   datagram block:  [indication][MDL (header + page frames)][SOCKADDR_STORAGE][MDL]
//!                    ... at CONTROL_AT: control information (CMSGHDRs)              data
//! ```
//!
//! A datagram's control information (the packet information `IP_PKTINFO` / `IPV6_PKTINFO`
//! ask for, read from the host with the datagram) is laid out as Windows lays it out and
//! given in `ControlInfo` / `ControlInfoLength`; a refused datagram keeps it for the
//! `WskReceiveFrom` that serves it later.
//!
//! MDLs are built as `MmBuildMdlForNonPagedPool` builds them (`MDL_SOURCE_IS_NONPAGED_POOL`,
//! `MappedSystemVa` set), so `MmGetSystemAddressForMdlSafe` works; `Buffer.Offset` is 0.
//! The adversary changes that (`crate::adversary`): unmapped MDLs, and with random shapes data
//! chains of random pieces (`shaped_data_chain`) and datagrams described by two MDLs (the
//! second after the address).

// Building the structures in a block writes several raw fields per step; each block says why
// the memory is valid.

use std::io::Read;
use std::mem::{MaybeUninit, size_of};
use std::net::SocketAddr;
use std::sync::Arc;

use wsk_sys::{
    MDL, MDL_PAGES_LOCKED, MDL_SOURCE_IS_NONPAGED_POOL, NTSTATUS, PAGE_SIZE, PVOID, SOCKADDR, SOCKADDR_STORAGE,
    STATUS_CONNECTION_RESET, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, ULONG, WSK_BUF, WSK_DATA_INDICATION,
    WSK_DATAGRAM_INDICATION,
};

use super::blocks::{self, Block, DATA_CAPACITY, Origin, Release};
use super::model::{ControlMessage, Found, KeptDatagram, Phase, State};
use super::socket::Socket;
use super::{addr, io, loopback, status};
use crate::sync::lock;
use crate::verifier::{Rule, bugcheck};

/// Largest data indication of a chain.
pub(crate) const SEGMENT: usize = 16 * 1024;
/// Data indications of a full chain.
const SEGMENTS: usize = DATA_CAPACITY / SEGMENT;
/// Datagrams indicated in one call at most.
pub(crate) const DATAGRAMS_PER_CHAIN: usize = 16;

/// Room for an MDL describing `bytes` bytes at any alignment (header and page frames).
const fn mdl_room(bytes: usize) -> usize {
    (size_of::<MDL>() + (bytes / PAGE_SIZE + 2) * size_of::<u64>()).next_multiple_of(16)
}

/// Offset of a datagram's control information in its block's header page, and room for it.
const CONTROL_AT: usize = 2048;
const CONTROL_ROOM: usize = 1024;

/// One datagram of a chain.
struct Item {
    block: Block,
    len: usize,
    from: Option<SocketAddr>,
    /// Its control messages (datagram chains only).
    control: Vec<ControlMessage>,
}

/// A chain of indications in provider memory. The client sees `head`; the provider keeps the
/// blocks until the client is done with the chain.
pub(crate) struct Chain {
    items: Vec<Item>,
    head: usize,
    bytes: usize,
    count: usize,
}

impl Chain {
    /// The first indication (`WSK_DATA_INDICATION` or `WSK_DATAGRAM_INDICATION`).
    pub(crate) fn head(&self) -> usize {
        self.head
    }

    /// Bytes indicated.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Indications in the chain.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The data of a data chain from byte `from` on (what the client did not accept).
    pub(crate) fn data_from(&self, from: usize) -> &[u8] {
        self.items.first().map_or(&[], |item| &item.block.bytes(item.len)[from.min(item.len)..])
    }

    /// What the client did not accept of a data chain, from byte `from` on, left in place: its
    /// block and the range of its data, when the chain is one plain block (with the verifier
    /// on, a refused chain's guarded block is quarantined like any other given back, so that a
    /// touch after the callback returned faults). Otherwise the chain, to copy from.
    pub(crate) fn keep_unread(mut self, from: usize) -> Result<(Block, usize, usize), Chain> {
        if self.items.len() != 1 || self.items[0].from.is_some() || self.items[0].block.is_guarded() {
            return Err(self);
        }
        let Some(item) = self.items.pop() else { return Err(self) };
        Ok((item.block, from.min(item.len), item.len))
    }

    /// The datagrams of a datagram chain, copied (the client refused them).
    pub(crate) fn datagrams(&self) -> Vec<KeptDatagram> {
        self.items
            .iter()
            .filter_map(|item| {
                item.from.map(|from| KeptDatagram {
                    data: item.block.bytes(item.len).to_vec(),
                    from,
                    control: item.control.clone(),
                })
            })
            .collect()
    }

    /// Gives the memory back after the client is done with it (quarantined with the verifier).
    pub(crate) fn give_back(self, socket: usize, how: Release) {
        let origin = Origin { head: self.head, socket, how };
        for item in self.items {
            blocks::give_back(item.block, origin);
        }
    }

    /// Frees the memory at once (teardown: the driver is gone).
    pub(crate) fn drop_now(self) {
        drop(self.items);
    }
}

/// Fills an MDL at `mdl` describing `len` bytes at `va`, as `MmBuildMdlForNonPagedPool` does.
///
/// # Safety
/// `mdl` must be writable for [`mdl_room`]`(len)` bytes and 8-byte aligned.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "writes of one MDL header and its page frames, all within the room the caller gives"
)]
unsafe fn build_mdl(mdl: *mut MDL, va: usize, len: usize) {
    let start = va & !(PAGE_SIZE - 1);
    let pages = ((va - start) + len).div_ceil(PAGE_SIZE);
    let size = size_of::<MDL>() + pages * size_of::<u64>();
    // SAFETY: room for the header and `pages` frames (caller's contract; `mdl_room` counts
    // one more page than any span of `len` bytes).
    unsafe {
        mdl.write(MDL {
            Next: std::ptr::null_mut(),
            Size: size as i16,
            // Locked but unmapped pages under the adversary's `unmapped_indications`.
            MdlFlags: if crate::adversary::get().unmapped_indications {
                MDL_PAGES_LOCKED
            } else {
                MDL_SOURCE_IS_NONPAGED_POOL
            },
            Process: std::ptr::null_mut(),
            MappedSystemVa: va as PVOID,
            StartVa: start as PVOID,
            ByteCount: len as ULONG,
            ByteOffset: (va - start) as ULONG,
        });
        let frames = mdl.add(1).cast::<u64>();
        for page in 0..pages {
            frames.add(page).write_unaligned((start / PAGE_SIZE + page) as u64);
        }
    }
}

/// Builds the data indications of `len` (1..=64 KiB) bytes at the start of `block`'s data.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "writes of one indication and its MDL inside the block's header page"
)]
fn data_chain(block: Block, len: usize) -> Chain {
    if crate::adversary::get().random_shapes {
        return shaped_data_chain(block, len);
    }
    let count = len.div_ceil(SEGMENT);
    let header = block.header();
    let indications = header.cast::<WSK_DATA_INDICATION>();
    let mdls = header.wrapping_add((SEGMENTS * size_of::<WSK_DATA_INDICATION>()).next_multiple_of(16));
    for i in 0..count {
        let offset = i * SEGMENT;
        let segment = SEGMENT.min(len - offset);
        let mdl = mdls.wrapping_add(i * mdl_room(SEGMENT)).cast::<MDL>();
        let next = if i + 1 < count { indications.wrapping_add(i + 1) } else { std::ptr::null_mut() };
        // SAFETY: the header page holds SEGMENTS indications and MDLs at these offsets (well
        // under a page), 16-byte aligned; the segment lies in the block's data area.
        unsafe {
            build_mdl(mdl, block.data() as usize + offset, segment);
            indications
                .add(i)
                .write(WSK_DATA_INDICATION { Next: next, Buffer: WSK_BUF { Mdl: mdl, Offset: 0, Length: segment } });
        }
    }
    Chain {
        head: indications as usize,
        bytes: len,
        count,
        items: vec![Item { block, len, from: None, control: Vec::new() }],
    }
}

/// Builds the data indications of `len` bytes in random shapes (the adversary's
/// `random_shapes`): pieces of 1 byte to 16 KiB, as many as the header page has room for;
/// a piece's first MDL may start up to 64 bytes before its data (`Buffer.Offset` > 0, the
/// bytes before belonging to the previous piece), and a quarter of the pieces are described
/// by a chain of two MDLs.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "writes of one indication and its MDLs inside the block's header page"
)]
fn shaped_data_chain(block: Block, len: usize) -> Chain {
    use crate::adversary::{chance, roll, up_to};
    crate::adversary::count(crate::adversary::Event::ShapedChain);
    const INDICATION: usize = size_of::<WSK_DATA_INDICATION>().next_multiple_of(16);
    // The most one indication can take of the header: two MDLs over everything.
    const WORST: usize = INDICATION + 2 * mdl_room(DATA_CAPACITY + 64);
    let header = block.header();
    let room = blocks::header_size();
    let data = block.data() as usize;
    let (mut used, mut at, mut count) = (0, 0, 0);
    let mut head: *mut WSK_DATA_INDICATION = std::ptr::null_mut();
    let mut previous: *mut WSK_DATA_INDICATION = std::ptr::null_mut();
    while at < len {
        let rest = len - at;
        let last = used + 2 * WORST > room;
        let piece = if last {
            rest
        } else {
            match roll() % 4 {
                0 => up_to(rest.min(16)),
                1 => up_to(rest.min(PAGE_SIZE)),
                _ => up_to(rest.min(SEGMENT)),
            }
        };
        let before = if at == 0 { 0 } else { (roll() % (at.min(64) as u64 + 1)) as usize };
        let first = if piece > 1 && chance(250_000) { up_to(piece - 1) } else { piece };
        let indication = header.wrapping_add(used).cast::<WSK_DATA_INDICATION>();
        used += INDICATION;
        let mdl = header.wrapping_add(used).cast::<MDL>();
        used += mdl_room(before + first);
        // SAFETY: `used` stays within the header page (each step leaves room for a worst-case
        // last indication), 16-byte aligned; every MDL describes bytes of the block's data.
        unsafe {
            build_mdl(mdl, data + at - before, before + first);
            if first < piece {
                let second = header.wrapping_add(used).cast::<MDL>();
                used += mdl_room(piece - first);
                build_mdl(second, data + at + first, piece - first);
                (*mdl).Next = second;
            }
            indication.write(WSK_DATA_INDICATION {
                Next: std::ptr::null_mut(),
                Buffer: WSK_BUF { Mdl: mdl, Offset: before as ULONG, Length: piece },
            });
            if previous.is_null() {
                head = indication;
            } else {
                (*previous).Next = indication;
            }
        }
        previous = indication;
        at += piece;
        count += 1;
    }
    debug_assert!(used <= room, "shaped chain overflowed the header page ({used} > {room})");
    Chain { head: head as usize, bytes: len, count, items: vec![Item { block, len, from: None, control: Vec::new() }] }
}

/// Builds one datagram indication per item, chained in order.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "writes of one datagram indication, its address and MDLs inside the block's header page"
)]
fn datagram_chain(items: Vec<Item>) -> Chain {
    let indication_room = size_of::<WSK_DATAGRAM_INDICATION>().next_multiple_of(16);
    let address_at = indication_room + mdl_room(DATA_CAPACITY);
    debug_assert!(
        address_at + size_of::<SOCKADDR_STORAGE>() + mdl_room(DATA_CAPACITY) <= CONTROL_AT
            && CONTROL_AT + CONTROL_ROOM <= blocks::header_size(),
        "the control information overlaps the structures or leaves the header page"
    );
    let shapes = crate::adversary::get().random_shapes;
    let heads: Vec<*mut WSK_DATAGRAM_INDICATION> =
        items.iter().map(|item| item.block.header().cast::<WSK_DATAGRAM_INDICATION>()).collect();
    for (i, item) in items.iter().enumerate() {
        let header = item.block.header();
        let mdl = header.wrapping_add(indication_room).cast::<MDL>();
        let address = header.wrapping_add(address_at).cast::<SOCKADDR_STORAGE>();
        let next = heads.get(i + 1).copied().unwrap_or(std::ptr::null_mut());
        // SAFETY: the header page holds the indication, the MDL, the address and a second MDL
        // at these offsets (under a page), 16-byte aligned; the data lies in the block's data
        // area.
        unsafe {
            if shapes && item.len > 1 && crate::adversary::chance(500_000) {
                // The adversary's random shapes: the datagram described by a chain of two MDLs.
                let first = crate::adversary::up_to(item.len - 1);
                let second = header.wrapping_add(address_at + size_of::<SOCKADDR_STORAGE>()).cast::<MDL>();
                build_mdl(mdl, item.block.data() as usize, first);
                build_mdl(second, item.block.data() as usize + first, item.len - first);
                (*mdl).Next = second;
            } else {
                build_mdl(mdl, item.block.data() as usize, item.len);
            }
            address.write(SOCKADDR_STORAGE::zeroed());
            if let Some(from) = item.from {
                addr::write(address.cast::<SOCKADDR>(), &from);
            }
            let (control, _) = io::control_bytes(&item.control, CONTROL_ROOM);
            let control_info = header.wrapping_add(CONTROL_AT);
            std::ptr::copy_nonoverlapping(control.as_ptr(), control_info, control.len());
            heads[i].write(WSK_DATAGRAM_INDICATION {
                Next: next,
                Buffer: WSK_BUF { Mdl: mdl, Offset: 0, Length: item.len },
                ControlInfo: if control.is_empty() { std::ptr::null_mut() } else { control_info.cast() },
                ControlInfoLength: control.len() as ULONG,
                RemoteAddress: address.cast::<SOCKADDR>(),
            });
        }
    }
    let bytes = items.iter().map(|item| item.len).sum();
    let count = items.len();
    Chain { head: heads.first().map_or(0, |&h| h as usize), bytes, count, items }
}

/// Reads what a connection has for the client: refused bytes first, then the host socket's,
/// up to 64 KiB. Records the peer's FIN (`peer_fin`) or a reset (`error`) when the host
/// reports it. `None` when there is nothing to indicate.
///
/// A host socket is read straight into the block, with no peek first, and not at all while
/// it is drained (`State::host_drained`); a read that comes back short ends the pass and
/// marks it drained: one `recv` per indication, as a stream socket's short read means its
/// buffer is empty.
pub(crate) fn gather_data(state: &mut State) -> Option<Chain> {
    let host_readable = state.phase == Phase::Connected
        && !state.peer_fin
        && state.error.is_none()
        && (state.host.is_some() || io::memory_end(state).is_some());
    if state.events.kept.is_empty() && !(host_readable && data_waits(state)) {
        return None;
    }
    if let Some((mut block, start, end)) = state.events.kept.block.take() {
        // Refused data still in its block goes again from there: moved to the front if the
        // client took part of it, not copied at all if it refused the whole chain.
        if start > 0 {
            block.space().copy_within(start..end, 0);
        }
        return Some(data_chain(block, end - start));
    }
    let mut block = Block::new()?;
    let space = block.space();
    // The adversary's random shapes: an indication of part of what is there.
    let cap = if crate::adversary::get().random_shapes { crate::adversary::up_to(space.len()) } else { space.len() };
    let space = &mut space[..cap];
    let mut len = 0;
    {
        let kept = &mut state.events.kept.bytes;
        let n = kept.len().min(space.len());
        let (front, back) = kept.as_slices();
        let first = front.len().min(n);
        space[..first].copy_from_slice(&front[..first]);
        space[first..n].copy_from_slice(&back[..n - first]);
        kept.drain(..n);
        len += n;
    }
    if host_readable && state.events.kept.is_empty() {
        let mut fin = false;
        let mut error = None;
        if let Some(end) = io::memory_end(state) {
            let want = space.len() - len;
            let mut at = len;
            match loopback::read(end, want, |bytes| {
                space[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            }) {
                Found::Data(n) => len += n,
                Found::Fin => fin = true,
                Found::Reset => error = Some(STATUS_CONNECTION_RESET),
                Found::Empty => {}
            }
        } else if let Some(host) = state.host.as_ref() {
            let mut reader: &socket2::Socket = host;
            while len < space.len() && !state.host_drained {
                let want = space.len() - len;
                crate::counters::bump::host_reads(1);
                match status::retry(|| reader.read(&mut space[len..])) {
                    Ok(0) => {
                        fin = true;
                        break;
                    }
                    Ok(n) => {
                        len += n;
                        state.host_drained = n < want && !state.host_closed;
                    }
                    Err(e) if status::would_block(&e) => {
                        state.host_drained = !state.host_closed;
                        break;
                    }
                    Err(e) => {
                        error = Some(status::from_io(&e));
                        break;
                    }
                }
            }
        }
        state.peer_fin |= fin;
        if error.is_some() {
            state.error = error;
        }
    }
    if len == 0 {
        blocks::unused(block);
        return None;
    }
    Some(data_chain(block, len))
}

/// Whether the connection may have bytes to read. An in-memory end is peeked (the peer's
/// FIN or a reset found on the way are recorded); a host socket may unless it is drained
/// (the read itself tells: a peek first would cost a system call of its own).
fn data_waits(state: &mut State) -> bool {
    if let Some(end) = io::memory_end(state) {
        match end.peek() {
            Found::Data(_) => return true,
            Found::Fin => state.peer_fin = true,
            Found::Reset => state.error = Some(STATUS_CONNECTION_RESET),
            Found::Empty => {}
        }
        return false;
    }
    state.host.is_some() && !state.host_drained
}

/// Whether a datagram waits on the host socket (a peek; an error it reports is dropped, as a
/// receive would drop it).
fn datagram_waits(state: &State) -> bool {
    let Some(host) = state.host.as_ref() else { return false };
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    status::retry(|| host.peek(&mut probe)).is_ok()
}

/// Reads the datagrams waiting for the client: refused ones first, then the host socket's, up
/// to [`DATAGRAMS_PER_CHAIN`]. `None` when there is none.
pub(crate) fn gather_datagrams(state: &mut State) -> Option<Chain> {
    let mut items = Vec::new();
    while items.len() < DATAGRAMS_PER_CHAIN {
        if let Some(kept) = state.events.kept_datagrams.pop_front() {
            let Some(mut block) = Block::new() else {
                state.events.kept_datagrams.push_front(kept);
                break;
            };
            let len = kept.data.len().min(DATA_CAPACITY);
            block.space()[..len].copy_from_slice(&kept.data[..len]);
            items.push(Item { block, len, from: Some(kept.from), control: kept.control });
            continue;
        }
        if !datagram_waits(state) {
            break;
        }
        let (Some(host), Some(mut block)) = (state.host.as_ref(), Block::new()) else { break };
        let space = block.space();
        // SAFETY: `u8` and `MaybeUninit<u8>` have the same layout; the host only writes
        // initialized bytes into the slice, which stays initialized memory.
        let space = unsafe { &mut *(std::ptr::from_mut::<[u8]>(space) as *mut [MaybeUninit<u8>]) };
        match status::retry(|| io::receive_message(host, &mut *space)) {
            Ok(received) => {
                let len = received.size.min(DATA_CAPACITY);
                let from = received.sender.as_ref().and_then(addr::from_host);
                items.push(Item { block, len, from, control: received.control });
            }
            Err(_) => {
                blocks::unused(block);
                break;
            }
        }
    }
    if items.is_empty() { None } else { Some(datagram_chain(items)) }
}

/// `WskRelease(socket, head)`: gives back a chain the client retained. Anything else is
/// `WSK_INDICATION_RELEASED_TWICE` and `STATUS_INVALID_PARAMETER` (nothing is touched).
///
/// The chain a callback is handling right now may be released before the callback returns
/// (its consumer on another CPU was quicker): the release then takes effect when the callback
/// returns `STATUS_PENDING` (see `deliver::settle`). A real provider would have to cope with
/// that race too; Microsoft's documentation does not speak of it.
pub(crate) fn release(socket: &Arc<Socket>, head: usize) -> NTSTATUS {
    let chain = {
        let mut retention = lock(&socket.retention);
        if head != 0
            && let Some((_, early)) = retention.current.iter_mut().find(|(current, early)| *current == head && !*early)
        {
            *early = true;
            return STATUS_SUCCESS;
        }
        let chains = &mut retention.chains;
        chains.iter().position(|chain| chain.head() == head && head != 0).map(|at| chains.swap_remove(at))
    };
    match chain {
        Some(chain) => {
            chain.give_back(socket.key, Release::Released);
            STATUS_SUCCESS
        }
        None => {
            if crate::kernel::verifier() {
                let why = if blocks::released_already(head) {
                    "it was released already (or its callback did not retain it)"
                } else {
                    "it is not an indication the socket holds for the driver (never indicated on this socket)"
                };
                bugcheck(
                    Rule::WskIndicationReleasedTwice,
                    format!("WskRelease(0x{:x}, 0x{head:x}): {why}", socket.key),
                );
            }
            STATUS_INVALID_PARAMETER
        }
    }
}
