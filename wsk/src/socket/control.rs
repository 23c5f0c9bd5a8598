//! What a received datagram carries besides its payload: whether it was truncated, and its
//! control messages (`WskReceiveFrom`'s `ControlFlags` and `ControlInfo`).
//!
//! Control messages are laid out as Windows lays out `WSACMSGHDR`s (`ws2def.h`): a header of
//! `cmsg_len` (a `SIZE_T`: header and data), `cmsg_level` and `cmsg_type`, the data at the
//! header's size rounded up to the natural alignment (`MAX_NATURAL_ALIGNMENT`, the size of a
//! pointer), the next header at `cmsg_len` rounded up to the header's alignment. A message is
//! read only whole: a header or data reaching past the bytes the provider reported ends the
//! walk.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use wsk_sys::{CMSGHDR, IN_PKTINFO, IN6_PKTINFO, IP_PKTINFO, IPPROTO_IP, IPPROTO_IPV6, IPV6_PKTINFO};

/// Bytes of control information a receive can take (`ControlInfo`'s buffer, in the operation
/// slot): room for two `IN6_PKTINFO` messages.
pub const CONTROL_CAPACITY: usize = 96;

/// The control buffer `WskReceiveFrom` writes, aligned for its `CMSGHDR`s.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub(crate) struct ControlBuf(pub [u8; CONTROL_CAPACITY]);

impl ControlBuf {
    /// An empty buffer.
    pub(crate) const fn new() -> Self {
        Self([0; CONTROL_CAPACITY])
    }
}

/// `MAX_NATURAL_ALIGNMENT` of `ws2def.h`: the data of a control message starts at the header's
/// size rounded up to it.
const NATURAL_ALIGNMENT: usize = size_of::<usize>();
/// The data offset of a control message (`WSA_CMSG_DATA`).
const DATA_OFFSET: usize = size_of::<CMSGHDR>().next_multiple_of(NATURAL_ALIGNMENT);

/// The control messages of one received datagram, copied out of the operation slot; walk them
/// with [`ControlMessages::iter`].
#[derive(Clone, Copy)]
pub struct ControlMessages {
    buf: ControlBuf,
    len: usize,
    truncated: bool,
}

impl ControlMessages {
    /// Control messages from the first `len` bytes of `buf` (clamped to the buffer);
    /// `truncated` when the provider reported that more did not fit (`MSG_CTRUNC`).
    pub(crate) fn new(buf: ControlBuf, len: usize, truncated: bool) -> Self {
        Self { buf, len: len.min(CONTROL_CAPACITY), truncated }
    }

    /// No control messages.
    pub(crate) const fn none() -> Self {
        Self { buf: ControlBuf::new(), len: 0, truncated: false }
    }

    /// The control messages, in the order the provider wrote them. Any IRQL.
    pub fn iter(&self) -> ControlIter<'_> {
        ControlIter::new(&self.buf.0[..self.len])
    }

    /// Bytes of control information the provider wrote (0: none). Any IRQL.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the provider wrote no control information. Any IRQL.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether there was more control information than room for it (`MSG_CTRUNC`): the
    /// messages that did not fit are lost. Any IRQL.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The first packet-information message ([`ControlMessage::packet_info`]). Any IRQL.
    pub fn packet_info(&self) -> Option<PacketInfo> {
        self.iter().find_map(|message| message.packet_info())
    }
}

impl core::fmt::Debug for ControlMessages {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ControlMessages")
            .field("messages", &DebugList(self.iter()))
            .field("truncated", &self.truncated)
            .finish()
    }
}

/// Debug helper: the messages of a walk as a list.
struct DebugList<'a>(ControlIter<'a>);

impl core::fmt::Debug for DebugList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.0.clone()).finish()
    }
}

/// An iterator over control messages (see the module docs for the layout it reads).
#[derive(Clone)]
pub struct ControlIter<'a> {
    rest: &'a [u8],
}

