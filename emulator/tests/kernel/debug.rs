//! DbgPrint / DbgPrintEx formatting and the debug log.

use std::time::Duration;

use wsk_emulator::{Rule, debug_messages, with_irql};
use wsk_sys::*;

use crate::common::{attach, unicode};

fn last() -> String {
    debug_messages().last().expect("a message").text.clone()
}

#[test]
fn windows_printf_dialect() {
    let driver = attach();
    let mut name = unicode("echo");
    let wide: Vec<u16> = "wide\0".encode_utf16().collect();
    unsafe {
        DbgPrint(c"plain %d %u %x %s\n".as_ptr(), -5i32, 7u32, 255u32, c"text".as_ptr());
        assert_eq!(last(), "plain -5 7 ff text");
        // `l` is 32 bits wide on Windows: the upper half of the slot is ignored.
        DbgPrint(c"%ld %lu %lx".as_ptr(), 0xFFFF_FFFF_0000_0007u64, 0x1_0000_0008u64, 0x1_0000_00ABu64);
        assert_eq!(last(), "7 8 ab");
        DbgPrint(c"%I64x %llu %Ix %I32d".as_ptr(), 0x1_2345_6789u64, 10_000_000_000u64, 0xABCDusize, 12i32);
        assert_eq!(last(), "123456789 10000000000 abcd 12");
        DbgPrint(c"[%wZ] [%ws] [%S]".as_ptr(), &raw mut name, wide.as_ptr(), wide.as_ptr());
        assert_eq!(last(), "[echo] [wide] [wide]");
        DbgPrint(c"%p".as_ptr(), 0xABCusize as *const u8);
        assert_eq!(last(), "0000000000000ABC");
        DbgPrint(c"%5d|%-4s|%05.1f|%%|%c".as_ptr(), 42i32, c"ab".as_ptr(), 2.5f64, i32::from(b'z'));
        assert_eq!(last(), "   42|ab  |002.5|%|z");
        DbgPrint(c"%*d %.2s %s".as_ptr(), 4i32, 1i32, c"xyz".as_ptr(), std::ptr::null::<u8>());
        assert_eq!(last(), "   1 xy (null)");
        DbgPrintEx(77, 3, c"ex %d\n".as_ptr(), 1i32);
        let message = debug_messages().pop().unwrap();
        assert_eq!(message.text, "ex 1");
        assert_eq!(message.filter, Some((77, 3)));
    }
    assert!(driver.debug_log().iter().any(|line| line == "plain -5 7 ff text"));
    driver.unload().assert_clean();
}

#[test]
fn long_messages_are_truncated_to_512_bytes() {
    let driver = attach();
    let long = std::ffi::CString::new("x".repeat(2000)).unwrap();
    unsafe { DbgPrint(c"%s".as_ptr(), long.as_ptr()) };
    assert_eq!(last().len(), 511);
    driver.unload().assert_clean();
}

#[test]
fn wait_for_a_message_from_another_thread() {
    let driver = attach();
    std::thread::spawn(|| unsafe { DbgPrint(c"ready on port %d\n".as_ptr(), 7007i32) });
    let line = driver.wait_for_debug_message("ready on port", Duration::from_secs(20)).unwrap();
    assert_eq!(line, "ready on port 7007");
    driver.unload().assert_clean();
}

#[test]
fn unicode_format_above_passive_is_reported() {
    let driver = attach();
    let mut name = unicode("echo");
    with_irql(DISPATCH_LEVEL, || unsafe {
        DbgPrint(c"ansi is fine %s\n".as_ptr(), c"here".as_ptr());
    });
    assert!(driver.bugchecks().is_empty());
    with_irql(DISPATCH_LEVEL, || unsafe {
        DbgPrint(c"%wZ\n".as_ptr(), &raw mut name);
    });
    driver.unload().assert_first(Rule::DbgPrintUnicodeAbovePassive);
}
