//! The provider dispatch table. Socket routines are not implemented yet: each completes the
//! client's IRP with `STATUS_NOT_IMPLEMENTED`, as a provider would, and returns that status.

use std::ffi::c_void;

use wsk_sys::{
    ADDRESS_FAMILY, ADDRINFOEXW, DISPATCH_LEVEL, GUID, IRP, MAKE_WSK_VERSION, NTSTATUS, PEPROCESS, PETHREAD,
    PSECURITY_DESCRIPTOR, PVOID, PWSK_CLIENT, SIZE_T, SOCKADDR, STATUS_NOT_IMPLEMENTED, ULONG, UNICODE_STRING, USHORT,
    WSK_CLIENT_CONNECTION_DISPATCH, WSK_PROVIDER_DISPATCH,
};

use crate::irp::provider;
use crate::irql;

/// The provider-level dispatch table handed out by `WskCaptureProviderNPI`.
pub(crate) static PROVIDER_DISPATCH: WSK_PROVIDER_DISPATCH = WSK_PROVIDER_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskSocket: Some(wsk_socket),
    WskSocketConnect: Some(wsk_socket_connect),
    WskControlClient: Some(wsk_control_client),
    WskGetAddressInfo: Some(wsk_get_address_info),
    WskFreeAddressInfo: Some(wsk_free_address_info),
    WskGetNameInfo: Some(wsk_get_name_info),
};

/// Takes `irp` as a provider and completes it with `STATUS_NOT_IMPLEMENTED`.
fn not_implemented(routine: &str, irp: *mut IRP) -> NTSTATUS {
    irql::check_max(routine, DISPATCH_LEVEL);
    if irp.is_null() {
        return STATUS_NOT_IMPLEMENTED;
    }
    // SAFETY: the client passed a live IRP to the provider routine.
    if let Err(status) = unsafe { provider::accept(irp) } {
        return status;
    }
    // SAFETY: the provider accepted the IRP above and does not touch it afterwards.
    unsafe { provider::complete(irp, STATUS_NOT_IMPLEMENTED, 0) };
    STATUS_NOT_IMPLEMENTED
}

unsafe extern "system" fn wsk_socket(
    _client: PWSK_CLIENT,
    _family: ADDRESS_FAMILY,
    _socket_type: USHORT,
    _protocol: ULONG,
    _flags: ULONG,
    _socket_context: PVOID,
    _dispatch: *const c_void,
    _owning_process: PEPROCESS,
    _owning_thread: PETHREAD,
    _security_descriptor: PSECURITY_DESCRIPTOR,
    irp: *mut IRP,
) -> NTSTATUS {
    not_implemented("WskSocket", irp)
}

unsafe extern "system" fn wsk_socket_connect(
    _client: PWSK_CLIENT,
    _socket_type: USHORT,
    _protocol: ULONG,
    _local: *mut SOCKADDR,
    _remote: *mut SOCKADDR,
    _flags: ULONG,
    _socket_context: PVOID,
    _dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    _owning_process: PEPROCESS,
    _owning_thread: PETHREAD,
    _security_descriptor: PSECURITY_DESCRIPTOR,
    irp: *mut IRP,
) -> NTSTATUS {
    not_implemented("WskSocketConnect", irp)
}

unsafe extern "system" fn wsk_control_client(
    _client: PWSK_CLIENT,
    _control_code: ULONG,
    _input_size: SIZE_T,
    _input: PVOID,
    _output_size: SIZE_T,
    _output: PVOID,
    _output_returned: *mut SIZE_T,
    irp: *mut IRP,
) -> NTSTATUS {
    not_implemented("WskControlClient", irp)
}

unsafe extern "system" fn wsk_get_address_info(
    _client: PWSK_CLIENT,
    _node: *mut UNICODE_STRING,
    _service: *mut UNICODE_STRING,
    _namespace: ULONG,
    _provider: *mut GUID,
    _hints: *mut ADDRINFOEXW,
    _result: *mut *mut ADDRINFOEXW,
    _owning_process: PEPROCESS,
    _owning_thread: PETHREAD,
    irp: *mut IRP,
) -> NTSTATUS {
    not_implemented("WskGetAddressInfo", irp)
}

unsafe extern "system" fn wsk_free_address_info(_client: PWSK_CLIENT, _info: *mut ADDRINFOEXW) {}

unsafe extern "system" fn wsk_get_name_info(
    _client: PWSK_CLIENT,
    _address: *mut SOCKADDR,
    _address_length: ULONG,
    _node: *mut UNICODE_STRING,
    _service: *mut UNICODE_STRING,
    _flags: ULONG,
    _owning_process: PEPROCESS,
    _owning_thread: PETHREAD,
    irp: *mut IRP,
) -> NTSTATUS {
    not_implemented("WskGetNameInfo", irp)
}
