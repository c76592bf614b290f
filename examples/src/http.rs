//! The HTTP/1.1 subset the demo speaks, shared by the ioman server, the load generator and the
//! benchmark's tokio and mio servers, so every server answers byte for byte the same.
//!
//! Requests: `METHOD SP TARGET SP HTTP/1.x CRLF`, header lines `name: value CRLF`, an empty
//! line; a body only with `Content-Length` (`Transfer-Encoding` is refused with 400). The whole
//! request (head and body) must fit in [`MAX_REQUEST`] bytes: a larger one is answered
//! `431 Request Header Fields Too Large` and the connection is closed. `GET /` and `HEAD /`
//! get a fixed 151-byte page; any other target gets 404, any other method 405 (whose
//! `Connection` header says keep-alive even when the request asked to close; `HEAD /` too); a malformed
//! request gets 400 and the connection is closed. HTTP/1.1 is keep-alive unless
//! `Connection: close`; HTTP/1.0 closes unless `Connection: keep-alive`.
//!
//! The parser never panics: every byte sequence is either incomplete, a request, or an error.

/// The largest request (head and body) a connection buffers.
pub const MAX_REQUEST: usize = 8 * 1024;

/// The page served at `/`: 151 bytes.
pub const BODY: &[u8] = b"<!DOCTYPE html>\n<html><head><title>Welcome to ioman!</title></head>\n<body><h1>Welcome to ioman!</h1><p>GHC's event manager, in Rust.</p></body></html>\n";

/// `200 OK` with [`BODY`], keep-alive.
pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\nServer: ioman\r\nContent-Type: text/html\r\nContent-Length: 151\r\nConnection: keep-alive\r\n\r\n<!DOCTYPE html>\n<html><head><title>Welcome to ioman!</title></head>\n<body><h1>Welcome to ioman!</h1><p>GHC's event manager, in Rust.</p></body></html>\n";
/// `200 OK` to `HEAD /` (headers only).
pub const OK_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: ioman\r\nContent-Type: text/html\r\nContent-Length: 151\r\nConnection: keep-alive\r\n\r\n";
/// `404 Not Found`, keep-alive.
pub const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nServer: ioman\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\nnot found\n";
/// `405 Method Not Allowed`, keep-alive.
pub const NOT_ALLOWED: &[u8] = b"HTTP/1.1 405 Method Not Allowed\r\nServer: ioman\r\nAllow: GET, HEAD\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\nnot allowed\n";
/// `200 OK` with [`BODY`], then close (`Connection: close` or HTTP/1.0).
pub const OK_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: ioman\r\nContent-Type: text/html\r\nContent-Length: 151\r\nConnection: close\r\n\r\n<!DOCTYPE html>\n<html><head><title>Welcome to ioman!</title></head>\n<body><h1>Welcome to ioman!</h1><p>GHC's event manager, in Rust.</p></body></html>\n";
/// `404 Not Found`, then close.
pub const NOT_FOUND_CLOSE: &[u8] = b"HTTP/1.1 404 Not Found\r\nServer: ioman\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n";
/// `400 Bad Request`; the connection is closed after it.
pub const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nServer: ioman\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n";
/// `431 Request Header Fields Too Large`; the connection is closed after it.
pub const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nServer: ioman\r\nContent-Type: text/plain\r\nContent-Length: 18\r\nConnection: close\r\n\r\nrequest too large\n";

/// The request the load generator sends.
pub const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// What [`parse`] found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole request yet (and still under [`MAX_REQUEST`]).
    Incomplete,
    /// A whole request of `len` bytes: answer with `response`, then close unless `keep_alive`.
    Request {
        /// Bytes the request took (head and body).
        len: usize,
        /// The bytes to send back.
        response: &'static [u8],
        /// Whether the connection stays open after the response.
        keep_alive: bool,
    },
    /// Malformed: answer [`BAD_REQUEST`] and close.
    Bad,
    /// Over [`MAX_REQUEST`]: answer [`TOO_LARGE`] and close.
    TooLarge,
}

impl Parsed {
    /// The response to send for this outcome and whether to keep the connection, if whole.
    pub fn answer(self) -> Option<(&'static [u8], bool)> {
        match self {
            Parsed::Incomplete => None,
            Parsed::Request {
                response,
                keep_alive,
                ..
            } => Some((response, keep_alive)),
            Parsed::Bad => Some((BAD_REQUEST, false)),
            Parsed::TooLarge => Some((TOO_LARGE, false)),
        }
    }
}

