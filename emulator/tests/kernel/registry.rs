//! Registry routines: the driver's Parameters key.

use std::mem::offset_of;

use wsk_emulator::{Kernel, LeakKind, RegistryValue, Rule, with_irql};
use wsk_sys::*;

use crate::common::{attach, unicode};

fn open(path: &str, root: HANDLE) -> Result<HANDLE, NTSTATUS> {
    let mut name = unicode(path);
    let mut attributes =
        InitializeObjectAttributes(&raw mut name, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE, root, std::ptr::null_mut());
    let mut handle: HANDLE = std::ptr::null_mut();
    let status = unsafe { ZwOpenKey(&raw mut handle, KEY_READ, &raw mut attributes) };
    if NT_SUCCESS(status) { Ok(handle) } else { Err(status) }
}

/// Queries `name` into a buffer of `length` bytes: (status, result length, bytes).
fn query(key: HANDLE, name: &str, length: usize) -> (NTSTATUS, ULONG, Vec<u8>) {
    let mut value_name = unicode(name);
    let mut buffer = vec![0xEEu8; length.max(1)];
    let mut result = 0;
    let status = unsafe {
        ZwQueryValueKey(
            key,
            &raw mut value_name,
            KeyValuePartialInformation,
            buffer.as_mut_ptr().cast(),
            length as ULONG,
            &raw mut result,
        )
    };
    (status, result, buffer)
}

fn header(bytes: &[u8]) -> (u32, u32, u32) {
    let word = |i: usize| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap());
    (word(0), word(1), word(2))
}

const DATA: usize = offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data);

fn parameters_path(driver: &str) -> String {
    format!(r"\Registry\Machine\System\CurrentControlSet\Services\{driver}\Parameters")
}

#[test]
fn query_dword_and_string_parameters() {
    let driver = Kernel::builder().param_dword("Port", 7007).param_string("Address", "127.0.0.1").attach("echo");
    let key = open(&parameters_path("echo"), std::ptr::null_mut()).unwrap();
    assert_ne!(key as usize & (1 << 63), 0, "a kernel handle");

    let (status, length, bytes) = query(key, "Port", 64);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(length as usize, DATA + 4);
    assert_eq!(header(&bytes), (0, REG_DWORD, 4));
    assert_eq!(u32::from_le_bytes(bytes[DATA..DATA + 4].try_into().unwrap()), 7007);

    let (status, length, bytes) = query(key, "ADDRESS", 64);
    assert_eq!(status, STATUS_SUCCESS, "value names are case-insensitive");
    assert_eq!(length as usize, DATA + 20);
    assert_eq!(header(&bytes), (0, REG_SZ, 20));
    let text: Vec<u16> = bytes[DATA..DATA + 20].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    assert_eq!(String::from_utf16(&text).unwrap(), "127.0.0.1\0");

    assert_eq!(unsafe { ZwClose(key) }, STATUS_SUCCESS);
    driver.unload().assert_clean();
}

#[test]
fn short_buffers_and_missing_values() {
    let driver = Kernel::builder().param_dword("Port", 7007).attach("echo");
    let key =
        open(&parameters_path("ECHO").to_uppercase(), std::ptr::null_mut()).expect("key names are case-insensitive");
    let (status, length, _) = query(key, "Port", DATA - 1);
    assert_eq!((status, length as usize), (STATUS_BUFFER_TOO_SMALL, DATA + 4));
    let (status, length, bytes) = query(key, "Port", DATA);
    assert_eq!((status, length as usize), (STATUS_BUFFER_OVERFLOW, DATA + 4));
    assert_eq!(header(&bytes), (0, REG_DWORD, 4), "the fixed part is written");
    let (status, _, _) = query(key, "Missing", 64);
    assert_eq!(status, STATUS_OBJECT_NAME_NOT_FOUND);
    let mut value_name = unicode("Port");
    let mut result = 0;
    let mut buffer = [0u8; 64];
    let status =
        unsafe { ZwQueryValueKey(key, &raw mut value_name, 0, buffer.as_mut_ptr().cast(), 64, &raw mut result) };
    assert_eq!(status, STATUS_INVALID_PARAMETER, "only KeyValuePartialInformation is emulated");
    unsafe { ZwClose(key) };
    driver.unload().assert_clean();
}

