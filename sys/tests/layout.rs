//! Layout check of every `#[repr(C)]` type of `wsk-sys` against the public C headers.
//!
//! [`table`] maps each Rust type to the C type it mirrors, the translation unit (TU) that declares
//! it and, per Rust field, the C member path. The test takes size, alignment, field offsets and
//! field sizes from the Rust compiler, writes them as `_Static_assert`s into one C file per TU and
//! compiles it with `clang -target x86_64-w64-mingw32 -fsyntax-only`. A failing assert names the
//! Rust type and field and the C member; the test then asks clang for the C values and reports
//! both sides.
//!
//! Translation units (preludes in `tests/layout/`):
//!
//! | TU            | headers                                                          | Debian package       |
//! |---------------|------------------------------------------------------------------|----------------------|
//! | mingw-kernel  | `ddk/ntddk.h`, `ddk/wdm.h`, `ntdef.h`                            | mingw-w64-x86-64-dev |
//! | mingw-winsock | `winsock2.h`, `ws2def.h`, `ws2ipdef.h`, `ws2tcpip.h`, `mswsock.h` | mingw-w64-x86-64-dev |
//! | wine-wsk      | Wine's `ddk/wsk.h` (mingw-w64 has none)                          | libwine-dev          |
//! | documented    | `layout/documented.h`, transcribed from Microsoft's documentation | mingw-w64-x86-64-dev |
//!
//! The documented TU covers the types neither header set declares: `WSK_EVENT_CALLBACK_CONTROL`,
//! `WSK_CLIENT_DATAGRAM_DISPATCH` and `WSK_CLIENT_STREAM_DISPATCH`.
//!
//! The check needs `clang` and the packages above; without them it fails (it never skips).
//!
//! The Rust values come from the host the test runs on. `wsk-sys` uses only fixed-width integers,
//! pointers and `usize`, so on any 64-bit little-endian target (the test asserts that it runs on
//! one) its layouts are those of `x86_64-pc-windows-msvc`.
//!
//! [`every_repr_c_type_is_in_the_table`] parses `src/*.rs` so that a new `#[repr(C)]` type or field
//! cannot escape the check, and [`one_byte_off_is_detected`] proves that a one-byte mistake fails it.

use std::fmt::Write as _;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wsk_sys::*;

/// What to install when the compiler or the headers are missing.
const INSTALL_HINT: &str = "the layout check needs clang and the mingw-w64 and Wine headers; on Debian: \
     `apt-get install clang mingw-w64-x86-64-dev libwine-dev`";

// ---- the table -----------------------------------------------------------------------------------

/// The C header set a type is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Header {
    /// mingw-w64 `ddk/ntddk.h` (with `ddk/wdm.h` and `ntdef.h`).
    MingwKernel,
    /// mingw-w64 `winsock2.h`, `ws2def.h`, `ws2ipdef.h`, `ws2tcpip.h`, `mswsock.h`.
    MingwWinsock,
    /// Wine's `ddk/wsk.h`.
    WineWsk,
    /// `tests/layout/documented.h`: transcribed from Microsoft's documentation, on mingw-w64 base
    /// types.
    Documented,
}

impl Header {
    const ALL: [Self; 4] = [Self::MingwKernel, Self::MingwWinsock, Self::WineWsk, Self::Documented];

    fn name(self) -> &'static str {
        match self {
            Self::MingwKernel => "mingw-kernel",
            Self::MingwWinsock => "mingw-winsock",
            Self::WineWsk => "wine-wsk",
            Self::Documented => "documented",
        }
    }

    /// The prelude in `tests/layout/` the generated C file includes.
    fn prelude(self) -> &'static str {
        match self {
            Self::MingwKernel => "mingw_kernel.h",
            Self::MingwWinsock => "mingw_winsock.h",
            Self::WineWsk => "wine_wsk.h",
            Self::Documented => "documented.h",
        }
    }

    /// Include options of the TU.
    fn clang_args(self) -> &'static [&'static str] {
        match self {
            Self::MingwKernel | Self::Documented => &["-I/usr/x86_64-w64-mingw32/include/ddk"],
            Self::MingwWinsock => &[],
            Self::WineWsk => &["-nostdinc", "-I/usr/include/wine/wine/windows", "-I/usr/include/wine/wine/msvcrt"],
        }
    }

    /// A header the TU cannot do without, and the Debian package that ships it.
    fn required_header(self) -> (&'static str, &'static str) {
        match self {
            Self::MingwKernel | Self::Documented => {
                ("/usr/x86_64-w64-mingw32/include/ddk/ntddk.h", "mingw-w64-x86-64-dev")
            }
            Self::MingwWinsock => ("/usr/x86_64-w64-mingw32/include/ws2tcpip.h", "mingw-w64-x86-64-dev"),
            Self::WineWsk => ("/usr/include/wine/wine/windows/ddk/wsk.h", "libwine-dev"),
        }
    }
}

/// One Rust field (or nested field path) and the C member it must coincide with.
#[derive(Clone, Debug)]
struct Field {
    /// Rust field path, e.g. `Tail.Overlay.CurrentStackLocation`.
    rust: &'static str,
    /// C member designator, e.g. `Tail.Overlay.CurrentStackLocation` (anonymous unions and
    /// structs are transparent in C).
    c: &'static str,
    offset: usize,
    /// Size of a top-level field. Nested paths check the offset only: the nested type has an
    /// entry of its own.
    size: Option<usize>,
    /// C expression for the size when the Rust field stands for several C members.
    c_size: Option<&'static str>,
}