/// Finds the end of the head (`\r\n\r\n`), returning the index just past it.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses the request at the front of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    // Fast path: the load generator's request.
    if buf.starts_with(GET) {
        return Parsed::Request {
            len: GET.len(),
            response: OK,
            keep_alive: true,
        };
    }
    let Some(end) = head_end(&buf[..buf.len().min(MAX_REQUEST)]) else {
        // A request line must start with a token: reject garbage before buffering 8 KiB of it.
        if let Some(&b) = buf.first() {
            if !is_token(b) {
                return Parsed::Bad;
            }
        }
        return if buf.len() >= MAX_REQUEST {
            Parsed::TooLarge
        } else {
            Parsed::Incomplete
        };
    };
    let head = &buf[..end - 4];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let Some(line) = lines.next() else {
        return Parsed::Bad;
    };
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Bad;
    };
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) {
        return Parsed::Bad;
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Parsed::Bad;
    }
    let mut keep_alive = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return Parsed::Bad,
    };
    let mut body = 0usize;
    let mut seen_length = false;
    for h in lines {
        let Some(colon) = h.iter().position(|&b| b == b':') else {
            return Parsed::Bad;
        };
        let name = &h[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return Parsed::Bad;
        }
        let value = h[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            if seen_length || value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Parsed::Bad;
            }
            seen_length = true;
            // At most 20 digits fit the check below without overflow; more is too large.
            if value.len() > 6 {
                return Parsed::TooLarge;
            }
            body = value
                .iter()
                .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Parsed::Bad;
        } else if name.eq_ignore_ascii_case(b"connection") {
            if value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    let len = end + body;
    if len > MAX_REQUEST {
        return Parsed::TooLarge;
    }
    if buf.len() < len {
        return Parsed::Incomplete;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    let response = match (method, path, keep_alive) {
        (b"GET", b"/", true) => OK,
        (b"GET", b"/", false) => OK_CLOSE,
        (b"HEAD", b"/", _) => OK_HEAD,
        (b"GET" | b"HEAD", _, true) => NOT_FOUND,
        (b"GET" | b"HEAD", _, false) => NOT_FOUND_CLOSE,
        _ => NOT_ALLOWED,
    };
    Parsed::Request {
        len,
        response,
        keep_alive,
    }
}

/// Handles every whole request at the front of `input`, appending the answers to `out`.
/// Returns the bytes consumed, the number of requests answered, and whether the connection
/// stays open (`false` after a malformed or oversized request or `Connection: close`; bytes
/// after such a request are ignored).
pub fn serve(input: &[u8], out: &mut Vec<u8>) -> (usize, u64, bool) {
    let mut start = 0;
    let mut answered = 0;
    loop {
        let parsed = parse(&input[start..]);
        let Some((response, keep_alive)) = parsed.answer() else {
            return (start, answered, true);
        };
        out.extend_from_slice(response);
        answered += 1;
        if let Parsed::Request { len, .. } = parsed {
            start += len;
        }
        if !keep_alive {
            return (start, answered, false);
        }
    }
}

/// What [`parse_response`] found at the front of a client's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// Not whole yet.
    Incomplete,
    /// A whole response of `len` bytes with this status code.
    Done {
        /// Status code.
        status: u16,
        /// Bytes it took.
        len: usize,
    },
    /// Not an HTTP response.
    Bad,
}

/// Parses a response (status line, headers, `Content-Length` body) at the front of `buf`.
pub fn parse_response(buf: &[u8]) -> Response {
    // Fast path: the page.
    if buf.starts_with(OK) {
        return Response::Done {
            status: 200,
            len: OK.len(),
        };
    }
    let Some(end) = head_end(buf) else {
        return if buf.len() > MAX_REQUEST {
            Response::Bad
        } else {
            Response::Incomplete
        };
    };
    let head = &buf[..end];
    if !head.starts_with(b"HTTP/1.") || head.len() < 12 {
        return Response::Bad;
    }
    let code = &head[9..12];
    if !code.iter().all(u8::is_ascii_digit) {
        return Response::Bad;
    }
    let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    let mut body = 0usize;
    for h in head.split(|&b| b == b'\n') {
        let h = h.strip_suffix(b"\r").unwrap_or(h);
        if let Some(colon) = h.iter().position(|&b| b == b':') {
            if h[..colon].eq_ignore_ascii_case(b"content-length") {
                let v = h[colon + 1..].trim_ascii();
                if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
                    return Response::Bad;
                }
                body = v
                    .iter()
                    .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
            }
        }
    }
    if buf.len() < end + body {
        Response::Incomplete
    } else {
        Response::Done {
            status,
            len: end + body,
        }
    }
}
