/*
 * Types that neither mingw-w64 nor Wine declare, TRANSCRIBED BY HAND from the structure
 * definitions in Microsoft's public documentation (learn.microsoft.com, "wsk.h" and
 * "netioddk.h" reference pages). They are a second, independent spelling of the documented
 * layout, so that sys/tests/layout.rs can check the Rust declarations against C:
 *
 *   NPIID                          netioddk.h (used by WSK_EVENT_CALLBACK_CONTROL)
 *   WSK_EVENT_CALLBACK_CONTROL     wsk.h
 *   WSK_TRANSPORT                  wsk.h
 *   WSK_CLIENT_DATAGRAM_DISPATCH   wsk.h
 *   WSK_CLIENT_STREAM_DISPATCH     wsk.h (Windows 10, version 1703)
 *   WSK_INSPECT_ACTION             wsk.h (Wine's header lacks WskInspectPend and WskInspectMax)
 *   TCP_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPCNT, TCP_KEEPINTVL
 *                                  ws2ipdef.h ("IPPROTO_TCP socket options"; the installed
 *                                  mingw-w64 headers do not define them, Wine's only the first)
 *
 * Base types (GUID, ULONG, NTSTATUS, PVOID) come from Debian's mingw-w64-x86-64-dev
 * (ddk/ntddk.h). Compiled by sys/tests/layout.rs with
 *   clang -target x86_64-w64-mingw32 -I/usr/x86_64-w64-mingw32/include/ddk
 */
#include <ntddk.h>

/* netioddk.h: a network programming interface identifier. */
typedef GUID NPIID;
typedef const NPIID *PNPIID;

/* Declared in wsk.h; only pointed to here. */
typedef struct _WSK_DATAGRAM_INDICATION WSK_DATAGRAM_INDICATION, *PWSK_DATAGRAM_INDICATION;
typedef struct _WSK_CLIENT_LISTEN_DISPATCH WSK_CLIENT_LISTEN_DISPATCH;
typedef struct _WSK_CLIENT_CONNECTION_DISPATCH WSK_CLIENT_CONNECTION_DISPATCH;

/* wsk.h: the input buffer of SO_WSK_EVENT_CALLBACK. */
typedef struct _WSK_EVENT_CALLBACK_CONTROL {
    PNPIID NpiId;
    ULONG EventMask;
} WSK_EVENT_CALLBACK_CONTROL, *PWSK_EVENT_CALLBACK_CONTROL;

/* wsk.h: one entry of the WSK_TRANSPORT_LIST_QUERY output. */
typedef struct _WSK_TRANSPORT {
    USHORT Version;
    USHORT SocketType;
    ULONG Protocol;
    USHORT AddressFamily; /* ADDRESS_FAMILY, a USHORT in ws2def.h */
    GUID ProviderId;
} WSK_TRANSPORT, *PWSK_TRANSPORT;

/* wsk.h: the WskReceiveFromEvent callback (WSKAPI is NTAPI). */
typedef NTSTATUS (NTAPI *PFN_WSK_RECEIVE_FROM_EVENT)(
    PVOID SocketContext,
    ULONG Flags,
    PWSK_DATAGRAM_INDICATION DataIndication);

/* wsk.h: event callbacks of a datagram socket. */
typedef struct _WSK_CLIENT_DATAGRAM_DISPATCH {
    PFN_WSK_RECEIVE_FROM_EVENT WskReceiveFromEvent;
} WSK_CLIENT_DATAGRAM_DISPATCH, *PWSK_CLIENT_DATAGRAM_DISPATCH;

/* wsk.h: event callbacks of a stream socket, which acts as a listening or a connection socket. */
typedef struct _WSK_CLIENT_STREAM_DISPATCH {
    const WSK_CLIENT_LISTEN_DISPATCH *Listen;
    const WSK_CLIENT_CONNECTION_DISPATCH *Connect;
} WSK_CLIENT_STREAM_DISPATCH, *PWSK_CLIENT_STREAM_DISPATCH;

/* wsk.h: what WskInspectEvent decides for an incoming connection request. */
typedef enum _WSK_INSPECT_ACTION {
    WskInspectReject,
    WskInspectAccept,
    WskInspectPend,
    WskInspectMax
} WSK_INSPECT_ACTION, *PWSK_INSPECT_ACTION;
/* ws2ipdef.h: the keep-alive options at IPPROTO_TCP. */
#define TCP_KEEPALIVE 3
#define TCP_KEEPIDLE TCP_KEEPALIVE
#define TCP_KEEPCNT 16
#define TCP_KEEPINTVL 17