/// A type checked field by field.
#[derive(Clone, Debug)]
struct Type {
    rust: &'static str,
    header: Header,
    /// C type name, or a `__typeof__` expression for a C type without a name.
    c: &'static str,
    /// `DECLSPEC_ALIGN(n)` of the Windows Driver Kit declaration that the header set lacks: the C
    /// side is checked as if the header had it.
    declspec_align: Option<usize>,
    size: usize,
    align: usize,
    fields: Vec<Field>,
}

/// A zero-sized Rust type standing for a C type that is opaque (incomplete) in C too.
#[derive(Clone, Debug)]
struct Opaque {
    rust: &'static str,
    size: usize,
    reason: &'static str,
}

#[derive(Clone, Debug)]
struct Table {
    types: Vec<Type>,
    opaque: Vec<Opaque>,
}

/// Size of what a field projection points to.
fn pointee_size<T, F>(_: fn(&T) -> *const F) -> usize {
    size_of::<F>()
}

macro_rules! opt {
    () => {
        None
    };
    ($value:expr) => {
        Some($value)
    };
}

macro_rules! field_size {
    ($ty:ident, $field:ident) => {
        Some(pointee_size(|value: &$ty| &raw const value.$field))
    };
    ($ty:ident, $field:ident $(. $sub:ident)+) => {
        None
    };
}

/// Builds the [`Table`] from entries of the form
///
/// ```text
/// opaque { RustType: "reason"; }
/// RustType in Header as "C type" [, declspec_align N] {
///     rust_field[.nested...] => "c.member" [, size "C size expression"];
/// }
/// ```
macro_rules! layout_table {
    (
        opaque {
            $( $opaque:ident : $reason:literal ; )*
        }
        $(
            $ty:ident in $header:ident as $c_ty:literal $(, declspec_align $declspec:literal)? {
                $( $field:ident $(. $sub:ident)* => $c_path:literal $(, size $c_size:literal)? ; )*
            }
        )*
    ) => {
        Table {
            types: vec![$(
                Type {
                    rust: stringify!($ty),
                    header: Header::$header,
                    c: $c_ty,
                    declspec_align: opt!($($declspec)?),
                    size: size_of::<$ty>(),
                    align: align_of::<$ty>(),
                    fields: vec![$(
                        Field {
                            rust: concat!(stringify!($field) $(, ".", stringify!($sub))*),
                            c: $c_path,
                            offset: offset_of!($ty, $field $(. $sub)*),
                            size: field_size!($ty, $field $(. $sub)*),
                            c_size: opt!($($c_size)?),
                        }
                    ),*],
                }
            ),*],
            opaque: vec![$(
                Opaque { rust: stringify!($opaque), size: size_of::<$opaque>(), reason: $reason }
            ),*],
        }
    };
}

