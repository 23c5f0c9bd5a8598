//! Driver and device objects, work items.
//!
//! Binds the driver-object, device-object and work-item sections of `wdm.h` (`DRIVER_OBJECT`,
//! `DEVICE_OBJECT`, `DRIVER_INITIALIZE`, `DRIVER_UNLOAD`, `IO_WORKITEM_ROUTINE`,
//! `WORK_QUEUE_TYPE`, `POOL_FLAGS`) under their C names.

use core::ffi::c_void;

use crate::basic::*;
use crate::irp::IRP;

/// Driver object. The I/O manager creates it; a driver sets `DriverUnload` in DriverEntry.
#[repr(C)]
pub struct DRIVER_OBJECT {
    pub Type: CSHORT,
    pub Size: CSHORT,
    pub DeviceObject: *mut DEVICE_OBJECT,
    pub Flags: ULONG,
    pub DriverStart: PVOID,
    pub DriverSize: ULONG,
    pub DriverSection: PVOID,
    pub DriverExtension: PVOID,
    pub DriverName: UNICODE_STRING,
    pub HardwareDatabase: *mut UNICODE_STRING,
    pub FastIoDispatch: PVOID,
    pub DriverInit: Option<DRIVER_INITIALIZE>,
    pub DriverStartIo: PVOID,
    pub DriverUnload: Option<DRIVER_UNLOAD>,
    pub MajorFunction: [Option<DRIVER_DISPATCH>; IRP_MJ_MAXIMUM_FUNCTION + 1],
}

/// Device object: only the leading fields are named; the rest is the kernel's. 16-byte aligned
/// (size 0x150), as the WDK declares it (`DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)`).
#[repr(C, align(16))]
pub struct DEVICE_OBJECT {
    pub Type: CSHORT,
    pub Size: USHORT,
    pub ReferenceCount: LONG,
    pub DriverObject: *mut DRIVER_OBJECT,
    pub NextDevice: *mut DEVICE_OBJECT,
    pub AttachedDevice: *mut DEVICE_OBJECT,
    pub CurrentIrp: *mut IRP,
    pub Timer: PVOID,
    pub Flags: ULONG,
    pub Characteristics: ULONG,
    pub Vpb: PVOID,
    pub DeviceExtension: PVOID,
    pub DeviceType: ULONG,
    pub StackSize: CCHAR,
    /// Queue, alignment, DPC, event and extension fields the kernel owns.
    pub Reserved: [u64; 31],
}

pub const IRP_MJ_MAXIMUM_FUNCTION: usize = 0x1b;
pub const IO_TYPE_DRIVER: CSHORT = 4;
pub const IO_TYPE_DEVICE: CSHORT = 3;

pub type DRIVER_INITIALIZE =
    unsafe extern "system" fn(DriverObject: *mut DRIVER_OBJECT, RegistryPath: *mut UNICODE_STRING) -> NTSTATUS;
pub type DRIVER_UNLOAD = unsafe extern "system" fn(DriverObject: *mut DRIVER_OBJECT);
pub type DRIVER_DISPATCH = unsafe extern "system" fn(DeviceObject: *mut DEVICE_OBJECT, Irp: *mut IRP) -> NTSTATUS;

/// Opaque work item (`IO_WORKITEM`), allocated by `IoAllocateWorkItem`.
#[repr(C)]
pub struct IO_WORKITEM {
    _opaque: [u8; 0],
}
pub type PIO_WORKITEM = *mut IO_WORKITEM;

/// A work item routine; runs at PASSIVE_LEVEL in a system worker thread.
pub type IO_WORKITEM_ROUTINE = unsafe extern "system" fn(DeviceObject: *mut DEVICE_OBJECT, Context: *mut c_void);

/// `WORK_QUEUE_TYPE`.
pub type WORK_QUEUE_TYPE = i32;
pub const CriticalWorkQueue: WORK_QUEUE_TYPE = 0;
pub const DelayedWorkQueue: WORK_QUEUE_TYPE = 1;
pub const HyperCriticalWorkQueue: WORK_QUEUE_TYPE = 2;
pub const NormalWorkQueue: WORK_QUEUE_TYPE = 3;
