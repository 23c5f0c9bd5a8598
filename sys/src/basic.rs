//! Basic scalar types, `LIST_ENTRY` and `UNICODE_STRING`.
//!
//! Binds, under their C names: the base types of `ntdef.h` and `basetsd.h` (`UCHAR` ...
//! `ULONG_PTR`, `NTSTATUS`, `BOOLEAN`, `PVOID`), `LIST_ENTRY` and `UNICODE_STRING` (`ntdef.h`),
//! and the `KIRQL`/`KPROCESSOR_MODE` types and IRQL levels of `wdm.h`.

use core::ffi::c_void;

pub type NTSTATUS = i32;
pub type BOOLEAN = u8;
pub type UCHAR = u8;
pub type CHAR = i8;
pub type CCHAR = i8;
pub type CSHORT = i16;
pub type USHORT = u16;
pub type SHORT = i16;
pub type ULONG = u32;
pub type LONG = i32;
pub type ULONG_PTR = usize;
pub type SIZE_T = usize;
pub type ULONGLONG = u64;
pub type LONGLONG = i64;
pub type KIRQL = u8;
pub type KPROCESSOR_MODE = i8;
pub type KPRIORITY = LONG;
pub type KSPIN_LOCK = ULONG_PTR;
pub type ACCESS_MASK = ULONG;
pub type HANDLE = *mut c_void;
pub type PVOID = *mut c_void;
pub type WCHAR = u16;
pub type POOL_FLAGS = ULONGLONG;
/// `LARGE_INTEGER` as its `QuadPart`; the union's other views are not used.
pub type LARGE_INTEGER = i64;
/// `ULARGE_INTEGER` as its `QuadPart`.
pub type ULARGE_INTEGER = u64;
/// Opaque `EPROCESS`.
pub type PEPROCESS = *mut c_void;
/// Opaque `ETHREAD`.
pub type PETHREAD = *mut c_void;
/// Opaque `SECURITY_DESCRIPTOR`.
pub type PSECURITY_DESCRIPTOR = *mut c_void;

pub const TRUE: BOOLEAN = 1;
pub const FALSE: BOOLEAN = 0;

/// IRQL levels (x64).
pub const PASSIVE_LEVEL: KIRQL = 0;
pub const APC_LEVEL: KIRQL = 1;
pub const DISPATCH_LEVEL: KIRQL = 2;
pub const HIGH_LEVEL: KIRQL = 15;

/// `KPROCESSOR_MODE` values.
pub const KernelMode: KPROCESSOR_MODE = 0;
pub const UserMode: KPROCESSOR_MODE = 1;

/// Doubly linked list head or entry.
#[repr(C)]
#[derive(Debug)]
pub struct LIST_ENTRY {
    pub Flink: *mut LIST_ENTRY,
    pub Blink: *mut LIST_ENTRY,
}

/// Counted UTF-16 string. `Length` and `MaximumLength` are in bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct UNICODE_STRING {
    pub Length: USHORT,
    pub MaximumLength: USHORT,
    pub Buffer: *mut WCHAR,
}

impl UNICODE_STRING {
    /// An empty string.
    pub const fn empty() -> Self {
        Self { Length: 0, MaximumLength: 0, Buffer: core::ptr::null_mut() }
    }

    /// A string over a static UTF-16 buffer (without terminator). Lengths saturate at the
    /// largest even `USHORT`.
    pub const fn from_static(s: &'static [u16]) -> Self {
        let bytes = if s.len() > 0x7FFF { 0xFFFE } else { s.len() * 2 };
        Self { Length: bytes as u16, MaximumLength: bytes as u16, Buffer: s.as_ptr().cast_mut() }
    }
}

/// Builds a `&'static [u16]` from an ASCII string literal at compile time.
#[macro_export]
macro_rules! utf16 {
    ($s:literal) => {{
        const S: &str = $s;
        const N: usize = S.len();
        const W: [u16; N] = {
            let b = S.as_bytes();
            let mut w = [0u16; N];
            let mut i = 0;
            while i < N {
                assert!(b[i] < 0x80, "utf16! takes ASCII only");
                w[i] = b[i] as u16;
                i += 1;
            }
            w
        };
        &W
    }};
}

/// Rundown protection (`EX_RUNDOWN_REF`): one pointer-sized word the kernel manages.
#[repr(C)]
#[derive(Debug)]
pub struct EX_RUNDOWN_REF {
    pub Count: ULONG_PTR,
}

/// `GUID`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GUID {
    pub Data1: u32,
    pub Data2: u16,
    pub Data3: u16,
    pub Data4: [u8; 8],
}
