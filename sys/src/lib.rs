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

#![no_std]
#![allow(non_snake_case, non_camel_case_types, non_upper_case_globals)]

pub mod basic;
pub mod fns;
pub mod irp;
pub mod ke;
pub mod mdl;
pub mod object;
pub mod registry;
pub mod sockaddr;
pub mod status;
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
