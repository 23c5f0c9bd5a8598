//! The WSK provider (NETIO's `WskRegister`, `WskDeregister`, `WskCaptureProviderNPI`,
//! `WskReleaseProviderNPI`).
//!
//! Registration and NPI capture are complete: registration blocks are validated and tracked,
//! captures are counted, `WskDeregister` waits for every captured NPI to be released, and a
//! registration left at unload is reported. The provider dispatch table's routines are not
//! implemented yet: each takes the client's IRP as a provider does ([`crate::provider::accept`]),
//! completes it with `STATUS_NOT_IMPLEMENTED` and returns that status.

mod dispatch;
mod registration;

pub use registration::{WskCaptureProviderNPI, WskDeregister, WskRegister, WskReleaseProviderNPI};
pub(crate) use registration::{leaks, teardown};
