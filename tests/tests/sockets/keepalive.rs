//! Keep-alive: `SO_KEEPALIVE` and its timing (`TCP_KEEPALIVE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`)
//! set and read back on connection and accepted sockets, reaching the host socket (the
//! emulator reads them back from it, it records nothing); the timing options leave
//! `SO_KEEPALIVE` as it was, 0 is refused, and datagram sockets do not have them.

use wsk::{Error, OptionName, SocketOption, TcpListener, TcpSocket, UdpSocket};
use wsk_executor::timeout;
use wsk_sys::{STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED};
use wsk_tests::harness::run_clean;

use crate::{LIMIT, PROMPT, local};

const TIMING: [SocketOption; 3] =
    [SocketOption::KeepAliveIdle(45), SocketOption::KeepAliveInterval(7), SocketOption::KeepAliveProbes(4)];

#[test]
fn keep_alive_timing_reads_back_as_set_and_leaves_keep_alive_off() {
    run_clean(LIMIT, |env| async move {
        let mut socket = TcpSocket::new_v4(env.wsk).await.expect("socket");
        for option in TIMING {
            socket.set_option(option).await.unwrap_or_else(|e| panic!("set {option:?}: {e:?}"));
            assert_eq!(socket.get_option(option.name().unwrap()).await, Ok(option), "{option:?} reads back");
        }
        assert_eq!(
            socket.get_option(OptionName::KeepAlive).await,
            Ok(SocketOption::KeepAlive(false)),
            "setting the timing does not turn keep-alive on"
        );
        socket.set_option(SocketOption::KeepAlive(true)).await.expect("keep-alive on");
        // Changing the timing with keep-alive on keeps it on.
        socket.set_option(SocketOption::KeepAliveIdle(90)).await.expect("set");
        assert_eq!(socket.get_option(OptionName::KeepAliveIdle).await, Ok(SocketOption::KeepAliveIdle(90)));
        assert_eq!(socket.get_option(OptionName::KeepAlive).await, Ok(SocketOption::KeepAlive(true)));
        let invalid = Err(Error::Status(STATUS_INVALID_PARAMETER));
        for zero in
            [SocketOption::KeepAliveIdle(0), SocketOption::KeepAliveInterval(0), SocketOption::KeepAliveProbes(0)]
        {
            assert_eq!(socket.set_option(zero).await, invalid, "{zero:?} is refused");
        }
        socket.close().await.unwrap();
    });
}

#[test]
fn an_accepted_connection_takes_keep_alive_and_its_timing() {
    run_clean(LIMIT, |env| async move {
        let mut listener = TcpListener::bind(env.wsk, local(0)).await.expect("bind");
        let at = listener.local_addr();
        let connect = env.spawner.spawn(async move { wsk::TcpStream::connect(env.wsk, at).await }).unwrap();
        let (mut accepted, _) = timeout(PROMPT, listener.accept()).await.expect("accept in time").expect("accept");
        let mut stream = connect.await.unwrap().expect("connect");
        accepted.set_option(SocketOption::KeepAlive(true)).await.expect("keep-alive");
        for option in TIMING {
            accepted.set_option(option).await.expect("set");
        }
        assert_eq!(accepted.get_option(OptionName::KeepAlive).await, Ok(SocketOption::KeepAlive(true)));
        for option in TIMING {
            assert_eq!(accepted.get_option(option.name().unwrap()).await, Ok(option));
        }
        // The other end is untouched.
        assert_eq!(stream.get_option(OptionName::KeepAlive).await, Ok(SocketOption::KeepAlive(false)));
        accepted.close().await.unwrap();
        stream.close().await.unwrap();
        listener.close().await.unwrap();
    });
}

#[test]
fn datagram_sockets_have_no_keep_alive_timing() {
    run_clean(LIMIT, |env| async move {
        let mut socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let not_supported = Error::Status(STATUS_NOT_SUPPORTED);
        for option in TIMING {
            assert_eq!(socket.set_option(option).await, Err(not_supported), "{option:?}");
            assert_eq!(socket.get_option(option.name().unwrap()).await, Err(not_supported), "{option:?}");
        }
        socket.close().await.unwrap();
    });
}
