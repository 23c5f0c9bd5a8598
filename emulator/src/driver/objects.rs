//! The objects the I/O manager creates for a driver, and the process's driver slot (one
//! driver loaded at a time).

use std::sync::{Condvar, Mutex};
use std::thread::{self, ThreadId};

use wsk_sys::{DRIVER_OBJECT, IO_TYPE_DRIVER, IRP_MJ_MAXIMUM_FUNCTION, PVOID, ULONG, UNICODE_STRING};

use crate::registry;
use crate::sync::{lock, wait};

/// `DRIVER_EXTENSION` (the public part).
#[repr(C)]
struct DriverExtension {
    driver_object: *mut DRIVER_OBJECT,
    add_device: PVOID,
    count: ULONG,
    service_key_name: UNICODE_STRING,
}

/// The objects the I/O manager creates for a driver, in one block that never moves (16-byte
/// aligned, as pool is).
#[repr(C, align(16))]
pub(super) struct DriverObjects {
    pub(super) driver: DRIVER_OBJECT,
    extension: DriverExtension,
    pub(super) registry_path: UNICODE_STRING,
    registry_path_text: Vec<u16>,
    driver_name_text: Vec<u16>,
    service_name_text: Vec<u16>,
}

fn counted(text: &mut [u16]) -> UNICODE_STRING {
    let bytes = (text.len() * 2).min(0xFFFE) as u16;
    UNICODE_STRING { Length: bytes, MaximumLength: bytes, Buffer: text.as_mut_ptr() }
}

impl DriverObjects {
    /// Allocates the driver object block (host memory: not the driver's allocation).
    pub(super) fn create(name: &str) -> *mut DriverObjects {
        let block = Box::new(DriverObjects {
            driver: DRIVER_OBJECT {
                Type: IO_TYPE_DRIVER,
                Size: size_of::<DRIVER_OBJECT>() as i16,
                DeviceObject: std::ptr::null_mut(),
                Flags: 0,
                DriverStart: std::ptr::null_mut(),
                DriverSize: 0,
                DriverSection: std::ptr::null_mut(),
                DriverExtension: std::ptr::null_mut(),
                DriverName: UNICODE_STRING::empty(),
                HardwareDatabase: std::ptr::null_mut(),
                FastIoDispatch: std::ptr::null_mut(),
                DriverInit: None,
                DriverStartIo: std::ptr::null_mut(),
                DriverUnload: None,
                MajorFunction: [None; IRP_MJ_MAXIMUM_FUNCTION + 1],
            },
            extension: DriverExtension {
                driver_object: std::ptr::null_mut(),
                add_device: std::ptr::null_mut(),
                count: 0,
                service_key_name: UNICODE_STRING::empty(),
            },
            registry_path: UNICODE_STRING::empty(),
            registry_path_text: registry::service_key_path(name).encode_utf16().collect(),
            driver_name_text: format!(r"\Driver\{name}").encode_utf16().collect(),
            service_name_text: name.encode_utf16().collect(),
        });
        let objects = Box::into_raw(block);
        // SAFETY: `objects` is a fresh, exclusively owned block; the strings' buffers live in
        // the same block (their heap storage never moves while the block is alive).
        unsafe {
            let this = &mut *objects;
            this.registry_path = counted(&mut this.registry_path_text);
            this.driver.DriverName = counted(&mut this.driver_name_text);
            this.extension.service_key_name = counted(&mut this.service_name_text);
            this.extension.driver_object = &raw mut this.driver;
            this.driver.DriverExtension = (&raw mut this.extension).cast();
        }
        objects
    }
}

/// The process's driver slot: which thread holds the loaded driver, if any.
static SLOT: Mutex<Option<ThreadId>> = Mutex::new(None);
static SLOT_FREE: Condvar = Condvar::new();

pub(super) fn acquire_slot() {
    let me = thread::current().id();
    let mut slot = lock(&SLOT);
    loop {
        match *slot {
            None => break,
            Some(owner) if owner == me => {
                drop(slot);
                panic!("wsk-emulator: this thread already has a driver loaded; unload it first (one driver at a time)");
            }
            Some(_) => slot = wait(&SLOT_FREE, slot),
        }
    }
    *slot = Some(me);
}

pub(super) fn release_slot() {
    *lock(&SLOT) = None;
    SLOT_FREE.notify_one();
}
