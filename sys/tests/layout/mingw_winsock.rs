//! The types checked against mingw-w64's Winsock headers (`winsock2.h`, `ws2def.h`, `ws2ipdef.h`,
//! `ws2tcpip.h`, `mswsock.h`; prelude `mingw_winsock.h`).

use wsk_sys::*;

use crate::table::{Table, constants, layout_table};

/// The socket address, address information, socket option value and control message types.
pub(crate) fn table() -> Table {
    let mut table = layout_table! {
        SOCKADDR in MingwWinsock as "SOCKADDR" {
            sa_family => "sa_family";
            sa_data => "sa_data";
        }
        // C: the `S_un` union (`S_un_b`, `S_un_w`, `S_addr`) as its bytes.
        IN_ADDR in MingwWinsock as "IN_ADDR" {
            s_addr => "S_un";
        }
        // C: the `u` union (`Byte`, `Word`) as its bytes.
        IN6_ADDR in MingwWinsock as "IN6_ADDR" {
            s6_addr => "u.Byte";
        }
        SOCKADDR_IN in MingwWinsock as "SOCKADDR_IN" {
            sin_family => "sin_family";
            sin_port => "sin_port";
            sin_addr => "sin_addr";
            sin_zero => "sin_zero";
        }
        // C: `sin6_scope_id` shares an anonymous union with `sin6_scope_struct`.
        SOCKADDR_IN6 in MingwWinsock as "SOCKADDR_IN6" {
            sin6_family => "sin6_family";
            sin6_port => "sin6_port";
            sin6_flowinfo => "sin6_flowinfo";
            sin6_addr => "sin6_addr";
            sin6_scope_id => "sin6_scope_id";
        }
        SOCKADDR_STORAGE in MingwWinsock as "SOCKADDR_STORAGE" {
            ss_family => "ss_family";
            __ss_pad1 => "__ss_pad1";
            __ss_align => "__ss_align";
            __ss_pad2 => "__ss_pad2";
        }
        // mingw-w64 spells Microsoft's `ai_bufferlen` as `ai_bloblen`.
        ADDRINFOEXW in MingwWinsock as "ADDRINFOEXW" {
            ai_flags => "ai_flags";
            ai_family => "ai_family";
            ai_socktype => "ai_socktype";
            ai_protocol => "ai_protocol";
            ai_addrlen => "ai_addrlen";
            ai_canonname => "ai_canonname";
            ai_addr => "ai_addr";
            ai_blob => "ai_blob";
            ai_bufferlen => "ai_bloblen";
            ai_provider => "ai_provider";
            ai_next => "ai_next";
        }
        // mingw-w64 declares `struct linger` in psdk_inc/_ip_types.h (through winsock2.h).
        LINGER in MingwWinsock as "LINGER" {
            l_onoff => "l_onoff";
            l_linger => "l_linger";
        }
        // mingw-w64 declares `struct ip_mreq` in psdk_inc/_ip_mreq1.h (through ws2ipdef.h).
        IP_MREQ in MingwWinsock as "IP_MREQ" {
            imr_multiaddr => "imr_multiaddr";
            imr_interface => "imr_interface";
        }
        IPV6_MREQ in MingwWinsock as "IPV6_MREQ" {
            ipv6mr_multiaddr => "ipv6mr_multiaddr";
            ipv6mr_interface => "ipv6mr_interface";
        }
        // Microsoft's ws2def.h: `typedef WSACMSGHDR CMSGHDR`; mingw-w64 has WSACMSGHDR only.
        CMSGHDR in MingwWinsock as "WSACMSGHDR" {
            cmsg_len => "cmsg_len";
            cmsg_level => "cmsg_level";
            cmsg_type => "cmsg_type";
        }
        IN_PKTINFO in MingwWinsock as "IN_PKTINFO" {
            ipi_addr => "ipi_addr";
            ipi_ifindex => "ipi_ifindex";
        }
        IN6_PKTINFO in MingwWinsock as "IN6_PKTINFO" {
            ipi6_addr => "ipi6_addr";
            ipi6_ifindex => "ipi6_ifindex";
        }
    };
    // The socket option levels and names the library sets and reads (`SO_EXCLUSIVEADDRUSE` is
    // `(int)~SO_REUSEADDR`, negative in C: the value probe of a failed check cannot print it).
    table.constants = constants!(MingwWinsock:
        SOL_SOCKET, SO_REUSEADDR, SO_KEEPALIVE, SO_LINGER, SO_SNDBUF, SO_RCVBUF,
        SO_BROADCAST, SO_CONDITIONAL_ACCEPT, IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_IPV6, TCP_NODELAY,
        IP_TTL, IP_MULTICAST_TTL, IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP, IPV6_V6ONLY, IPV6_UNICAST_HOPS,
        IPV6_MULTICAST_HOPS, IPV6_ADD_MEMBERSHIP, IPV6_DROP_MEMBERSHIP, IP_PKTINFO, IPV6_PKTINFO,
    );
    table
}
