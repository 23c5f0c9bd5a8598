//! `WSK_BUF`: `Length` bytes starting `Offset` bytes into the buffer an MDL chain describes.
//!
//! The emulator's MDLs describe real host memory: the data of each MDL is at
//! `MmGetMdlVirtualAddress(Mdl)` (`StartVa + ByteOffset`) for `ByteCount` bytes. A buffer is
//! resolved once, when the call is made, into the host memory ranges it covers.

use wsk_sys::{MmGetMdlVirtualAddress, NTSTATUS, STATUS_INVALID_PARAMETER, WSK_BUF};

use super::model::Segments;
use crate::pool;
use crate::verifier::{Rule, bugcheck};

/// Longest MDL chain followed (a longer one is taken for a cycle).
const MAX_CHAIN: usize = 1 << 16;

/// Resolves the `WSK_BUF` at `buffer` for `routine`. A null buffer, or a null MDL with a
/// non-zero length, is `STATUS_INVALID_PARAMETER`. A buffer reaching past the end of its MDL
/// chain, or an MDL already freed, is a verifier violation (and `STATUS_INVALID_PARAMETER`).
///
/// # Safety
/// `buffer` must be null or point to a readable `WSK_BUF` whose MDLs are readable.
pub(crate) unsafe fn resolve(routine: &str, buffer: *const WSK_BUF) -> Result<Segments, NTSTATUS> {
    if buffer.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: the caller guarantees a readable `WSK_BUF`.
    let WSK_BUF { Mdl: first, Offset: offset, Length: length } = unsafe { buffer.read_unaligned() };
    if length == 0 {
        return Ok(Segments::default());
    }
    if first.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // First pass: every MDL live, and the chain's length (nothing kept: the second pass walks
    // the same links, which the caller's contract keeps unchanged during the call).
    let mut mdls = 0usize;
    let mut mdl = first;
    let mut chain_bytes: usize = 0;
    while !mdl.is_null() && mdls < MAX_CHAIN {
        if pool::in_freed_block(mdl as usize) {
            if crate::kernel::verifier() {
                bugcheck(
                    Rule::MdlBadPointer,
                    format!("{routine}: the WSK_BUF's MDL chain holds MDL {mdl:p}, already freed"),
                );
            }
            return Err(STATUS_INVALID_PARAMETER);
        }
        mdls += 1;
        // SAFETY: a live MDL of the client's chain (caller's contract).
        chain_bytes += unsafe { (*mdl).ByteCount } as usize;
        // SAFETY: as above.
        mdl = unsafe { (*mdl).Next };
    }
    let offset = offset as usize;
    if offset.checked_add(length).is_none_or(|end| end > chain_bytes) {
        if crate::kernel::verifier() {
            bugcheck(
                Rule::WskBufferBeyondMdl,
                format!(
                    "{routine}: WSK_BUF {{ Mdl: {first:p}, Offset: {offset}, Length: {length} }} reaches past the end of \
                     its MDL chain ({mdls} MDL(s), {chain_bytes} bytes)"
                ),
            );
        }
        return Err(STATUS_INVALID_PARAMETER);
    }
    let mut parts = Vec::new();
    let mut skip = offset;
    let mut left = length;
    let mut mdl = first;
    while left > 0 && !mdl.is_null() {
        // SAFETY: a live MDL of the client's chain (checked above).
        let address = unsafe { MmGetMdlVirtualAddress(mdl) } as usize;
        // SAFETY: as above.
        let count = unsafe { (*mdl).ByteCount } as usize;
        // SAFETY: as above.
        mdl = unsafe { (*mdl).Next };
        if skip >= count {
            skip -= count;
            continue;
        }
        let take = (count - skip).min(left);
        parts.push((address + skip, take));
        left -= take;
        skip = 0;
    }
    Ok(Segments::new(parts))
}
