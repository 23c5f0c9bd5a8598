//! Driver lifecycle: DriverEntry, DriverUnload, reports, one driver at a time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use wsk_emulator::{Kernel, LeakKind, Rule};
use wsk_sys::*;

use crate::common::{TAG, attach, unicode};

static ENTRY_IRQL: AtomicU32 = AtomicU32::new(99);
static UNLOAD_IRQL: AtomicU32 = AtomicU32::new(99);
static UNLOADS: AtomicU32 = AtomicU32::new(0);
static PORT: AtomicU32 = AtomicU32::new(0);
static STATE: AtomicUsize = AtomicUsize::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

fn read_port(registry_path: *mut UNICODE_STRING) -> u32 {
    let path = unsafe { &*registry_path };
    let path =
        String::from_utf16(unsafe { std::slice::from_raw_parts(path.Buffer, usize::from(path.Length) / 2) }).unwrap();
    let mut name = unicode(&format!(r"{path}\Parameters"));
    let mut attributes = InitializeObjectAttributes(
        &raw mut name,
        OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    let mut key: HANDLE = std::ptr::null_mut();
    if !NT_SUCCESS(unsafe { ZwOpenKey(&raw mut key, KEY_READ, &raw mut attributes) }) {
        return 0;
    }
    let mut value = unicode("Port");
    let mut buffer = [0u32; 8];
    let mut length = 0;
    let status = unsafe {
        ZwQueryValueKey(
            key,
            &raw mut value,
            KeyValuePartialInformation,
            buffer.as_mut_ptr().cast(),
            32,
            &raw mut length,
        )
    };
    unsafe { ZwClose(key) };
    if status == STATUS_SUCCESS && buffer[1] == REG_DWORD { buffer[3] } else { 0 }
}

unsafe extern "system" fn driver_unload(driver: *mut DRIVER_OBJECT) {
    let _ = driver;
    UNLOAD_IRQL.store(u32::from(KeGetCurrentIrql()), Ordering::SeqCst);
    UNLOADS.fetch_add(1, Ordering::SeqCst);
    unsafe { ExFreePoolWithTag(STATE.swap(0, Ordering::SeqCst) as PVOID, TAG) };
}

unsafe extern "system" fn driver_entry(driver: *mut DRIVER_OBJECT, registry_path: *mut UNICODE_STRING) -> NTSTATUS {
    ENTRY_IRQL.store(u32::from(KeGetCurrentIrql()), Ordering::SeqCst);
    unsafe {
        assert_eq!((*driver).Type, IO_TYPE_DRIVER);
        assert!(!(*driver).DriverExtension.is_null());
    }
    PORT.store(read_port(registry_path), Ordering::SeqCst);
    let state = unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG) };
    if state.is_null() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    STATE.store(state as usize, Ordering::SeqCst);
    unsafe { DbgPrint(c"echo: loaded, port %u\n".as_ptr(), PORT.load(Ordering::SeqCst)) };
    unsafe { (*driver).DriverUnload = Some(driver_unload) };
    STATUS_SUCCESS
}

#[test]
fn load_calls_driver_entry_and_unload_calls_driver_unload() {
    let _serial = SERIAL.lock().unwrap();
    let unloads = UNLOADS.load(Ordering::SeqCst);
    let driver = Kernel::builder().param_dword("Port", 7007).load("echo", driver_entry).unwrap();
    assert_eq!(driver.name(), "echo");
    assert_eq!(ENTRY_IRQL.load(Ordering::SeqCst), u32::from(PASSIVE_LEVEL));
    assert_eq!(PORT.load(Ordering::SeqCst), 7007);
    assert_eq!(driver.debug_log(), vec!["echo: loaded, port 7007".to_owned()]);
    let name = unsafe { &(*driver.driver_object()).DriverName };
    let name =
        String::from_utf16(unsafe { std::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2) }).unwrap();
    assert_eq!(name, r"\Driver\echo");
    let report = driver.unload();
    report.assert_unloaded();
    assert_eq!(UNLOADS.load(Ordering::SeqCst), unloads + 1);
    assert_eq!(UNLOAD_IRQL.load(Ordering::SeqCst), u32::from(PASSIVE_LEVEL));
    report.assert_clean();
    assert_eq!(report.counters.pool_allocations, 1);
    assert!(report.to_string().contains("clean"), "{report}");
}

