//! WskGetAddressInfo / WskFreeAddressInfo (WskGetNameInfo: `name_info`).

use std::net::SocketAddr;
use std::ptr;

use wsk_emulator::{LeakKind, Rule};
use wsk_sys::*;

use crate::support::*;

fn unicode(text: &str) -> (Vec<u16>, UNICODE_STRING) {
    let mut units: Vec<u16> = text.encode_utf16().collect();
    let string = UNICODE_STRING {
        Length: (units.len() * 2) as u16,
        MaximumLength: (units.len() * 2) as u16,
        Buffer: units.as_mut_ptr(),
    };
    (units, string)
}

/// Calls WskGetAddressInfo; returns the completion status and the chain.
fn get(
    client: &Client,
    node: Option<&str>,
    service: Option<&str>,
    hints: Option<ADDRINFOEXW>,
) -> (NTSTATUS, *mut ADDRINFOEXW) {
    let mut node = node.map(unicode);
    let mut service = service.map(unicode);
    let mut hints = hints;
    let mut result: *mut ADDRINFOEXW = ptr::null_mut();
    let req = Req::new();
    let returned = unsafe {
        (client.dispatch().WskGetAddressInfo.unwrap())(
            client.provider.Client,
            node.as_mut().map_or(ptr::null_mut(), |(_, s)| s),
            service.as_mut().map_or(ptr::null_mut(), |(_, s)| s),
            NS_ALL,
            ptr::null_mut(),
            hints.as_mut().map_or(ptr::null_mut(), |h| h),
            &raw mut result,
            ptr::null_mut(),
            ptr::null_mut(),
            req.irp,
        )
    };
    let done = req.wait_returned(returned);
    (done.status, result)
}

fn hints(family: i32, flags: i32) -> ADDRINFOEXW {
    ADDRINFOEXW {
        ai_flags: flags,
        ai_family: family,
        ai_socktype: i32::from(SOCK_STREAM),
        ai_protocol: IPPROTO_TCP as i32,
        ai_addrlen: 0,
        ai_canonname: ptr::null_mut(),
        ai_addr: ptr::null_mut(),
        ai_blob: ptr::null_mut(),
        ai_bufferlen: 0,
        ai_provider: ptr::null_mut(),
        ai_next: ptr::null_mut(),
    }
}

/// The addresses of a chain.
fn addresses(mut info: *mut ADDRINFOEXW) -> Vec<(i32, SocketAddr)> {
    let mut out = Vec::new();
    while !info.is_null() {
        let entry = unsafe { &*info };
        let mut storage = SOCKADDR_STORAGE::zeroed();
        unsafe { ptr::copy_nonoverlapping(entry.ai_addr.cast::<u8>(), (&raw mut storage).cast(), entry.ai_addrlen) };
        assert_eq!(entry.ai_addrlen, if entry.ai_family == i32::from(AF_INET) { 16 } else { 28 });
        out.push((entry.ai_family, address(&storage).unwrap()));
        info = entry.ai_next;
    }
    out
}

fn free(client: &Client, info: *mut ADDRINFOEXW) {
    unsafe { (client.dispatch().WskFreeAddressInfo.unwrap())(client.provider.Client, info) };
}

#[test]
fn numeric_hosts_and_services() {
    clean_session(|client| {
        let (status, info) = get(client, Some("127.0.0.1"), Some("8080"), None);
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(addresses(info), vec![(i32::from(AF_INET), v4(8080))]);
        assert_eq!(unsafe { (*info).ai_socktype }, 0);
        free(client, info);

        let (status, info) = get(client, Some("::1"), Some("http"), Some(hints(0, AI_NUMERICHOST)));
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(addresses(info), vec![(i32::from(AF_INET6), v6(80))]);
        assert_eq!(unsafe { ((*info).ai_socktype, (*info).ai_protocol) }, (i32::from(SOCK_STREAM), IPPROTO_TCP as i32));
        free(client, info);

        // No host: the loopback addresses, or the wildcard ones with AI_PASSIVE.
        let (status, info) = get(client, None, Some("7"), Some(hints(i32::from(AF_INET), AI_PASSIVE)));
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(addresses(info), vec![(i32::from(AF_INET), "0.0.0.0:7".parse().unwrap())]);
        free(client, info);
    });
}

#[test]
fn localhost_resolves_through_the_host_resolver() {
    clean_session(|client| {
        let (status, info) = get(client, Some("localhost"), Some("443"), Some(hints(i32::from(AF_INET), AI_CANONNAME)));
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(addresses(info), vec![(i32::from(AF_INET), v4(443))]);
        let name = unsafe { (*info).ai_canonname };
        assert!(!name.is_null());
        free(client, info);
    });
}

#[test]
fn resolution_failures() {
    clean_session(|client| {
        assert_eq!(get(client, None, None, None).0, STATUS_INVALID_PARAMETER);
        assert_eq!(get(client, Some("localhost"), None, Some(hints(0, AI_NUMERICHOST))).0, STATUS_NOT_FOUND);
        assert_eq!(get(client, Some("127.0.0.1"), Some("no-such-service"), None).0, STATUS_NOT_FOUND);
        assert_eq!(get(client, Some("127.0.0.1"), None, Some(hints(i32::from(AF_INET6), 0))).0, STATUS_NOT_FOUND);
        assert_eq!(get(client, Some("127.0.0.1"), None, Some(hints(99, 0))).0, STATUS_INVALID_PARAMETER);
        // A null result pointer.
        let req = Req::new();
        let (_units, mut node) = unicode("127.0.0.1");
        unsafe {
            (client.dispatch().WskGetAddressInfo.unwrap())(
                client.provider.Client,
                &raw mut node,
                ptr::null_mut(),
                NS_ALL,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                req.irp,
            )
        };
        assert_eq!(req.wait().status, STATUS_INVALID_PARAMETER);
    });
}

#[test]
fn address_info_never_freed_is_a_leak() {
    let report = session_report(|client| {
        let (status, _leaked) = get(client, Some("127.0.0.1"), None, None);
        assert_eq!(status, STATUS_SUCCESS);
    });
    report.assert_first(Rule::WskAddressInfoLeak);
    report.assert_leaks(LeakKind::WskAddressInfo, 1);
}

#[test]
fn freeing_address_info_twice_is_reported() {
    let report = broken_session(|client| {
        let (_, info) = get(client, Some("127.0.0.1"), None, None);
        free(client, info);
        free(client, info);
    });
    report.assert_first(Rule::WskBadAddressInfo);
}
