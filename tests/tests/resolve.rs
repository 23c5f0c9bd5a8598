//! Name service through the library on the emulator's provider: `Wsk::resolve_with` (hints,
//! the bound on the results) and `Wsk::name_of` (`WskGetNameInfo` and its flags).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use wsk::Error;
use wsk::resolve::{Family, NameFlags, Resolve, SocketType};
use wsk_sys::STATUS_NOT_FOUND;
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(60);

/// What the host's resolver answers for `host` (the emulator's provider asks it), deduplicated.
fn host_addresses(host: &str, port: u16) -> Vec<SocketAddr> {
    let mut unique = Vec::new();
    for address in (host, port).to_socket_addrs().expect("the host resolves") {
        if !unique.contains(&address) {
            unique.push(address);
        }
    }
    unique
}

#[test]
fn hints_filter_by_family() {
    let host = host_addresses("localhost", 80);
    run_clean(LIMIT, move |env| async move {
        let v4 = env.wsk.resolve_with(&Resolve::new("localhost").port(80).family(Family::V4)).await.expect("v4");
        let expected: Vec<SocketAddr> = host.iter().copied().filter(SocketAddr::is_ipv4).collect();
        assert_eq!(v4.iter().collect::<Vec<_>>(), expected);
        assert!(!expected.is_empty(), "localhost has an IPv4 address");

        let v6 = env.wsk.resolve_with(&Resolve::new("localhost").port(80).family(Family::V6)).await;
        let expected: Vec<SocketAddr> = host.iter().copied().filter(SocketAddr::is_ipv6).collect();
        match v6 {
            Ok(list) => assert_eq!(list.iter().collect::<Vec<_>>(), expected),
            Err(e) => {
                assert!(expected.is_empty(), "{e:?} though the host has {expected:?}");
                assert_eq!(e, Error::Status(STATUS_NOT_FOUND));
            }
        }

        // A numeric host of the other family is not found.
        let other = env.wsk.resolve_with(&Resolve::new("::1").family(Family::V4)).await;
        assert_eq!(other.unwrap_err(), Error::Status(STATUS_NOT_FOUND));
        let same = env.wsk.resolve_with(&Resolve::new("::1").port(7).family(Family::V6)).await.expect("::1");
        assert_eq!(same.first(), Some(SocketAddr::from((Ipv6Addr::LOCALHOST, 7))));
    });
}

#[test]
fn the_bound_limits_the_results() {
    run_clean(LIMIT, |env| async move {
        // No host: the loopback addresses of both families; passive: the wildcard ones.
        let all = env.wsk.resolve_with(&Resolve::no_host().port(9)).await.expect("no host");
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all.iter().all(|a| a.ip().is_loopback() && a.port() == 9), "{all:?}");
        let one = env.wsk.resolve_with(&Resolve::no_host().port(9).max(1)).await.expect("bounded");
        assert_eq!(one.len(), 1);
        assert_eq!(one.first(), all.first());
        let passive = env.wsk.resolve_with(&Resolve::no_host().passive().family(Family::V4)).await.expect("passive");
        assert_eq!(passive.iter().collect::<Vec<_>>(), vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))]);
        // The bound is at least one.
        let clamped = env.wsk.resolve_with(&Resolve::no_host().max(0)).await.expect("max 0");
        assert_eq!(clamped.len(), 1);
    });
}

#[test]
fn numeric_host_refuses_a_name() {
    run_clean(LIMIT, |env| async move {
        let name = env.wsk.resolve_with(&Resolve::new("localhost").numeric_host()).await;
        assert_eq!(name.unwrap_err(), Error::Status(STATUS_NOT_FOUND));
        let numeric = env
            .wsk
            .resolve_with(&Resolve::new("127.0.0.1").port(80).numeric_host().socket_type(SocketType::Datagram))
            .await
            .expect("numeric");
        assert_eq!(numeric.first(), Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 80))));
        // The plain form still works.
        let plain = env.wsk.resolve("127.0.0.1", 443).await.expect("resolve");
        assert_eq!(plain.first(), Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 443))));
    });
}

/// The first name the hosts file gives `ip` (what the emulator's provider answers).
fn hosts_name(ip: IpAddr) -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|line| {
        let mut words = line.split('#').next().unwrap_or_default().split_whitespace();
        if words.next()?.parse::<IpAddr>().ok()? == ip { words.next().map(str::to_owned) } else { None }
    })
}

#[test]
fn names_of_addresses() {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let expected = hosts_name(loopback).unwrap_or_else(|| "127.0.0.1".to_owned());
    run_clean(LIMIT, move |env| async move {
        let at = SocketAddr::new(loopback, 80);
        let info = env.wsk.name_of(at, NameFlags::NONE).await.expect("name of 127.0.0.1");
        assert_eq!(info.host().to_string(), expected);
        assert!(info.service().eq_str("http"), "{info:?}");

        let numeric = env.wsk.name_of(at, NameFlags::NUMERIC_HOST | NameFlags::NUMERIC_SERVICE).await.unwrap();
        assert_eq!((numeric.host().to_string(), numeric.service().to_string()), ("127.0.0.1".into(), "80".into()));

        let v6 = env.wsk.name_of(SocketAddr::from((Ipv6Addr::LOCALHOST, 443)), NameFlags::NUMERIC_HOST).await.unwrap();
        assert_eq!((v6.host().to_string(), v6.service().to_string()), ("::1".into(), "https".into()));

        // TEST-NET-1 (RFC 5737) has no name: its numeric form, or an error when one is required.
        let nameless = SocketAddr::from(([192, 0, 2, 1], 7007));
        let info = env.wsk.name_of(nameless, NameFlags::DATAGRAM).await.unwrap();
        assert_eq!((info.host().to_string(), info.service().to_string()), ("192.0.2.1".into(), "7007".into()));
        let required = env.wsk.name_of(nameless, NameFlags::NAME_REQUIRED).await;
        assert_eq!(required.unwrap_err(), Error::Status(STATUS_NOT_FOUND));
    });
}
