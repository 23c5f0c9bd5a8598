//! Pool memory, `PoolBox`, `IoBuf` and its MDL, and the TCP read-ahead buffer, over the
//! stand-in kernel routines ([`super::kernel`]).

extern crate std;

use std::rc::Rc;

use super::kernel::live_blocks;
use crate::IoBuf;
use crate::pool::{self, AnyPoolBox, PoolBox};
use crate::socket::tcp::ReadBuffer;

#[test]
fn pool_memory_is_zeroed_aligned_and_freed() {
    let block = pool::allocate(100, pool::TAG).unwrap();
    assert_eq!(block.as_ptr().addr() % pool::POOL_ALIGN, 0);
    // SAFETY: 100 bytes of fresh pool memory, ours.
    let bytes = unsafe { core::slice::from_raw_parts_mut(block.as_ptr(), 100) };
    assert!(bytes.iter().all(|&b| b == 0), "pool::allocate zeroes");
    bytes.fill(0xEE);
    // SAFETY: allocated above with TAG, not used afterwards.
    unsafe { pool::free(block, pool::TAG) };
}

#[test]
fn a_pool_box_drops_its_value_once_and_survives_into_raw() {
    let value = Rc::new(5);
    let mut boxed = PoolBox::try_new((value.clone(), [0u64; 3])).unwrap();
    boxed.1[2] = 9;
    assert_eq!(*boxed.0, 5);
    assert_eq!(boxed.1, [0, 0, 9]);
    let raw = PoolBox::into_raw(boxed);
    assert_eq!(Rc::strong_count(&value), 2, "into_raw keeps the value");
    // SAFETY: from `into_raw` just above, owned by nothing else.
    let boxed = unsafe { PoolBox::from_raw(raw) };
    drop(boxed);
    assert_eq!(Rc::strong_count(&value), 1, "the value is dropped with the box");
}

#[test]
fn an_io_buf_keeps_len_within_capacity() {
    let mut buf = IoBuf::with_capacity(8).unwrap();
    assert_eq!((buf.len(), buf.capacity()), (0, 8));
    assert!(buf.as_mut_capacity().iter().all(|&b| b == 0), "capacity is initialized (zeroed)");
    assert_eq!(buf.extend_from_slice(b"hello"), 5);
    assert_eq!(buf.extend_from_slice(b" world"), 3, "only what fits is taken");
    assert_eq!(buf.as_slice(), b"hello wo");
    buf.set_len(100);
    assert_eq!(buf.len(), 8, "set_len clamps to the capacity");
    buf.clear();
    assert!(buf.is_empty());
    let copy = IoBuf::copy_from(b"abc").unwrap();
    assert_eq!(copy.as_slice(), b"abc");
    assert!(IoBuf::with_capacity(crate::buf::MAX_BUF + 1).is_err());
}

/// The `WSK_BUF` an `IoBuf` hands a provider describes exactly the bytes asked for, through
/// the MDL built at creation (its system address is the buffer).
#[test]
fn an_io_buf_wsk_buf_describes_its_bytes() {
    let buf = IoBuf::copy_from(b"0123456789").unwrap();
    let wsk_buf = buf.wsk_buf(3, 4);
    assert_eq!((wsk_buf.Offset, wsk_buf.Length), (3, 4));
    // SAFETY: the MDL is the buffer's own, alive while `buf` is.
    let base = unsafe { wsk_sys::MmGetSystemAddressForMdlSafe(wsk_buf.Mdl, wsk_sys::NormalPagePriority) };
    // SAFETY: as above.
    assert_eq!(unsafe { wsk_sys::MmGetMdlByteCount(wsk_buf.Mdl) }, 10);
    // SAFETY: the MDL maps the buffer's 10 bytes; 3..7 is within them.
    let described = unsafe { core::slice::from_raw_parts(base.cast::<u8>().wrapping_add(3), 4) };
    assert_eq!(described, b"3456");
}

#[test]
fn the_read_buffer_hands_out_unread_bytes_once_in_order() {
    let mut rx = ReadBuffer::default();
    let mut dst = IoBuf::with_capacity(4).unwrap();
    assert_eq!(rx.unread(), 0);
    assert_eq!(rx.take_into(&mut dst), 0);
    rx.buf = Some(IoBuf::copy_from(b"hello world").unwrap());
    assert_eq!(rx.unread(), 11);
    assert_eq!(rx.take_into(&mut dst), 4);
    assert_eq!(dst.as_slice(), b"hell");
    assert_eq!(rx.take_into(&mut dst), 4);
    assert_eq!(dst.as_slice(), b"o wo", "take_into replaces the destination's contents");
    assert_eq!(rx.unread(), 3);
    #[cfg(feature = "embedded-io")]
    {
        rx.consume(1);
        assert_eq!(rx.unread(), 2);
        rx.consume(100);
        assert_eq!(rx.unread(), 0, "consume stops at the end");
    }
    #[cfg(not(feature = "embedded-io"))]
    {
        assert_eq!(rx.take_into(&mut dst), 3);
        assert_eq!(dst.as_slice(), b"rld");
    }
    assert_eq!(rx.take_into(&mut dst), 0);
    assert!(dst.is_empty());
}

/// A box is allocated and freed with its own tag (the stand-in pool checks the tag at free).
#[test]
fn a_pool_box_uses_its_tag() {
    use crate::pool::tag::{LIBRARY, REQUEST};
    let (requests, library) = (live_blocks(REQUEST), live_blocks(LIBRARY));
    let tagged = PoolBox::<u64, REQUEST>::try_new_tagged(7).unwrap();
    let untagged = PoolBox::try_new(8u64).unwrap();
    assert_eq!((live_blocks(REQUEST), live_blocks(LIBRARY)), (requests + 1, library + 1));
    assert_eq!((*tagged, *untagged), (7, 8));
    drop((tagged, untagged));
    assert_eq!((live_blocks(REQUEST), live_blocks(LIBRARY)), (requests, library));
}

/// An `AnyPoolBox` gives its box back only as the type (and tag) it was made from, and frees
/// the value when dropped.
#[test]
fn an_any_pool_box_downcasts_to_its_own_type_only() {
    use crate::pool::tag::REQUEST;
    let value = std::sync::Arc::new(5);
    let any = AnyPoolBox::new(PoolBox::<_, REQUEST>::try_new_tagged(value.clone()).unwrap());
    let any = any.downcast::<u64, REQUEST>().expect_err("another type");
    let any = any.downcast::<std::sync::Arc<i32>, { pool::tag::LIBRARY }>().expect_err("another tag");
    let boxed = any.downcast::<std::sync::Arc<i32>, REQUEST>().expect("its own type");
    assert_eq!(**boxed, 5);
    drop(AnyPoolBox::new(boxed));
    assert_eq!(std::sync::Arc::strong_count(&value), 1, "dropping it dropped the value");
    assert_eq!(live_blocks(REQUEST), 0);
}