impl<'a> ControlIter<'a> {
    /// The messages in `bytes` (the control information of one datagram).
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }
}

impl<'a> Iterator for ControlIter<'a> {
    type Item = ControlMessage<'a>;

    fn next(&mut self) -> Option<ControlMessage<'a>> {
        let header = self.rest.get(..size_of::<CMSGHDR>())?;
        let (len, rest) = header.split_at(size_of::<usize>());
        let (level, kind) = rest.split_at(4);
        let len = usize::from_ne_bytes(len.try_into().ok()?);
        let level = i32::from_ne_bytes(level.try_into().ok()?);
        let kind = i32::from_ne_bytes(kind.try_into().ok()?);
        let Some(data) = len.checked_sub(DATA_OFFSET).and_then(|n| self.rest.get(DATA_OFFSET..DATA_OFFSET + n)) else {
            // A header shorter than itself or data past the end: nothing more is readable.
            self.rest = &[];
            return None;
        };
        let next = len.next_multiple_of(align_of::<CMSGHDR>());
        self.rest = self.rest.get(next..).unwrap_or(&[]);
        Some(ControlMessage { level, kind, data })
    }
}

/// One control message: its level and type (`cmsg_level`, `cmsg_type`) and its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlMessage<'a> {
    /// `cmsg_level`: the protocol level (`IPPROTO_IP`, `IPPROTO_IPV6`, ...).
    pub level: i32,
    /// `cmsg_type`: the message type at that level (`IP_PKTINFO`, ...).
    pub kind: i32,
    /// The message's data.
    pub data: &'a [u8],
}

impl ControlMessage<'_> {
    /// The message as packet information: an `IP_PKTINFO` message (`IN_PKTINFO`) or an
    /// `IPV6_PKTINFO` one (`IN6_PKTINFO`); `None` for any other message or a short one.
    /// Any IRQL.
    pub fn packet_info(&self) -> Option<PacketInfo> {
        let (level, kind) = (self.level as u32, self.kind as u32);
        if (level, kind) == (IPPROTO_IP, IP_PKTINFO) && self.data.len() >= size_of::<IN_PKTINFO>() {
            let address: [u8; 4] = self.data[..4].try_into().ok()?;
            let interface = u32::from_ne_bytes(self.data[4..8].try_into().ok()?);
            Some(PacketInfo { destination: IpAddr::V4(Ipv4Addr::from(address)), interface })
        } else if (level, kind) == (IPPROTO_IPV6, IPV6_PKTINFO) && self.data.len() >= size_of::<IN6_PKTINFO>() {
            let address: [u8; 16] = self.data[..16].try_into().ok()?;
            let interface = u32::from_ne_bytes(self.data[16..20].try_into().ok()?);
            Some(PacketInfo { destination: IpAddr::V6(Ipv6Addr::from(address)), interface })
        } else {
            None
        }
    }
}

/// Packet information of a received datagram (`IP_PKTINFO` / `IPV6_PKTINFO`, delivered when
/// the socket option of that name is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// The address the datagram was sent to (one of the host's, or a broadcast or multicast
    /// address).
    pub destination: IpAddr,
    /// The index of the interface it arrived on.
    pub interface: u32,
}

/// What [`UdpSocket::recv_msg`](crate::UdpSocket::recv_msg) received besides the payload.
#[derive(Debug, Clone, Copy)]
pub struct RecvMeta {
    /// Bytes of the datagram in the buffer (at most its capacity).
    pub len: usize,
    /// The sender.
    pub from: SocketAddr,
    /// Whether the datagram was larger than the buffer (`MSG_TRUNC`): the buffer holds its
    /// first `len` bytes, the rest is lost.
    pub truncated: bool,
    /// Control messages that came with the datagram (none unless an option such as
    /// `IP_PKTINFO` asks for them).
    pub control: ControlMessages,
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;

