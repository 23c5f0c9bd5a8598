//! Object attributes and registry value information, for reading a driver's `Parameters` key.
//!
//! Binds `OBJECT_ATTRIBUTES` and its `OBJ_*` flags (`ntdef.h`) and the registry-value section of
//! `wdm.h` (`KEY_VALUE_PARTIAL_INFORMATION`, `KEY_VALUE_INFORMATION_CLASS`, `REG_*` types,
//! access masks) under their C names.

use core::ffi::c_void;

use crate::basic::*;

/// `OBJECT_ATTRIBUTES`. Build with [`InitializeObjectAttributes`].
#[repr(C)]
#[derive(Debug)]
pub struct OBJECT_ATTRIBUTES {
    pub Length: ULONG,
    pub RootDirectory: HANDLE,
    pub ObjectName: *mut UNICODE_STRING,
    pub Attributes: ULONG,
    pub SecurityDescriptor: PVOID,
    pub SecurityQualityOfService: PVOID,
}

/// `KEY_VALUE_PARTIAL_INFORMATION`; `Data` is variable-length (declared with one byte).
#[repr(C)]
#[derive(Debug)]
pub struct KEY_VALUE_PARTIAL_INFORMATION {
    pub TitleIndex: ULONG,
    pub Type: ULONG,
    pub DataLength: ULONG,
    pub Data: [UCHAR; 1],
}

pub const OBJ_CASE_INSENSITIVE: ULONG = 0x0000_0040;
pub const OBJ_KERNEL_HANDLE: ULONG = 0x0000_0200;
pub const KEY_QUERY_VALUE: ACCESS_MASK = 0x0001;
pub const KEY_READ: ACCESS_MASK = 0x0002_0019;

/// `KEY_VALUE_INFORMATION_CLASS::KeyValuePartialInformation`.
pub const KeyValuePartialInformation: i32 = 2;

pub const REG_NONE: ULONG = 0;
pub const REG_SZ: ULONG = 1;
pub const REG_BINARY: ULONG = 3;
pub const REG_DWORD: ULONG = 4;
pub const REG_MULTI_SZ: ULONG = 7;
pub const REG_QWORD: ULONG = 11;

/// `InitializeObjectAttributes`.
pub fn InitializeObjectAttributes(
    name: *mut UNICODE_STRING,
    attributes: ULONG,
    root: HANDLE,
    security_descriptor: *mut c_void,
) -> OBJECT_ATTRIBUTES {
    OBJECT_ATTRIBUTES {
        Length: size_of::<OBJECT_ATTRIBUTES>() as ULONG,
        RootDirectory: root,
        ObjectName: name,
        Attributes: attributes,
        SecurityDescriptor: security_descriptor,
        SecurityQualityOfService: core::ptr::null_mut(),
    }
}
