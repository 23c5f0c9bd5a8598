//! The registry, as far as drivers read it: the driver's service key and its `Parameters`
//! subkey, with values the host program sets (`ZwOpenKey`, `ZwQueryValueKey` with
//! `KeyValuePartialInformation`, `ZwClose`).
//!
//! Only `\Registry\Machine\System\CurrentControlSet\Services\<name>` and its `Parameters`
//! subkey exist (names compare case-insensitively, as the registry does); `Parameters` exists
//! when the host set at least one value. Handles are tracked: closing one twice or leaking one
//! past unload is reported.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wsk_sys::{
    ACCESS_MASK, HANDLE, KEY_VALUE_PARTIAL_INFORMATION, KeyValuePartialInformation, NTSTATUS, OBJECT_ATTRIBUTES,
    PASSIVE_LEVEL, PVOID, REG_BINARY, REG_DWORD, REG_MULTI_SZ, REG_QWORD, REG_SZ, STATUS_BUFFER_OVERFLOW,
    STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER, STATUS_OBJECT_NAME_NOT_FOUND,
    STATUS_SUCCESS, ULONG, UNICODE_STRING,
};

use crate::irql;
use crate::kernel;
use crate::rtl::unicode_to_string;
use crate::site::Site;
use crate::sync::lock;
use crate::verifier::{Leak, LeakKind, Rule, bugcheck};

/// Where service keys live.
pub const SERVICES_KEY: &str = r"\Registry\Machine\System\CurrentControlSet\Services";

/// A registry value the host sets for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryValue {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_QWORD`.
    Qword(u64),
    /// `REG_SZ`.
    String(String),
    /// `REG_MULTI_SZ`.
    MultiString(Vec<String>),
    /// `REG_BINARY`.
    Binary(Vec<u8>),
}

impl RegistryValue {
    fn value_type(&self) -> ULONG {
        match self {
            RegistryValue::Dword(_) => REG_DWORD,
            RegistryValue::Qword(_) => REG_QWORD,
            RegistryValue::String(_) => REG_SZ,
            RegistryValue::MultiString(_) => REG_MULTI_SZ,
            RegistryValue::Binary(_) => REG_BINARY,
        }
    }