/// The one Rust-to-C mapping of `wsk-sys`.
///
/// Every field of every `#[repr(C)]` type has an entry (checked: offset and size). Nested Rust
/// paths (`Tail.Overlay.CurrentStackLocation`) add offset checks where the Rust type flattens a C
/// union or names a well-known member; their sizes are checked through the nested type's own
/// entry. C member paths see through anonymous unions and structs as C does.
fn table() -> Table {
    layout_table! {
        // Zero-sized Rust types for C types that are incomplete in C too.
        opaque {
            IO_WORKITEM: "allocated and owned by the I/O manager (IoAllocateWorkItem); an incomplete \
                          `struct _IO_WORKITEM` in wdm.h too";
        }

        // ---- mingw-w64 ddk/ntddk.h, ddk/wdm.h, ntdef.h, guiddef.h ----------------------------------

        LIST_ENTRY in MingwKernel as "LIST_ENTRY" {
            Flink => "Flink";
            Blink => "Blink";
        }
        UNICODE_STRING in MingwKernel as "UNICODE_STRING" {
            Length => "Length";
            MaximumLength => "MaximumLength";
            Buffer => "Buffer";
        }
        // C: an anonymous union of `Count` and `Ptr`.
        EX_RUNDOWN_REF in MingwKernel as "EX_RUNDOWN_REF" {
            Count => "Count";
        }
        GUID in MingwKernel as "GUID" {
            Data1 => "Data1";
            Data2 => "Data2";
            Data3 => "Data3";
            Data4 => "Data4";
        }
        // C: `Status` shares an anonymous union with `Pointer`.
        IO_STATUS_BLOCK in MingwKernel as "IO_STATUS_BLOCK" {
            Status => "Status";
            Information => "Information";
        }
        IRP_OVERLAY in MingwKernel as "__typeof__(((IRP *)0)->Overlay.AsynchronousParameters)" {
            UserApcRoutine => "UserApcRoutine";
            UserApcContext => "UserApcContext";
        }
        // C: `DriverContext` shares an anonymous union with `DeviceQueueEntry`, and
        // `CurrentStackLocation` one with `PacketType`; `ListEntry` is a LIST_ENTRY.
        IRP_TAIL_OVERLAY in MingwKernel as "__typeof__(((IRP *)0)->Tail.Overlay)" {
            DriverContext => "DriverContext";
            Thread => "Thread";
            AuxiliaryBuffer => "AuxiliaryBuffer";
            ListEntry => "ListEntry";
            CurrentStackLocation => "CurrentStackLocation";
            OriginalFileObject => "OriginalFileObject";
        }
        // C: `Apc` is a KAPC.
        IRP_TAIL in MingwKernel as "__typeof__(((IRP *)0)->Tail)" {
            Overlay => "Overlay";
            Apc => "Apc";
            CompletionKey => "CompletionKey";
        }
        // The WDK declares `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT) _IRP` (16 on x64);
        // mingw-w64 and Wine omit the alignment.
        IRP in MingwKernel as "IRP", declspec_align 16 {
            Type => "Type";
            Size => "Size";
            MdlAddress => "MdlAddress";
            Flags => "Flags";
            // The `AssociatedIrp` union (`MasterIrp`, `IrpCount`, `SystemBuffer`) as one pointer.
            AssociatedIrp => "AssociatedIrp";
            ThreadListEntry => "ThreadListEntry";
            IoStatus => "IoStatus";
            RequestorMode => "RequestorMode";
            PendingReturned => "PendingReturned";
            StackCount => "StackCount";
            CurrentLocation => "CurrentLocation";
            Cancel => "Cancel";
            CancelIrql => "CancelIrql";
            ApcEnvironment => "ApcEnvironment";
            AllocationFlags => "AllocationFlags";
            UserIosb => "UserIosb";
            UserEvent => "UserEvent";
            // The `Overlay` union as its `AsynchronousParameters` view.
            Overlay => "Overlay";
            Overlay.UserApcContext => "Overlay.AsynchronousParameters.UserApcContext";
            CancelRoutine => "CancelRoutine";
            UserBuffer => "UserBuffer";
            Tail => "Tail";
            Tail.Overlay.CurrentStackLocation => "Tail.Overlay.CurrentStackLocation";
        }
        IO_STACK_LOCATION_OTHERS in MingwKernel as "__typeof__(((IO_STACK_LOCATION *)0)->Parameters.Others)" {
            Argument1 => "Argument1";
            Argument2 => "Argument2";
            Argument3 => "Argument3";
            Argument4 => "Argument4";
        }
        IO_STACK_LOCATION in MingwKernel as "IO_STACK_LOCATION" {
            MajorFunction => "MajorFunction";
            MinorFunction => "MinorFunction";
            Flags => "Flags";
            Control => "Control";
            // The `Parameters` union as its `Others` view.
            Parameters => "Parameters";
            Parameters.Argument1 => "Parameters.Others.Argument1";
            Parameters.Argument2 => "Parameters.Others.Argument2";
            Parameters.Argument3 => "Parameters.Others.Argument3";
            Parameters.Argument4 => "Parameters.Others.Argument4";
            DeviceObject => "DeviceObject";
            FileObject => "FileObject";
            CompletionRoutine => "CompletionRoutine";
            Context => "Context";
        }
        // C: bytes 0 to 3 are anonymous unions (with `Lock` over all four). Rust names one view
        // of each byte; byte 3 is kept as `Reserved1` (C `DpcActive`, `DebugActive`, ...).
        DISPATCHER_HEADER in MingwKernel as "DISPATCHER_HEADER" {
            Type => "Type";
            Signalling => "Signalling";
            Size => "Size";
            Reserved1 => "DpcActive";
            SignalState => "SignalState";
            WaitListHead => "WaitListHead";
        }
        KEVENT in MingwKernel as "KEVENT" {
            Header => "Header";
        }
        KTIMER in MingwKernel as "KTIMER" {
            Header => "Header";
            DueTime => "DueTime";
            TimerListEntry => "TimerListEntry";
            Dpc => "Dpc";
            Processor => "Processor";
            Period => "Period";
        }
        KDPC in MingwKernel as "KDPC" {
            Type => "Type";
            Importance => "Importance";
            Number => "Number";
            DpcListEntry => "DpcListEntry";
            DeferredRoutine => "DeferredRoutine";
            DeferredContext => "DeferredContext";
            SystemArgument1 => "SystemArgument1";
            SystemArgument2 => "SystemArgument2";
            DpcData => "DpcData";
        }
        MDL in MingwKernel as "MDL" {
            Next => "Next";
            Size => "Size";
            MdlFlags => "MdlFlags";
            Process => "Process";
            MappedSystemVa => "MappedSystemVa";
            StartVa => "StartVa";
            ByteCount => "ByteCount";
            ByteOffset => "ByteOffset";
        }
        DRIVER_OBJECT in MingwKernel as "DRIVER_OBJECT" {
            Type => "Type";
            Size => "Size";
            DeviceObject => "DeviceObject";
            Flags => "Flags";
            DriverStart => "DriverStart";
            DriverSize => "DriverSize";
            DriverSection => "DriverSection";
            DriverExtension => "DriverExtension";
            DriverName => "DriverName";
            HardwareDatabase => "HardwareDatabase";
            FastIoDispatch => "FastIoDispatch";
            DriverInit => "DriverInit";
            DriverStartIo => "DriverStartIo";
            DriverUnload => "DriverUnload";
            MajorFunction => "MajorFunction";
        }
        // The WDK declares `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT) _DEVICE_OBJECT` (16 on x64,
        // size 0x150); mingw-w64 and Wine omit the alignment.
        DEVICE_OBJECT in MingwKernel as "DEVICE_OBJECT", declspec_align 16 {
            Type => "Type";
            Size => "Size";
            ReferenceCount => "ReferenceCount";
            DriverObject => "DriverObject";
            NextDevice => "NextDevice";
            AttachedDevice => "AttachedDevice";
            CurrentIrp => "CurrentIrp";
            Timer => "Timer";
            Flags => "Flags";
            Characteristics => "Characteristics";
            Vpb => "Vpb";
            DeviceExtension => "DeviceExtension";
            DeviceType => "DeviceType";
            StackSize => "StackSize";
            // `Reserved` covers every C member from `Queue` to the end.
            Reserved => "Queue", size "sizeof(DEVICE_OBJECT) - __builtin_offsetof(DEVICE_OBJECT, Queue)";
        }
        OBJECT_ATTRIBUTES in MingwKernel as "OBJECT_ATTRIBUTES" {
            Length => "Length";
            RootDirectory => "RootDirectory";
            ObjectName => "ObjectName";
            Attributes => "Attributes";
            SecurityDescriptor => "SecurityDescriptor";
            SecurityQualityOfService => "SecurityQualityOfService";
        }
        KEY_VALUE_PARTIAL_INFORMATION in MingwKernel as "KEY_VALUE_PARTIAL_INFORMATION" {
            TitleIndex => "TitleIndex";
            Type => "Type";
            DataLength => "DataLength";
            Data => "Data";
        }

        // ---- mingw-w64 winsock2.h, ws2def.h, ws2ipdef.h, ws2tcpip.h, mswsock.h --------------------

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
        // Microsoft's ws2def.h: `typedef WSACMSGHDR CMSGHDR`; mingw-w64 has WSACMSGHDR only.
        CMSGHDR in MingwWinsock as "WSACMSGHDR" {
            cmsg_len => "cmsg_len";
            cmsg_level => "cmsg_level";
            cmsg_type => "cmsg_type";
        }

        // ---- Wine ddk/wsk.h ----------------------------------------------------------------------

        WSK_SOCKET in WineWsk as "WSK_SOCKET" {
            Dispatch => "Dispatch";
        }
        WSK_BUF in WineWsk as "WSK_BUF" {
            Mdl => "Mdl";
            Offset => "Offset";
            Length => "Length";
        }
        WSK_BUF_LIST in WineWsk as "WSK_BUF_LIST" {
            Next => "Next";
            Buffer => "Buffer";
        }
        WSK_DATA_INDICATION in WineWsk as "WSK_DATA_INDICATION" {
            Next => "Next";
            Buffer => "Buffer";
        }
        WSK_DATAGRAM_INDICATION in WineWsk as "WSK_DATAGRAM_INDICATION" {
            Next => "Next";
            Buffer => "Buffer";
            ControlInfo => "ControlInfo";
            ControlInfoLength => "ControlInfoLength";
            RemoteAddress => "RemoteAddress";
        }
        WSK_INSPECT_ID in WineWsk as "WSK_INSPECT_ID" {
            Key => "Key";
            SerialNumber => "SerialNumber";
        }
        WSK_CLIENT_DISPATCH in WineWsk as "WSK_CLIENT_DISPATCH" {
            Version => "Version";
            Reserved => "Reserved";
            WskClientEvent => "WskClientEvent";
        }
        WSK_CLIENT_LISTEN_DISPATCH in WineWsk as "WSK_CLIENT_LISTEN_DISPATCH" {
            WskAcceptEvent => "WskAcceptEvent";
            WskInspectEvent => "WskInspectEvent";
            WskAbortEvent => "WskAbortEvent";
        }
        WSK_CLIENT_CONNECTION_DISPATCH in WineWsk as "WSK_CLIENT_CONNECTION_DISPATCH" {
            WskReceiveEvent => "WskReceiveEvent";
            WskDisconnectEvent => "WskDisconnectEvent";
            WskSendBacklogEvent => "WskSendBacklogEvent";
        }
        WSK_CLIENT_NPI in WineWsk as "WSK_CLIENT_NPI" {
            ClientContext => "ClientContext";
            Dispatch => "Dispatch";
        }
        WSK_REGISTRATION in WineWsk as "WSK_REGISTRATION" {
            ReservedRegistrationState => "ReservedRegistrationState";
            ReservedRegistrationContext => "ReservedRegistrationContext";
            ReservedRegistrationLock => "ReservedRegistrationLock";
        }
        WSK_PROVIDER_DISPATCH in WineWsk as "WSK_PROVIDER_DISPATCH" {
            Version => "Version";
            Reserved => "Reserved";
            WskSocket => "WskSocket";
            WskSocketConnect => "WskSocketConnect";
            WskControlClient => "WskControlClient";
            WskGetAddressInfo => "WskGetAddressInfo";
            WskFreeAddressInfo => "WskFreeAddressInfo";
            WskGetNameInfo => "WskGetNameInfo";
        }
        WSK_PROVIDER_NPI in WineWsk as "WSK_PROVIDER_NPI" {
            Client => "Client";
            Dispatch => "Dispatch";
        }
        WSK_PROVIDER_BASIC_DISPATCH in WineWsk as "WSK_PROVIDER_BASIC_DISPATCH" {
            WskControlSocket => "WskControlSocket";
            WskCloseSocket => "WskCloseSocket";
        }
        WSK_PROVIDER_LISTEN_DISPATCH in WineWsk as "WSK_PROVIDER_LISTEN_DISPATCH" {
            Basic => "Basic";
            WskBind => "WskBind";
            WskAccept => "WskAccept";
            WskInspectComplete => "WskInspectComplete";
            WskGetLocalAddress => "WskGetLocalAddress";
        }
        WSK_PROVIDER_DATAGRAM_DISPATCH in WineWsk as "WSK_PROVIDER_DATAGRAM_DISPATCH" {
            Basic => "Basic";
            WskBind => "WskBind";
            WskSendTo => "WskSendTo";
            WskReceiveFrom => "WskReceiveFrom";
            WskRelease => "WskRelease";
            WskGetLocalAddress => "WskGetLocalAddress";
            WskSendMessages => "WskSendMessages";
        }
        WSK_PROVIDER_CONNECTION_DISPATCH in WineWsk as "WSK_PROVIDER_CONNECTION_DISPATCH" {
            Basic => "Basic";
            WskBind => "WskBind";
            WskConnect => "WskConnect";
            WskGetLocalAddress => "WskGetLocalAddress";
            WskGetRemoteAddress => "WskGetRemoteAddress";
            WskSend => "WskSend";
            WskReceive => "WskReceive";
            WskDisconnect => "WskDisconnect";
            WskRelease => "WskRelease";
            WskConnectEx => "WskConnectEx";
            WskSendEx => "WskSendEx";
            WskReceiveEx => "WskReceiveEx";
        }
        WSK_PROVIDER_STREAM_DISPATCH in WineWsk as "WSK_PROVIDER_STREAM_DISPATCH" {
            Basic => "Basic";
            WskBind => "WskBind";
            WskAccept => "WskAccept";
            WskConnect => "WskConnect";
            WskListen => "WskListen";
            WskSend => "WskSend";
            WskReceive => "WskReceive";
            WskDisconnect => "WskDisconnect";
            WskRelease => "WskRelease";
            WskGetLocalAddress => "WskGetLocalAddress";
            WskGetRemoteAddress => "WskGetRemoteAddress";
            WskConnectEx => "WskConnectEx";
            WskSendEx => "WskSendEx";
            WskReceiveEx => "WskReceiveEx";
        }

        // ---- tests/layout/documented.h: transcribed from Microsoft's documentation --------------
        // (in neither mingw-w64 nor Wine)

        WSK_EVENT_CALLBACK_CONTROL in Documented as "WSK_EVENT_CALLBACK_CONTROL" {
            NpiId => "NpiId";
            EventMask => "EventMask";
        }
        WSK_CLIENT_DATAGRAM_DISPATCH in Documented as "WSK_CLIENT_DATAGRAM_DISPATCH" {
            WskReceiveFromEvent => "WskReceiveFromEvent";
        }
        WSK_CLIENT_STREAM_DISPATCH in Documented as "WSK_CLIENT_STREAM_DISPATCH" {
            Listen => "Listen";
            Connect => "Connect";
        }
    }
}

