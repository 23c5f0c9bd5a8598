//! The HTTP side, free of sockets: parse a request head with `httparse`, choose the
//! response, format it into a fixed buffer. Any IRQL (no allocation, no blocking).

use core::fmt::{self, Write as _};

/// The most bytes a request head may take; longer heads get 431.
pub const MAX_HEAD: usize = 2048;
/// The most headers a request may have; more get 431.
pub const MAX_HEADERS: usize = 24;

/// What the server does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: a greeting.
    Root,
    /// `GET /status`: the counters.
    Status,
    /// Any other path: 404.
    NotFound,
    /// A method other than `GET` or `HEAD`: 405.
    MethodNotAllowed,
    /// A request with a body (`Content-Length` above 0 or `Transfer-Encoding`): 413, then
    /// the connection is closed (the body is not read).
    BodyNotAccepted,
}

/// A parsed request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Bytes of the head, blank line included; what follows belongs to the next request.
    pub head_len: usize,
    /// What the request asks for, and so which response it gets.
    pub route: Route,
    /// `HEAD`: the response has no body.
    pub head_only: bool,
    /// The connection stays open after the response (HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
}

/// The outcome of parsing the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole head.
    Complete(Request),
    /// More bytes are needed.
    Partial,
    /// Not HTTP, or too large: answer this status and close.
    Invalid(u16),
}

/// Parses the head at the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEAD => return Parsed::Invalid(431),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(431),
        Err(_) => return Parsed::Invalid(400),
    };
    let version = request.version.unwrap_or(1);
    let mut keep_alive = version >= 1;
    let mut has_body = false;
    for header in request.headers.iter() {
        let value = header.value;
        if header.name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            has_body |= value.iter().any(|&b| b.is_ascii_digit() && b != b'0');
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    let method = request.method.unwrap_or("");
    let head_only = method == "HEAD";
    let route = if method != "GET" && !head_only {
        Route::MethodNotAllowed
    } else if has_body {
        Route::BodyNotAccepted
    } else {
        match request.path.map(|p| p.split('?').next().unwrap_or(p)) {
            Some("/") => Route::Root,
            Some("/status") => Route::Status,
            _ => Route::NotFound,
        }
    };
    let keep_alive = keep_alive && route != Route::BodyNotAccepted;
    Parsed::Complete(Request { head_len, route, head_only, keep_alive })
}

/// Counters shown by `GET /status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections accepted since load.
    pub connections: u64,
    /// Complete request heads received since load, the one being answered included.
    pub requests: u64,
    /// Connections currently open.
    pub open: u64,
}

/// A response formatted into a fixed buffer.
pub struct Response {
    buf: [u8; 512],
    len: usize,
}

impl Response {
    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for Response {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).filter(|&e| e <= self.buf.len()).ok_or(fmt::Error)?;
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

/// The body of `route` (for `GET`; `HEAD` sends the same headers without it).
struct Body<'a>(Route, &'a Counters);

impl fmt::Display for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.1;
        match self.0 {
            Route::Root => f.write_str("wsk status driver: GET /status for its counters\n"),
            Route::Status => write!(f, "connections {}\nrequests {}\nopen {}\n", c.connections, c.requests, c.open),
            Route::NotFound => f.write_str("not found\n"),
            Route::MethodNotAllowed => f.write_str("only GET and HEAD\n"),
            Route::BodyNotAccepted => f.write_str("request bodies are not accepted\n"),
        }
    }
}

/// Counts the bytes a `Display` writes.
struct Len(usize);

impl fmt::Write for Len {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// The response to `request`: status line, `Content-Type`, `Content-Length`, `Connection`,
/// and the body unless the request was `HEAD`.
pub fn respond(request: &Request, counters: &Counters) -> Response {
    let status = match request.route {
        Route::Root | Route::Status => 200,
        Route::NotFound => 404,
        Route::MethodNotAllowed => 405,
        Route::BodyNotAccepted => 413,
    };
    let body = Body(request.route, counters);
    let mut len = Len(0);
    // Writing to `Len` cannot fail.
    let _ = write!(len, "{body}");
    let mut out = Response { buf: [0; 512], len: 0 };
    let connection = if request.keep_alive { "keep-alive" } else { "close" };
    let allow = if status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    // The longest response is far below the buffer; a failure would only shorten it.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n{allow}\r\n",
        reason(status),
        len.0
    );
    if !request.head_only {
        let _ = write!(out, "{body}");
    }
    out
}

/// The response to an unparsable head (`Parsed::Invalid`); the connection is closed after it.
pub fn reject(status: u16) -> Response {
    let mut out = Response { buf: [0; 512], len: 0 };
    let _ = write!(out, "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", reason(status));
    out
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn complete(bytes: &[u8]) -> Request {
        match parse(bytes) {
            Parsed::Complete(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn routes_and_keep_alive() {
        let r = complete(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n");
        assert_eq!((r.route, r.keep_alive, r.head_only), (Route::Status, true, false));
        assert_eq!(r.head_len, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n".len(), "the next request is not part of it");
        assert!(!complete(b"GET /?x=1 HTTP/1.0\r\n\r\n").keep_alive, "HTTP/1.0 closes by default");
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert_eq!(complete(b"HEAD /nope HTTP/1.1\r\n\r\n").route, Route::NotFound);
        assert_eq!(complete(b"DELETE / HTTP/1.1\r\n\r\n").route, Route::MethodNotAllowed);
        let post = complete(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!((post.route, post.keep_alive), (Route::BodyNotAccepted, false));
    }

    #[test]
    fn partial_too_large_and_garbage() {
        assert_eq!(parse(b"GET /status HTTP/1.1\r\nHost"), Parsed::Partial);
        let mut long = std::vec::Vec::from(&b"GET / HTTP/1.1\r\nX: "[..]);
        long.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&long), Parsed::Invalid(431));
        assert_eq!(parse(b"\x16\x03\x01 not http\r\n\r\n"), Parsed::Invalid(400));
    }

    #[test]
    fn responses_carry_the_right_length() {
        let counters = Counters { connections: 3, requests: 7, open: 1 };
        let r = complete(b"GET /status HTTP/1.1\r\n\r\n");
        let text = std::string::String::from_utf8(respond(&r, &counters).as_bytes().to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(body, "connections 3\nrequests 7\nopen 1\n");
        assert!(head.contains(&std::format!("Content-Length: {}", body.len())), "{head}");
        let head_only = complete(b"HEAD /status HTTP/1.1\r\n\r\n");
        let text = std::string::String::from_utf8(respond(&head_only, &counters).as_bytes().to_vec()).unwrap();
        assert!(text.ends_with("\r\n\r\n") && text.contains(&std::format!("Content-Length: {}", body.len())));
        let not_allowed = complete(b"PUT / HTTP/1.1\r\n\r\n");
        let text = std::string::String::from_utf8(respond(&not_allowed, &counters).as_bytes().to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 ") && text.contains("Allow: GET, HEAD\r\n"), "{text}");
    }
}
