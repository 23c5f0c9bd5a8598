//! WskGetNameInfo: address to host and service names, its flags, and what it refuses.

use std::net::SocketAddr;
use std::ptr;

use wsk_emulator::{Rule, with_irql};
use wsk_sys::*;

use crate::support::*;

/// A caller's buffer for one name: `units` characters of room.
struct Name {
    units: Vec<u16>,
    string: UNICODE_STRING,
}

impl Name {
    fn with_room(units: usize) -> Name {
        let mut units = vec![0xffffu16; units];
        let string = UNICODE_STRING { Length: 0, MaximumLength: (units.len() * 2) as u16, Buffer: units.as_mut_ptr() };
        Name { units, string }
    }

    /// The text the provider wrote (`Length` bytes), checking the terminating NUL after it.
    fn text(&self) -> String {
        let len = usize::from(self.string.Length) / 2;
        assert_eq!(self.units[len], 0, "the name is NUL-terminated");
        String::from_utf16(&self.units[..len]).unwrap()
    }
}

/// Calls WskGetNameInfo with `length` bytes of `address`; returns the completion status.
fn call(
    client: &Client,
    address: SocketAddr,
    length: u32,
    host: Option<&mut Name>,
    service: Option<&mut Name>,
    flags: u32,
) -> NTSTATUS {
    let mut storage = storage(address);
    let req = Req::new();
    let returned = unsafe {
        (client.dispatch().WskGetNameInfo.unwrap())(
            client.provider.Client,
            sa(&mut storage),
            length,
            host.map_or(ptr::null_mut(), |n| &raw mut n.string),
            service.map_or(ptr::null_mut(), |n| &raw mut n.string),
            flags,
            ptr::null_mut(),
            ptr::null_mut(),
            req.irp,
        )
    };
    let done = req.wait_returned(returned);
    assert_ne!(returned, STATUS_PENDING, "completes inside the call");
    done.status
}

fn names(client: &Client, address: SocketAddr, flags: u32) -> Result<(String, String), NTSTATUS> {
    let length = if address.is_ipv4() { 16 } else { 28 };
    let (mut host, mut service) = (Name::with_room(NI_MAXHOST), Name::with_room(NI_MAXSERV));
    match call(client, address, length, Some(&mut host), Some(&mut service), flags) {
        STATUS_SUCCESS => Ok((host.text(), service.text())),
        status => Err(status),
    }
}

/// The first name the hosts file gives `ip`, as the provider documents.
fn hosts_name(ip: &str) -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|line| {
        let mut words = line.split('#').next().unwrap_or_default().split_whitespace();
        (words.next()?.parse::<std::net::IpAddr>().ok()? == ip.parse::<std::net::IpAddr>().unwrap())
            .then(|| words.next().map(str::to_owned))
            .flatten()
    })
}

#[test]
fn loopback_by_name_and_numerically() {
    clean_session(|client| {
        let expected = hosts_name("127.0.0.1").unwrap_or_else(|| "127.0.0.1".to_owned());
        assert_eq!(names(client, v4(80), 0), Ok((expected, "http".to_owned())));
        assert_eq!(names(client, v4(80), NI_NUMERICHOST), Ok(("127.0.0.1".to_owned(), "http".to_owned())));
        assert_eq!(
            names(client, v4(80), NI_NUMERICSERV | NI_DGRAM),
            Ok((names(client, v4(1), 0).unwrap().0, "80".to_owned()))
        );
        assert_eq!(names(client, v6(443), NI_NUMERICHOST), Ok(("::1".to_owned(), "https".to_owned())));
        // A port without a service name: its number.
        assert_eq!(names(client, v4(7007), NI_NUMERICHOST).unwrap().1, "7007");
    });
}

#[test]
fn an_address_without_a_name() {
    clean_session(|client| {
        // TEST-NET-1 (RFC 5737): in no hosts file.
        let nameless: SocketAddr = "192.0.2.1:22".parse().unwrap();
        assert_eq!(names(client, nameless, 0), Ok(("192.0.2.1".to_owned(), "ssh".to_owned())));
        assert_eq!(names(client, nameless, NI_NAMEREQD), Err(STATUS_NOT_FOUND));
        // NI_NUMERICHOST answers before the name is required.
        assert_eq!(names(client, nameless, NI_NAMEREQD | NI_NUMERICHOST).unwrap().0, "192.0.2.1");
    });
}

#[test]
fn only_the_names_asked_for_are_written() {
    clean_session(|client| {
        let mut service = Name::with_room(NI_MAXSERV);
        assert_eq!(call(client, v4(53), 16, None, Some(&mut service), 0), STATUS_SUCCESS);
        assert_eq!(service.text(), "domain");
        let mut host = Name::with_room(NI_MAXHOST);
        assert_eq!(call(client, v4(53), 16, Some(&mut host), None, NI_NUMERICHOST), STATUS_SUCCESS);
        assert_eq!(host.text(), "127.0.0.1");
    });
}

#[test]
fn refusals() {
    clean_session(|client| {
        let mut host = Name::with_room(NI_MAXHOST);
        // No name asked for.
        assert_eq!(call(client, v4(80), 16, None, None, 0), STATUS_INVALID_PARAMETER);
        // Shorter than the family's address, longer than SOCKADDR_STORAGE.
        assert_eq!(call(client, v4(80), 8, Some(&mut host), None, 0), STATUS_INVALID_PARAMETER);
        assert_eq!(call(client, v6(80), 16, Some(&mut host), None, 0), STATUS_INVALID_PARAMETER);
        assert_eq!(call(client, v4(80), 129, Some(&mut host), None, 0), STATUS_INVALID_PARAMETER);
        // Unknown flags.
        assert_eq!(call(client, v4(80), 16, Some(&mut host), None, 0x8000), STATUS_INVALID_PARAMETER);
        // A buffer without room for the name and its NUL.
        let mut small = Name::with_room(9);
        assert_eq!(call(client, v4(80), 16, Some(&mut small), None, NI_NUMERICHOST), STATUS_BUFFER_TOO_SMALL);
        let mut exact = Name::with_room(10);
        assert_eq!(call(client, v4(80), 16, Some(&mut exact), None, NI_NUMERICHOST), STATUS_SUCCESS);
        assert_eq!(exact.text(), "127.0.0.1");
        // A null buffer.
        let mut null = Name::with_room(1);
        null.string.Buffer = ptr::null_mut();
        assert_eq!(call(client, v4(80), 16, Some(&mut null), None, 0), STATUS_INVALID_PARAMETER);
    });
}

#[test]
fn get_name_info_above_passive_level_is_reported() {
    let report = broken_session(|client| {
        let req = Req::new();
        let mut address = storage(v4(80));
        let mut host = Name::with_room(NI_MAXHOST);
        with_irql(DISPATCH_LEVEL, || unsafe {
            (client.dispatch().WskGetNameInfo.unwrap())(
                client.provider.Client,
                sa(&mut address),
                16,
                &raw mut host.string,
                ptr::null_mut(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                req.irp,
            )
        });
        req.wait();
    });
    report.assert_first(Rule::IrqlTooHigh);
}