// The host the table is computed on must be 64-bit little-endian, and a few known x64 facts from
// Microsoft's documentation (DESIGN.md, section 4) must hold. Constant evaluation checks this
// wherever this file compiles, without clang and also for the driver target:
// `cargo check -p wsk-sys --tests --target x86_64-pc-windows-msvc`.
const _: () = {
    assert!(
        cfg!(target_pointer_width = "64") && cfg!(target_endian = "little"),
        "the Rust layouts stand for x86_64-pc-windows-msvc only on a 64-bit little-endian target"
    );
    assert!(size_of::<IRP>() == 0xD0);
    assert!(offset_of!(IRP, IoStatus) == 0x30);
    assert!(offset_of!(IRP, Tail.Overlay.CurrentStackLocation) == 0xB8);
    assert!(size_of::<IO_STACK_LOCATION>() == 0x48);
    assert!(offset_of!(IO_STACK_LOCATION, Control) == 3);
    assert!(offset_of!(IO_STACK_LOCATION, CompletionRoutine) == 0x38);
    assert!(offset_of!(IO_STACK_LOCATION, Context) == 0x40);
    assert!(offset_of!(DRIVER_OBJECT, DriverUnload) == 0x68);
};

// ---- C generation and compilation ----------------------------------------------------------------

/// One `_Static_assert`: the C expression must equal the Rust value.
#[derive(Debug)]
struct Check {
    /// Names the Rust type and field, and the C member.
    label: String,
    expr: String,
    rust: usize,
}