unsafe extern "system" fn leaky_failing_entry(_driver: *mut DRIVER_OBJECT, _path: *mut UNICODE_STRING) -> NTSTATUS {
    unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, 10, TAG) };
    STATUS_UNSUCCESSFUL
}

#[test]
fn failed_driver_entry_is_checked_for_leaks() {
    let error = Kernel::builder().load("broken", leaky_failing_entry).unwrap_err();
    assert_eq!(error.status(), STATUS_UNSUCCESSFUL);
    let report = error.report();
    assert!(!report.unload_called);
    report.assert_violation(Rule::PoolLeak);
    report.assert_leaks(LeakKind::Pool, 1);
    assert!(error.to_string().contains("DriverEntry failed with 0xC0000001"));
}

#[test]
fn one_driver_at_a_time() {
    let first = attach();
    let (sender, receiver) = std::sync::mpsc::channel();
    let second = std::thread::spawn(move || {
        let driver = attach();
        sender.send(()).unwrap();
        driver.unload()
    });
    assert!(receiver.recv_timeout(Duration::from_millis(50)).is_err(), "the second load waits");
    first.unload().assert_clean();
    receiver.recv_timeout(Duration::from_secs(20)).expect("the second load proceeds after unload");
    second.join().unwrap().assert_clean();
}

#[test]
#[should_panic(expected = "already has a driver loaded")]
fn loading_twice_on_one_thread_panics() {
    let _first = attach();
    let _second = attach();
}

#[test]
fn dropping_a_driver_unloads_it() {
    {
        let _driver = attach();
        unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, 10, TAG) };
    }
    // The slot is free again; the leak report went to stderr.
    attach().unload().assert_clean();
}

#[test]
fn report_display_lists_violations_and_leaks() {
    let driver = attach();
    unsafe {
        ExAllocatePoolWithTag(NonPagedPoolNx, 10, u32::from_le_bytes(*b"Shwn"));
    }
    let report = driver.unload();
    let text = report.to_string();
    assert!(text.contains("Verifier report for driver `test`"), "{text}");
    assert!(
        text.contains("BUGCHECK 0x000000C4 DRIVER_VERIFIER_DETECTED_VIOLATION (0x62) [POOL_LEAKED_AT_UNLOAD]"),
        "{text}"
    );
    assert!(text.contains("tag 'Shwn' 10 bytes (non-paged)"), "{text}");
    assert!(text.contains("allocated at"), "{text}");
    assert!(text.contains("report_display_lists_violations_and_leaks"), "the site names the test: {text}");
}

#[test]
fn every_rule_has_a_distinct_name_and_a_code() {
    let mut names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
    names.sort();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count);
    for rule in Rule::ALL {
        assert_ne!(wsk_emulator::codes::name(rule.code()), "UNKNOWN_BUGCHECK", "{rule}");
    }
}

unsafe extern "system" fn bugcheck_routine(_device: *mut DEVICE_OBJECT, _context: PVOID) {
    unsafe { KeBugCheckEx(0xDEAD, 1, 2, 3, 4) }
}

#[test]
fn ke_bug_check_ex_in_a_work_item_stops_the_driver() {
    let driver = attach();
    unsafe {
        let item = IoAllocateWorkItem(driver.driver_object().cast());
        IoQueueWorkItem(item, bugcheck_routine, DelayedWorkQueue, std::ptr::null_mut());
    }
    assert!(crate::common::eventually(|| driver.crashed()));
    let report = driver.unload();
    let first = report.assert_first(Rule::DriverBugCheck);
    assert_eq!((first.code, first.parameter1), (0xDEAD, 1));
    assert!(first.message.contains("KeBugCheckEx(0x0000DEAD, 0x1, 0x2, 0x3, 0x4)"), "{report}");
    // The stopped worker was replaced: every worker can still be occupied at once.
    let driver = attach();
    let gate = crate::workitem::Gate::new();
    let items = gate.occupy(&driver, wsk_emulator::WORKER_THREADS);
    gate.open();
    assert!(driver.wait_idle(crate::common::PATIENCE));
    for item in items {
        unsafe { IoFreeWorkItem(item) };
    }
    driver.unload().assert_clean();
}
