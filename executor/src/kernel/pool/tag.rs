//! The pool tags of the executor and the library, in one table: every kind of allocation has
//! a tag of its own, so that a pool dump (`!poolused`, PoolMon, Driver Verifier's leak report)
//! tells them apart.

/// Builds a pool tag from four ASCII bytes as pool tools show them (`b"WskE"`).
pub const fn from_bytes(bytes: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*bytes)
}

/// The executor: task cells, timers, executor state ("WskE").
pub const EXECUTOR: u32 = from_bytes(b"WskE");

/// The library's general allocations: its global allocator, and the values it keeps in pool
/// that have no tag of their own (the WSK registration, driver globals) ("WskA").
pub const LIBRARY: u32 = from_bytes(b"WskA");

/// I/O buffers: the memory an `IoBuf` describes with its MDL ("WskB").
pub const BUFFER: u32 = from_bytes(b"WskB");

/// Operation slots: an operation's IRP bookkeeping and argument block ("WskO").
pub const OP_SLOT: u32 = from_bytes(b"WskO");

/// Socket state shared by a socket's handles and its close ("WskS").
pub const SOCKET: u32 = from_bytes(b"WskS");

/// Event-callback state of a socket: what the provider's event callbacks reach through the
/// socket context ("WskV").
pub const EVENT: u32 = from_bytes(b"WskV");

/// Request blocks a provider routine reads or writes through pointers while its IRP is in
/// flight, held by the operation slot until completion: a name resolution's strings and result
/// pointer, a new connection's local address ("WskR").
pub const REQUEST: u32 = from_bytes(b"WskR");

/// Every tag above with its name.
pub const ALL: [(&str, u32); 7] = [
    ("EXECUTOR", EXECUTOR),
    ("LIBRARY", LIBRARY),
    ("BUFFER", BUFFER),
    ("OP_SLOT", OP_SLOT),
    ("SOCKET", SOCKET),
    ("EVENT", EVENT),
    ("REQUEST", REQUEST),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tag_is_distinct() {
        for (i, (name, tag)) in ALL.iter().enumerate() {
            for (other, other_tag) in &ALL[i + 1..] {
                assert_ne!(tag, other_tag, "{name} and {other} share a tag");
            }
        }
    }

    #[test]
    fn tags_read_in_memory_order_as_printable_ascii() {
        assert_eq!(EXECUTOR.to_le_bytes(), *b"WskE");
        for (name, tag) in ALL {
            assert!(tag.to_le_bytes().iter().all(u8::is_ascii_graphic), "{name}");
            assert_eq!(&tag.to_le_bytes()[..3], b"Wsk", "{name}");
        }
    }
}