fn checks_of(ty: &Type) -> Vec<Check> {
    let c = ty.c;
    let (size, align, declspec) = match ty.declspec_align {
        None => (format!("sizeof({c})"), format!("_Alignof({c})"), String::new()),
        Some(a) => (
            format!("((sizeof({c}) + {}) / {a} * {a})", a - 1),
            format!("(_Alignof({c}) > {a} ? _Alignof({c}) : {a})"),
            format!(" under the WDK's DECLSPEC_ALIGN({a})"),
        ),
    };
    let mut checks = vec![
        Check { label: format!("{}: size (C sizeof({c}){declspec})", ty.rust), expr: size, rust: ty.size },
        Check { label: format!("{}: alignment (C _Alignof({c}){declspec})", ty.rust), expr: align, rust: ty.align },
    ];
    for field in &ty.fields {
        let name = format!("{}.{}", ty.rust, field.rust);
        checks.push(Check {
            label: format!("{name}: offset (C offsetof({c}, {}))", field.c),
            expr: format!("__builtin_offsetof({c}, {})", field.c),
            rust: field.offset,
        });
        if let Some(size) = field.size {
            let expr = match field.c_size {
                Some(expr) => expr.to_owned(),
                None => format!("sizeof((({c} *)0)->{})", field.c),
            };
            checks.push(Check { label: format!("{name}: size (C {expr})"), expr, rust: size });
        }
    }
    checks
}

