//! Raw kernel ABI for the `wsk` crates.
//!
//! Everything here is hand-written from Microsoft's public documentation of the Windows kernel
//! and Winsock Kernel (WSK) interfaces. Names follow the C names so that documentation and code
//! read alike (hence `non_snake_case` / `non_camel_case_types`).
//!
//! * On Windows targets every routine is imported from `ntoskrnl.exe`, `NETIO.SYS` or `HAL.dll`
//!   through `raw-dylib`: no WDK and no import libraries are needed.
//! * On every other target the same declarations are resolved at link time by the host kernel
//!   emulator (`wsk-emulator`), which defines each routine with `#[unsafe(no_mangle)]`.
//!
//! The layout of every `#[repr(C)]` type is checked against the C definitions in the public
//! headers (Debian's `mingw-w64-x86-64-dev` and `libwine-dev`) by `cargo xtask test`.
//!
//! FORCEINLINE routines of `wdm.h` (stack location helpers, `IoSetCompletionRoutine`,
//! `IoMarkIrpPending`, ...) have no export: [`irp`] provides Rust equivalents.

//! # Documentation
//!
//! Items whose meaning is the C item's carry no doc comment of their own: each module says
//! which header and which part of it it binds, and Microsoft's documentation of the C name is
//! the item's documentation. Items this crate adds (the Rust forms of FORCEINLINE helpers, the
//! status names, the address conversions) are documented where they are defined.

#![no_std]
#![deny(missing_docs)]
#![expect(
    non_snake_case,
    non_camel_case_types,
    non_upper_case_globals,
    reason = "the bindings keep the C names of the Windows headers, so they can be looked up there"
)]

#[expect(missing_docs, reason = "binds ntdef.h and wdm.h items named after their C names")]
pub mod basic;
#[expect(missing_docs, reason = "declarations of exported routines, documented by Microsoft under their C names")]
pub mod fns;
#[expect(missing_docs, reason = "binds the IRP section of wdm.h under its C names")]
pub mod irp;
#[expect(missing_docs, reason = "binds the dispatcher-object, timer and DPC section of wdm.h under its C names")]
pub mod ke;
#[expect(missing_docs, reason = "binds the MDL section of wdm.h under its C names")]
pub mod mdl;
#[expect(missing_docs, reason = "binds the driver-object, device-object and work-item sections of wdm.h")]
pub mod object;
#[expect(missing_docs, reason = "binds OBJECT_ATTRIBUTES (ntdef.h) and the registry-value section of wdm.h")]
pub mod registry;
#[expect(missing_docs, reason = "binds ws2def.h and ws2ipdef.h under their C names")]
pub mod sockaddr;
pub mod status;
#[expect(missing_docs, reason = "binds wsk.h under its C names")]
pub mod wsk;

pub use basic::*;
pub use fns::*;
pub use irp::*;
pub use ke::*;
pub use mdl::*;
pub use object::*;
pub use registry::*;
pub use sockaddr::*;
pub use status::*;
pub use wsk::*;
