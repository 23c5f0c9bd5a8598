//! Reading a driver's `Parameters` key (`<RegistryPath>\Parameters`).

use core::ffi::c_void;

use wsk_sys::{
    HANDLE, KEY_READ, KEY_VALUE_PARTIAL_INFORMATION, KeyValuePartialInformation, OBJ_CASE_INSENSITIVE,
    OBJ_KERNEL_HANDLE, PASSIVE_LEVEL, REG_DWORD, REG_SZ, STATUS_OBJECT_NAME_NOT_FOUND, UNICODE_STRING,
};

use crate::error::{Error, Result, check, require_irql};

/// An open `Parameters` key. Closed on drop. PASSIVE_LEVEL throughout.
pub struct Parameters {
    handle: HANDLE,
}

const SUFFIX: &[u16] = wsk_sys::utf16!("\\Parameters");

impl Parameters {
    /// Opens `<registry_path>\Parameters`. `Ok(None)` when the key does not exist.
    ///
    /// # Safety
    /// `registry_path` must point to a valid counted string (DriverEntry's argument).
    ///
    /// IRQL == PASSIVE_LEVEL (checked).
    pub unsafe fn open(registry_path: *const UNICODE_STRING) -> Result<Option<Parameters>> {
        require_irql(PASSIVE_LEVEL)?;
        // SAFETY: guaranteed by the caller.
        let path = unsafe { &*registry_path };
        let base_len = usize::from(path.Length) / 2;
        let mut name = [0u16; 512];
        if base_len + SUFFIX.len() > name.len() {
            return Err(Error::InvalidInput("registry path too long"));
        }
        if base_len > 0 {
            // SAFETY: `Buffer` holds `Length` bytes of UTF-16.
            let base = unsafe { core::slice::from_raw_parts(path.Buffer, base_len) };
            name[..base_len].copy_from_slice(base);
        }
        name[base_len..base_len + SUFFIX.len()].copy_from_slice(SUFFIX);
        let bytes = ((base_len + SUFFIX.len()) * 2) as u16;
        let mut key_name = UNICODE_STRING { Length: bytes, MaximumLength: bytes, Buffer: name.as_mut_ptr() };
        let mut attributes = wsk_sys::InitializeObjectAttributes(
            &raw mut key_name,
            OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        );
        let mut handle: HANDLE = core::ptr::null_mut();
        // SAFETY: PASSIVE_LEVEL; all pointers are valid for the call.
        let status = unsafe { wsk_sys::ZwOpenKey(&raw mut handle, KEY_READ, &raw mut attributes) };
        if status == STATUS_OBJECT_NAME_NOT_FOUND {
            return Ok(None);
        }
        check(status)?;
        Ok(Some(Parameters { handle }))
    }

    fn query(&self, value: &str, out: &mut [u64; 66]) -> Result<Option<(u32, usize)>> {
        let mut wide = [0u16; 64];
        if value.len() > wide.len() || !value.is_ascii() {
            return Err(Error::InvalidInput("value name must be ASCII, at most 64 characters"));
        }
        for (w, b) in wide.iter_mut().zip(value.bytes()) {
            *w = u16::from(b);
        }
        let bytes = (value.len() * 2) as u16;
        let mut name = UNICODE_STRING { Length: bytes, MaximumLength: bytes, Buffer: wide.as_mut_ptr() };
        let mut returned = 0u32;
        // SAFETY: the handle is open; `out` is a writable, 8-byte aligned buffer of its size.
        let status = unsafe {
            wsk_sys::ZwQueryValueKey(
                self.handle,
                &raw mut name,
                KeyValuePartialInformation,
                out.as_mut_ptr().cast::<c_void>(),
                size_of_val(out) as u32,
                &raw mut returned,
            )
        };
        if status == STATUS_OBJECT_NAME_NOT_FOUND {
            return Ok(None);
        }
        check(status)?;
        // SAFETY: on success the buffer starts with a KEY_VALUE_PARTIAL_INFORMATION header.
        let info = unsafe { &*out.as_ptr().cast::<KEY_VALUE_PARTIAL_INFORMATION>() };
        let data_len = (info.DataLength as usize).min(size_of_val(out) - 12);
        Ok(Some((info.Type, data_len)))
    }