fn checks_for(table: &Table, header: Header) -> Vec<Check> {
    table.types.iter().filter(|ty| ty.header == header).flat_map(checks_of).collect()
}

fn c_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The C file asserting every check.
fn assert_source(header: Header, checks: &[Check]) -> String {
    let mut c = format!(
        "/* Generated by sys/tests/layout.rs: Rust layouts of wsk-sys, {} translation unit. */\n\
         #include \"{}\"\n\n",
        header.name(),
        header.prelude()
    );
    for check in checks {
        let message = c_string(&format!("{} is {:#x} in Rust", check.label, check.rust));
        writeln!(c, "_Static_assert({} == {:#x}, \"{message}\");", check.expr, check.rust).unwrap();
    }
    c
}

/// Header lines of [`probe_source`] before the first probe.
const PROBE_PRELUDE_LINES: usize = 3;

/// A C file that makes clang print the value of every check: each line initializes a
/// `char (*)[value + 1]` from an `int *`, and the warning spells out the array type.
fn probe_source(header: Header, checks: &[Check]) -> String {
    let mut c = format!(
        "/* Generated by sys/tests/layout.rs: C values, {} translation unit. */\n#include \"{}\"\n\n",
        header.name(),
        header.prelude()
    );
    for (i, check) in checks.iter().enumerate() {
        writeln!(c, "char (*layout_probe_{i})[({}) + 1] = (int *)0;", check.expr).unwrap();
    }
    c
}

/// Values `(check index, value)` from the warnings clang printed for a [`probe_source`].
fn probe_values(stderr: &str) -> Vec<(usize, usize)> {
    let mut values = Vec::new();
    for line in stderr.lines() {
        let Some((location, rest)) = line.split_once(": warning: ") else { continue };
        let Some(array) = rest.split("'char (*)[").nth(1) else { continue };
        let mut parts = location.rsplitn(3, ':');
        let (Some(_column), Some(line_number)) = (parts.next(), parts.next()) else { continue };
        let (Ok(line_number), Some(Ok(value))) =
            (line_number.parse::<usize>(), array.split(']').next().map(str::parse::<usize>))
        else {
            continue;
        };
        if let Some(index) = line_number.checked_sub(PROBE_PRELUDE_LINES + 1) {
            values.push((index, value - 1));
        }
    }
    values
}

fn layout_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("layout")
}

/// Writes through a temporary file and a rename, so that a concurrent run of the test never lets
/// clang read a half-written file.
fn write_file(path: &Path, contents: &str) {
    let temporary = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&temporary, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", temporary.display()));
    std::fs::rename(&temporary, path).unwrap_or_else(|e| panic!("cannot rename to {}: {e}", path.display()));
}

fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("layout");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Fails the test, naming the packages to install, if clang or a header set is missing.
fn require_tools() {
    match Command::new("clang").arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!("`clang --version` failed ({}); {INSTALL_HINT}", output.status),
        Err(e) => panic!("cannot run clang ({e}); {INSTALL_HINT}"),
    }
    for header in Header::ALL {
        let (path, package) = header.required_header();
        assert!(
            Path::new(path).is_file(),
            "{path} is missing (Debian package {package}, needed by the {} translation unit); {INSTALL_HINT}",
            header.name()
        );
    }
}

/// Runs clang on `file`; returns its output and the command line.
fn run_clang(header: Header, file: &Path, warnings: &[&str]) -> (Output, String) {
    let mut command = Command::new("clang");
    command
        .args(["-target", "x86_64-w64-mingw32", "-mms-bitfields", "-fsyntax-only"])
        .args(["-ferror-limit=0", "-fno-color-diagnostics", "-fno-caret-diagnostics", "-Wno-everything"])
        .args(warnings)
        .args(header.clang_args())
        .arg("-I")
        .arg(layout_dir())
        .arg(file);
    let line = format!("{command:?}");
    (command.output().unwrap_or_else(|e| panic!("cannot run clang ({e}); {INSTALL_HINT}")), line)
}