    /// Appends one message as Windows lays it out; returns the buffer's new length.
    fn push(buf: &mut ControlBuf, at: usize, level: u32, kind: u32, data: &[u8]) -> usize {
        let len = DATA_OFFSET + data.len();
        buf.0[at..at + 8].copy_from_slice(&len.to_ne_bytes());
        buf.0[at + 8..at + 12].copy_from_slice(&level.to_ne_bytes());
        buf.0[at + 12..at + 16].copy_from_slice(&kind.to_ne_bytes());
        buf.0[at + DATA_OFFSET..at + len].copy_from_slice(data);
        at + len.next_multiple_of(8)
    }

    /// The header is 16 bytes with the data right after it (x64: `SIZE_T` length, two `INT`s).
    #[test]
    fn layout_is_windows_x64() {
        assert_eq!((size_of::<CMSGHDR>(), DATA_OFFSET, align_of::<CMSGHDR>()), (16, 16, 8));
    }

    /// Two messages, the first with data not a multiple of 8 (the next starts aligned): each is
    /// read with its level, type and data, and decoded as packet information.
    #[test]
    fn messages_are_walked_and_packet_info_decoded() {
        let mut buf = ControlBuf::new();
        let mut v4 = [0u8; 8];
        v4[..4].copy_from_slice(&[192, 0, 2, 7]);
        v4[4..].copy_from_slice(&3u32.to_ne_bytes());
        let mut v6 = [0u8; 20];
        v6[..16].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6[16..].copy_from_slice(&9u32.to_ne_bytes());
        let at = push(&mut buf, 0, IPPROTO_IPV6, IPV6_PKTINFO, &v6);
        assert_eq!(at, 40, "20 data bytes: the next header is 8-aligned");
        let end = push(&mut buf, at, IPPROTO_IP, IP_PKTINFO, &v4);
        let messages = ControlMessages::new(buf, end, false);
        let all: Vec<_> = messages.iter().collect();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].level, all[0].kind, all[0].data), (41, 19, &v6[..]));
        assert_eq!(
            all[0].packet_info(),
            Some(PacketInfo { destination: IpAddr::V6(Ipv6Addr::LOCALHOST), interface: 9 })
        );
        assert_eq!(
            all[1].packet_info(),
            Some(PacketInfo { destination: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), interface: 3 })
        );
        assert_eq!(messages.packet_info(), all[0].packet_info(), "the first one");
        assert!(!messages.is_truncated());
        // A last message with unaligned data is read whole from its own length (36), without
        // the padding after it.
        let mut buf = ControlBuf::new();
        let at = push(&mut buf, 0, IPPROTO_IP, IP_PKTINFO, &v4);
        push(&mut buf, at, IPPROTO_IPV6, IPV6_PKTINFO, &v6);
        let messages = ControlMessages::new(buf, at + 36, false);
        assert_eq!(messages.iter().map(|m| m.data.len()).collect::<Vec<_>>(), [8, 20]);
    }

    /// A message whose data reaches past the reported length, or whose length is shorter than
    /// its header, ends the walk; a message of another type is no packet information.
    #[test]
    fn broken_messages_end_the_walk() {
        let mut buf = ControlBuf::new();
        let end = push(&mut buf, 0, 0xffff, 1, b"abcd");
        let after = push(&mut buf, end, IPPROTO_IP, IP_PKTINFO, &[0; 8]);
        let cut = ControlMessages::new(buf, after - 1, true);
        let all: Vec<_> = cut.iter().collect();
        assert_eq!(all.len(), 1, "the second message reaches past the end");
        assert_eq!(all[0].data, b"abcd");
        assert_eq!(all[0].packet_info(), None);
        assert!(cut.is_truncated());
        let mut short = ControlBuf::new();
        short.0[..8].copy_from_slice(&8usize.to_ne_bytes());
        assert_eq!(ControlMessages::new(short, 16, false).iter().count(), 0, "length below the header");
        assert!(ControlMessages::none().is_empty());
        assert_eq!(ControlMessages::new(ControlBuf::new(), 1000, false).len(), CONTROL_CAPACITY, "clamped");
    }
}