    /// The value's data as the registry stores it (strings UTF-16LE, NUL-terminated).
    fn data(&self) -> Vec<u8> {
        fn utf16z(text: &str, out: &mut Vec<u8>) {
            for unit in text.encode_utf16().chain(std::iter::once(0)) {
                out.extend_from_slice(&unit.to_le_bytes());
            }
        }
        match self {
            RegistryValue::Dword(value) => value.to_le_bytes().to_vec(),
            RegistryValue::Qword(value) => value.to_le_bytes().to_vec(),
            RegistryValue::String(text) => {
                let mut data = Vec::new();
                utf16z(text, &mut data);
                data
            }
            RegistryValue::MultiString(texts) => {
                let mut data = Vec::new();
                for text in texts {
                    utf16z(text, &mut data);
                }
                data.extend_from_slice(&[0, 0]);
                data
            }
            RegistryValue::Binary(bytes) => bytes.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Service,
    Parameters,
}

struct OpenKey {
    key: Key,
    session: u64,
    site: Option<Arc<Site>>,
}

struct Registry {
    /// Lower-case path of the service key.
    service_path: String,
    /// Values of the `Parameters` key by lower-case name.
    parameters: BTreeMap<String, RegistryValue>,
    handles: BTreeMap<usize, OpenKey>,
    next_handle: usize,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    service_path: String::new(),
    parameters: BTreeMap::new(),
    handles: BTreeMap::new(),
    next_handle: 1,
});

/// Kernel handles have the top bit set.
const KERNEL_HANDLE_BIT: usize = 1 << (usize::BITS - 1);

/// The registry path of a driver's service key.
pub fn service_key_path(driver: &str) -> String {
    format!(r"{SERVICES_KEY}\{driver}")
}

/// Sets up the registry for a newly loaded driver.
pub(crate) fn configure(driver: &str, parameters: &BTreeMap<String, RegistryValue>) {
    let mut registry = lock(&REGISTRY);
    registry.service_path = normalize(&service_key_path(driver));
    registry.parameters = parameters.iter().map(|(name, value)| (name.to_lowercase(), value.clone())).collect();
}

/// Sets (or replaces) a `Parameters` value while the driver is loaded.
pub(crate) fn set_parameter(name: &str, value: RegistryValue) {
    lock(&REGISTRY).parameters.insert(name.to_lowercase(), value);
}

/// Open handles of `session`, as leaks.
pub(crate) fn leaks(session: u64) -> Vec<Leak> {
    let registry = lock(&REGISTRY);
    registry
        .handles
        .iter()
        .filter(|(_, open)| open.session == session)
        .map(|(&handle, open)| {
            let detail = match open.key {
                Key::Service => "service key",
                Key::Parameters => "Parameters key",
            };
            Leak::new(LeakKind::Handle, 0, 0, handle, detail.to_owned()).with_site(open.site.clone())
        })
        .collect()
}

/// Closes every handle of `session` (after unload).
pub(crate) fn teardown(session: u64) {
    lock(&REGISTRY).handles.retain(|_, open| open.session != session);
}

fn normalize(path: &str) -> String {
    path.trim_end_matches('\\').to_lowercase()
}

/// `ZwOpenKey`: opens the driver's service key or its `Parameters` subkey (absolute, or
/// relative to an open key in `RootDirectory`). IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// `KeyHandle` must be writable and `ObjectAttributes` point to valid attributes.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwOpenKey(
    KeyHandle: *mut HANDLE,
    _DesiredAccess: ACCESS_MASK,
    ObjectAttributes: *mut OBJECT_ATTRIBUTES,
) -> NTSTATUS {
    irql::check_max("ZwOpenKey", PASSIVE_LEVEL);
    if KeyHandle.is_null() || ObjectAttributes.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller guarantees valid attributes.
    let attributes = unsafe { &*ObjectAttributes };
    if attributes.Length as usize != size_of::<OBJECT_ATTRIBUTES>() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the attributes' name is null or a valid `UNICODE_STRING`.
    let Some(name) = (unsafe { unicode_to_string(attributes.ObjectName) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    let mut registry = lock(&REGISTRY);
    let path = if attributes.RootDirectory.is_null() {
        normalize(&name)
    } else {
        let Some(root) = registry.handles.get(&(attributes.RootDirectory as usize)) else {
            drop(registry);
            bugcheck(
                Rule::InvalidHandle,
                format!("ZwOpenKey relative to handle {:p}, which is not open", attributes.RootDirectory),
            );
            return STATUS_INVALID_HANDLE;
        };
        let root_path = match root.key {
            Key::Service => registry.service_path.clone(),
            Key::Parameters => format!(r"{}\parameters", registry.service_path),
        };
        normalize(&format!(r"{root_path}\{name}"))
    };
    let key = if path == registry.service_path {
        Key::Service
    } else if path == format!(r"{}\parameters", registry.service_path) && !registry.parameters.is_empty() {
        Key::Parameters
    } else {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    };
    let handle = KERNEL_HANDLE_BIT | (registry.next_handle << 2);
    registry.next_handle += 1;
    let site = kernel::capture_sites().then(|| Arc::new(Site::capture()));
    registry.handles.insert(handle, OpenKey { key, session: kernel::session(), site });
    // SAFETY: the caller guarantees `KeyHandle` is writable.
    unsafe { KeyHandle.write(handle as HANDLE) };
    STATUS_SUCCESS
}

/// Size of `KEY_VALUE_PARTIAL_INFORMATION` up to `Data`.
const PARTIAL_HEADER: usize = std::mem::offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data);

/// `ZwQueryValueKey` with `KeyValuePartialInformation` (other classes return
/// `STATUS_INVALID_PARAMETER`): `STATUS_OBJECT_NAME_NOT_FOUND` for a missing value,
/// `STATUS_BUFFER_TOO_SMALL` when not even the header fits, `STATUS_BUFFER_OVERFLOW` (header
/// written) when the data does not fit; `*ResultLength` is always the size needed.
/// IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// `ValueName` must be a valid `UNICODE_STRING`, `KeyValueInformation` writable for `Length`
/// bytes and `ResultLength` writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwQueryValueKey(
    KeyHandle: HANDLE,
    ValueName: *mut UNICODE_STRING,
    KeyValueInformationClass: i32,
    KeyValueInformation: PVOID,
    Length: ULONG,
    ResultLength: *mut ULONG,
) -> NTSTATUS {
    irql::check_max("ZwQueryValueKey", PASSIVE_LEVEL);
    let value = {
        let registry = lock(&REGISTRY);
        let Some(open) = registry.handles.get(&(KeyHandle as usize)) else {
            drop(registry);
            bugcheck(Rule::InvalidHandle, format!("ZwQueryValueKey on handle {KeyHandle:p}, which is not open"));
            return STATUS_INVALID_HANDLE;
        };
        if KeyValueInformationClass != KeyValuePartialInformation || ResultLength.is_null() {
            return STATUS_INVALID_PARAMETER;
        }
        // SAFETY: the caller guarantees a valid `UNICODE_STRING`.
        let Some(name) = (unsafe { unicode_to_string(ValueName) }) else {
            return STATUS_INVALID_PARAMETER;
        };
        match open.key {
            Key::Service => None,
            Key::Parameters => registry.parameters.get(&name.to_lowercase()).cloned(),
        }
    };
    let Some(value) = value else { return STATUS_OBJECT_NAME_NOT_FOUND };
    let data = value.data();
    let required = PARTIAL_HEADER + data.len();
    // SAFETY: the caller guarantees `ResultLength` is writable.
    unsafe { ResultLength.write(required as ULONG) };
    let length = Length as usize;
    if length < PARTIAL_HEADER || KeyValueInformation.is_null() {
        return STATUS_BUFFER_TOO_SMALL;
    }
    let out = KeyValueInformation.cast::<u8>();
    let header = [0u32, value.value_type(), data.len() as u32];
    for (index, field) in header.iter().enumerate() {
        // SAFETY: the header (12 bytes) fits in the caller's `Length` writable bytes.
        unsafe { out.wrapping_add(index * 4).cast::<u32>().write_unaligned(*field) };
    }
    if length < required {
        return STATUS_BUFFER_OVERFLOW;
    }
    // SAFETY: `required <= Length` writable bytes at `out`; `data` is a separate host buffer.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), out.wrapping_add(PARTIAL_HEADER), data.len()) };
    STATUS_SUCCESS
}

/// `ZwClose` (registry key handles). IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// `Handle` must be a handle the caller opened.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwClose(Handle: HANDLE) -> NTSTATUS {
    irql::check_max("ZwClose", PASSIVE_LEVEL);
    if lock(&REGISTRY).handles.remove(&(Handle as usize)).is_some() {
        STATUS_SUCCESS
    } else {
        bugcheck(Rule::InvalidHandle, format!("ZwClose({Handle:p}): the handle is not open"));
        STATUS_INVALID_HANDLE
    }
}