    /// Reads a `REG_DWORD` value; `Ok(None)` when absent.
    ///
    /// IRQL == PASSIVE_LEVEL.
    pub fn dword(&self, value: &str) -> Result<Option<u32>> {
        let mut out = [0u64; 66];
        match self.query(value, &mut out)? {
            Some((REG_DWORD, len)) if len >= 4 => {
                let data = data_bytes(&out);
                Ok(Some(u32::from_le_bytes([data[0], data[1], data[2], data[3]])))
            }
            Some(_) => Err(Error::InvalidInput("registry value is not a REG_DWORD")),
            None => Ok(None),
        }
    }

    /// Reads a `REG_SZ` value of ASCII text into `buf`; returns the text. `Ok(None)` when
    /// absent.
    ///
    /// IRQL == PASSIVE_LEVEL.
    pub fn string<'b>(&self, value: &str, buf: &'b mut [u8]) -> Result<Option<&'b str>> {
        let mut out = [0u64; 66];
        match self.query(value, &mut out)? {
            Some((REG_SZ, len)) => {
                let data = data_bytes(&out);
                let mut n = 0;
                for pair in data[..len].chunks_exact(2) {
                    let c = u16::from_le_bytes([pair[0], pair[1]]);
                    if c == 0 {
                        break;
                    }
                    let byte =
                        u8::try_from(c).ok().filter(u8::is_ascii).ok_or(Error::InvalidInput("non-ASCII text"))?;
                    *buf.get_mut(n).ok_or(Error::InvalidInput("registry string too long"))? = byte;
                    n += 1;
                }
                core::str::from_utf8(&buf[..n]).map(Some).map_err(|_| Error::InvalidInput("non-ASCII text"))
            }
            Some(_) => Err(Error::InvalidInput("registry value is not a REG_SZ")),
            None => Ok(None),
        }
    }
}

fn data_bytes(out: &[u64; 66]) -> &[u8] {
    // SAFETY: viewing the u64 buffer as bytes; the data starts at offset 12 of the header.
    let bytes = unsafe { core::slice::from_raw_parts(out.as_ptr().cast::<u8>(), size_of_val(out)) };
    &bytes[12..]
}

impl Drop for Parameters {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by `open` and is closed once.
        unsafe { wsk_sys::ZwClose(self.handle) };
    }
}

/// The address a listening driver binds: `Port` (REG_DWORD, default `default_port`) and
/// `Address` (REG_SZ, an IPv4 or IPv6 literal, default 127.0.0.1) from the service key's
/// `Parameters`; the defaults when the key does not exist.
///
/// # Safety
/// `registry_path` must point to a valid counted string (DriverEntry's argument).
///
/// IRQL == PASSIVE_LEVEL (checked).
pub unsafe fn listen_address(registry_path: *const UNICODE_STRING, default_port: u16) -> Result<core::net::SocketAddr> {
    let mut port = default_port;
    let mut ip = core::net::IpAddr::V4(core::net::Ipv4Addr::LOCALHOST);
    // SAFETY: forwarded contract.
    if let Some(params) = unsafe { Parameters::open(registry_path)? } {
        if let Some(p) = params.dword("Port")? {
            port = u16::try_from(p).map_err(|_| Error::InvalidInput("Port must be below 65536"))?;
        }
        let mut text = [0u8; 64];
        if let Some(a) = params.string("Address", &mut text)? {
            ip = a.parse().map_err(|_| Error::InvalidInput("Address is not an IP address"))?;
        }
    }
    Ok(core::net::SocketAddr::new(ip, port))
}