/// Compiles the checks of one TU. On failure, returns a report with clang's errors and, for
/// every mismatch, the Rust and the C value.
fn check_header(table: &Table, header: Header, tag: &str) -> Result<usize, String> {
    let checks = checks_for(table, header);
    let dir = work_dir();
    let file = dir.join(format!("{tag}-{}.c", header.name()));
    write_file(&file, &assert_source(header, &checks));
    let (output, command) = run_clang(header, &file, &[]);
    if output.status.success() {
        return Ok(checks.len());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut report = format!("layout mismatch in the {} translation unit ({})\n", header.name(), header.prelude());

    let probe = dir.join(format!("{tag}-{}-probe.c", header.name()));
    write_file(&probe, &probe_source(header, &checks));
    let (probed, _) = run_clang(header, &probe, &["-Wincompatible-pointer-types"]);
    let values = probe_values(&String::from_utf8_lossy(&probed.stderr));
    if values.len() == checks.len() {
        for (index, c_value) in values {
            let Some(check) = checks.get(index) else { continue };
            if check.rust != c_value {
                writeln!(report, "  {}: Rust {:#x}, C {c_value:#x}", check.label, check.rust).unwrap();
            }
        }
    } else {
        writeln!(report, "  (could not read the C values back from {})", probe.display()).unwrap();
    }
    write!(
        report,
        "{command}\n{stderr}(for the C layouts in detail, add `-Xclang -fdump-record-layouts` to that command)\n"
    )
    .unwrap();
    Err(report)
}

// ---- tests ---------------------------------------------------------------------------------------

#[test]
fn layouts_match_public_headers() {
    require_tools();
    let table = table();
    for opaque in &table.opaque {
        assert_eq!(opaque.size, 0, "{} is listed as opaque ({}) but is not zero-sized", opaque.rust, opaque.reason);
    }
    let results: Vec<(Header, Result<usize, String>)> = std::thread::scope(|scope| {
        let table = &table;
        let handles: Vec<_> = Header::ALL
            .iter()
            .map(|&header| (header, scope.spawn(move || check_header(table, header, "layout"))))
            .collect();
        handles.into_iter().map(|(header, handle)| (header, handle.join().unwrap())).collect()
    });
    let mut failures = String::new();
    for (header, result) in results {
        match result {
            Ok(count) => {
                assert!(count > 0, "no checks for the {} translation unit", header.name());
                println!("{}: {count} checks passed", header.name());
            }
            Err(report) => failures.push_str(&report),
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// The same check with one value one byte off must fail and name the type and field: above all
/// `IO_STACK_LOCATION.Control` one byte further than in C. One mistake per translation unit: a
/// field offset, a size, an alignment and a field size.
#[test]
fn one_byte_off_is_detected() {
    require_tools();
    type Mistake = (Header, &'static str, Option<&'static str>, fn(&mut Type, Option<usize>));
    let mistakes: [Mistake; 4] = [
        (Header::MingwKernel, "IO_STACK_LOCATION", Some("Control"), |ty, field| {
            ty.fields[field.unwrap()].offset += 1;
        }),
        (Header::MingwWinsock, "SOCKADDR_IN6", None, |ty, _| ty.size += 1),
        (Header::WineWsk, "WSK_BUF", None, |ty, _| ty.align += 1),
        (Header::Documented, "WSK_EVENT_CALLBACK_CONTROL", Some("EventMask"), |ty, field| {
            let size = ty.fields[field.unwrap()].size.as_mut().unwrap();
            *size += 1;
        }),
    ];
    let results: Vec<Result<usize, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = mistakes
            .iter()
            .map(|&(header, type_name, field_name, spoil)| {
                scope.spawn(move || {
                    let mut table = table();
                    let ty = table.types.iter_mut().find(|ty| ty.rust == type_name).unwrap();
                    assert_eq!(ty.header, header);
                    let field = field_name.map(|name| ty.fields.iter().position(|f| f.rust == name).unwrap());
                    spoil(ty, field);
                    check_header(&table, header, &format!("one-byte-off-{type_name}"))
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    for ((_, type_name, field_name, _), result) in mistakes.iter().zip(results) {
        let report = result.expect_err("a one-byte mistake must fail the check");
        println!("---- induced failure: {type_name} {field_name:?} ----\n{report}");

        let errors: Vec<&str> = report.lines().filter(|line| line.contains(": error: ")).collect();
        assert_eq!(errors.len(), 1, "exactly one assert must fail:\n{report}");
        let named = match field_name {
            Some(field) => format!("{type_name}.{field}: "),
            None => format!("{type_name}: "),
        };
        assert!(errors[0].contains(&named), "the error must name `{named}`:\n{report}");
        let mismatches: Vec<&str> = report.lines().filter(|line| line.contains(": Rust 0x")).collect();
        assert_eq!(mismatches.len(), 1, "the report must show the one mismatch:\n{report}");
        assert!(mismatches[0].trim_start().starts_with(&named), "{report}");
    }
}

#[test]
fn every_repr_c_type_is_in_the_table() {
    let table = table();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();

    let mut items = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        items.extend(repr_c_items(&text).into_iter().map(|item| (name.clone(), item)));
    }
    assert!(items.iter().any(|(_, item)| item.name == "IRP"), "the source scan found no IRP");

    let mut problems = Vec::new();
    for (file, item) in &items {
        if let Some(ty) = table.types.iter().find(|ty| ty.rust == item.name) {
            for field in &item.fields {
                if !ty.fields.iter().any(|f| f.rust == field && f.size.is_some()) {
                    problems.push(format!("src/{file}: field {}.{field} has no entry in the layout table", item.name));
                }
            }
        } else if !table.opaque.iter().any(|opaque| opaque.rust == item.name) {
            problems.push(format!("src/{file}: #[repr(C)] {} {} is not in the layout table", item.kind, item.name));
        }
    }
    let names = table.types.iter().map(|ty| ty.rust).chain(table.opaque.iter().map(|opaque| opaque.rust));
    for (i, name) in names.clone().enumerate() {
        if !items.iter().any(|(_, item)| item.name == name) {
            problems.push(format!("the layout table lists {name}, which is no #[repr(C)] type in src/"));
        }
        if names.clone().take(i).any(|other| other == name) {
            problems.push(format!("the layout table lists {name} twice"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Host layouts equal `x86_64-pc-windows-msvc` layouts only while `sys` avoids the integer types
/// whose size or alignment differs between the two (`long` is 4 bytes on Windows, 8 on Linux).
#[test]
fn sys_uses_no_target_dependent_integers() {
    const FORBIDDEN: [&str; 4] = ["c_long", "c_ulong", "i128", "u128"];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for token in tokens(&text).iter().filter(|token| FORBIDDEN.contains(&token.as_str())) {
                found.push(format!("{}: {token}", path.display()));
            }
        }
    }
    assert!(found.is_empty(), "use fixed-width integers in sys (LONG = i32, ...):\n{}", found.join("\n"));
}

// ---- source scan ---------------------------------------------------------------------------------

/// A `#[repr(C)]` / `#[repr(C, ...)]` struct or union found in Rust source.
#[derive(Debug, PartialEq, Eq)]
struct ReprCItem {
    kind: String,
    name: String,
    fields: Vec<String>,
}

/// Splits Rust source into identifiers, literals and single punctuation characters (`->` is one
/// token); comments are dropped.
fn tokens(source: &str) -> Vec<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else if c.is_alphanumeric() || c == '_' || c == '\'' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == '-' && next == Some('>') {
            out.push("->".to_owned());
            i += 2;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// Index just past the bracket group that opens at `tokens[open]`.
fn skip_group(tokens: &[String], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced brackets in the source scan")
}

/// Skips outer attributes and a visibility (`pub`, `pub(crate)`, ...) starting at `i`.
fn skip_attributes_and_visibility(tokens: &[String], mut i: usize) -> usize {
    loop {
        if tokens[i] == "#" && tokens.get(i + 1).is_some_and(|t| t == "[") {
            i = skip_group(tokens, i + 1);
        } else if tokens[i] == "pub" {
            i += 1;
            if tokens[i] == "(" {
                i = skip_group(tokens, i);
            }
        } else {
            return i;
        }
    }
}

/// Every `#[repr(C)]` / `#[repr(C, ...)]` struct and union of `source`, with its field names.
fn repr_c_items(source: &str) -> Vec<ReprCItem> {
    let tokens = tokens(source);
    let mut items = Vec::new();
    let mut i = 0;
    while i + 3 < tokens.len() {
        if !(tokens[i] == "#" && tokens[i + 1] == "[" && tokens[i + 2] == "repr" && tokens[i + 3] == "(") {
            i += 1;
            continue;
        }
        let close = skip_group(&tokens, i + 3);
        let is_c = tokens[i + 4..close - 1].split(|t| t == ",").any(|arg| arg.len() == 1 && arg[0] == "C");
        i = skip_attributes_and_visibility(&tokens, skip_group(&tokens, i + 1));
        if !is_c {
            continue;
        }
        let kind = tokens[i].clone();
        assert!(
            kind == "struct" || kind == "union",
            "#[repr(C)] on a `{kind}`: the source scan reads structs and unions"
        );
        let name = tokens[i + 1].clone();
        assert_eq!(
            tokens[i + 2],
            "{",
            "#[repr(C)] {kind} {name}: the source scan reads braced structs without generics"
        );
        let end = skip_group(&tokens, i + 2) - 1;
        let mut fields = Vec::new();
        let mut j = i + 3;
        while j < end {
            j = skip_attributes_and_visibility(&tokens, j);
            if j >= end {
                break;
            }
            fields.push(tokens[j].clone());
            assert_eq!(tokens[j + 1], ":", "{kind} {name}: expected `:` after field {}", tokens[j]);
            let mut depth = 0usize;
            j += 2;
            while j < end && !(depth == 0 && tokens[j] == ",") {
                match tokens[j].as_str() {
                    "(" | "[" | "{" | "<" => depth += 1,
                    ")" | "]" | "}" | ">" => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            j += 1;
        }
        items.push(ReprCItem { kind, name, fields });
        i = end + 1;
    }
    items
}

#[test]
fn source_scan_reads_structs_unions_and_fields() {
    let source = r#"
        /// Doc with a quote ' and "string" and #[repr(C)] in it.
        #[repr(C, align(2))]
        #[derive(Debug)]
        pub struct A {
            /// A field.
            pub first: Option<unsafe extern "system" fn(x: *mut u8, y: u32) -> i32>,
            pub(crate) second: [u8; 4], // trailing comment
            #[doc = "attr"]
            third: core::marker::PhantomData<(u8, u16)>
        }
        #[repr(u32)]
        enum NotC { X }
        #[repr(transparent)]
        struct NotC2(u8);
        #[repr(C)]
        union U { pub a: u64, pub b: [u16; 4] }
        /* #[repr(C)] struct InComment { x: u8 } */
        #[repr(C)]
        struct Opaque { _opaque: [u8; 0] }
    "#;
    let items = repr_c_items(source);
    let summary: Vec<(&str, &str, Vec<&str>)> = items
        .iter()
        .map(|item| (item.kind.as_str(), item.name.as_str(), item.fields.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        summary,
        [
            ("struct", "A", vec!["first", "second", "third"]),
            ("union", "U", vec!["a", "b"]),
            ("struct", "Opaque", vec!["_opaque"]),
        ]
    );
}