#[test]
fn other_value_types_and_runtime_changes() {
    let driver = Kernel::builder()
        .param_qword("Big", 1 << 40)
        .param_binary("Blob", &[1, 2, 3])
        .param_multi_string("List", &["a", "b"])
        .attach("echo");
    let key = open(&parameters_path("echo"), std::ptr::null_mut()).unwrap();
    let (_, _, bytes) = query(key, "Big", 64);
    assert_eq!(header(&bytes), (0, REG_QWORD, 8));
    let (_, _, bytes) = query(key, "Blob", 64);
    assert_eq!(header(&bytes), (0, REG_BINARY, 3));
    assert_eq!(&bytes[DATA..DATA + 3], &[1, 2, 3]);
    let (_, _, bytes) = query(key, "List", 64);
    assert_eq!(header(&bytes), (0, REG_MULTI_SZ, 10), "a\\0b\\0\\0");
    driver.set_param("Port", RegistryValue::Dword(9));
    let (status, _, bytes) = query(key, "Port", 64);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(bytes[DATA], 9);
    unsafe { ZwClose(key) };
    driver.unload().assert_clean();
}

#[test]
fn keys_open_relative_to_the_service_key() {
    let driver = Kernel::builder().param_dword("Port", 1).attach("echo");
    let path = unsafe { &*driver.registry_path() };
    let path =
        String::from_utf16(unsafe { std::slice::from_raw_parts(path.Buffer, usize::from(path.Length) / 2) }).unwrap();
    assert_eq!(path, r"\Registry\Machine\System\CurrentControlSet\Services\echo");
    let service = open(&path, std::ptr::null_mut()).unwrap();
    let parameters = open("Parameters", service).unwrap();
    assert_eq!(query(parameters, "Port", 64).0, STATUS_SUCCESS);
    assert_eq!(query(service, "Port", 64).0, STATUS_OBJECT_NAME_NOT_FOUND, "the service key holds no parameters");
    assert_eq!(open("Nope", service), Err(STATUS_OBJECT_NAME_NOT_FOUND));
    unsafe {
        ZwClose(parameters);
        ZwClose(service);
    }
    driver.unload().assert_clean();
}

#[test]
fn parameters_key_exists_only_with_values() {
    let driver = attach();
    assert_eq!(open(&parameters_path("test"), std::ptr::null_mut()), Err(STATUS_OBJECT_NAME_NOT_FOUND));
    assert_eq!(open(r"\Registry\Machine\Software", std::ptr::null_mut()), Err(STATUS_OBJECT_NAME_NOT_FOUND));
    driver.unload().assert_clean();
}

#[test]
fn handle_closed_twice_is_reported() {
    let driver = Kernel::builder().param_dword("Port", 1).attach("echo");
    let key = open(&parameters_path("echo"), std::ptr::null_mut()).unwrap();
    unsafe {
        assert_eq!(ZwClose(key), STATUS_SUCCESS);
        assert_eq!(ZwClose(key), STATUS_INVALID_HANDLE);
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::InvalidHandle);
    assert_eq!(first.code, 0x93);
}

#[test]
fn handle_leaked_at_unload() {
    let driver = Kernel::builder().param_dword("Port", 1).attach("echo");
    let key = open(&parameters_path("echo"), std::ptr::null_mut()).unwrap();
    let report = driver.unload();
    report.assert_first(Rule::HandleLeak);
    assert_eq!(report.leaks_of(LeakKind::Handle).next().unwrap().address, key as usize);
}

#[test]
fn registry_at_dispatch_is_reported() {
    let driver = Kernel::builder().param_dword("Port", 1).attach("echo");
    let key = with_irql(DISPATCH_LEVEL, || open(&parameters_path("echo"), std::ptr::null_mut())).unwrap();
    unsafe { ZwClose(key) };
    driver.unload().assert_first(Rule::IrqlTooHigh);
}
