//! A small HTTP/1.1 server and client over `std::net` for the admin API.
//!
//! Why not a framework: the admin API serves a handful of loopback requests per minute; what
//! matters is that a hostile or stuck client cannot hurt the relay. So the server is ~200 lines
//! we can read in one sitting: `httparse` (already used by the project) parses the head, and
//! every resource is bounded: head size, body size, per-connection read/write timeouts, number
//! of concurrent connections (over the cap: an immediate 503), one request per connection
//! (`Connection: close`), no chunked bodies (411/501). Each connection gets its own short-lived
//! thread, so a slow client never blocks another; changes are serialized by the API itself.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Resource limits of the admin server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_head: usize,
    pub max_headers: usize,
    pub max_body: usize,
    pub io_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_headers: 64,
            max_body: 1024 * 1024,
            io_timeout: Duration::from_secs(5),
            max_connections: 32,
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query, not yet percent-decoded.
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body: body.into_bytes(),
        }
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        Response::json(status, &serde_json::json!({ "error": message.into() }))
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The request handler.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A running server; dropping it does not stop it, call [`Server::stop`].
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves `handler` on a thread of its own.
    pub fn start(addr: SocketAddr, limits: Limits, handler: Handler) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("admin-http".into())
            .spawn(move || accept_loop(listener, limits, handler, stop2))?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and joins the accept thread (connections in flight finish on their own).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, limits: Limits, handler: Handler, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        let _ = stream.set_read_timeout(Some(limits.io_timeout));
        let _ = stream.set_write_timeout(Some(limits.io_timeout));
        if active.load(Ordering::SeqCst) >= limits.max_connections {
            let _ = write_response(&mut stream, &Response::error(503, "too many connections"));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (handler, active2) = (handler.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("admin-conn".into())
            .spawn(move || {
                serve_connection(&mut stream, &limits, &handler);
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn serve_connection(stream: &mut TcpStream, limits: &Limits, handler: &Handler) {
    let response = match read_request(stream, limits) {
        Ok(req) => handler(&req),
        Err(resp) => resp,
    };
    let _ = write_response(stream, &response);
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads one request; an `Err` is the response to send instead.
fn read_request(stream: &mut TcpStream, limits: &Limits) -> Result<Request, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        if let Some(i) = find_head_end(&buf) {
            break i;
        }
        if buf.len() >= limits.max_head {
            return Err(Response::error(431, "request head too large"));
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(Response::error(400, "connection closed mid-request")),
            Ok(n) => n,
            Err(e) if is_timeout(&e) => return Err(Response::error(408, "request timeout")),
            Err(e) => return Err(Response::error(400, e.to_string())),
        };
        // Bounded: at most max_head + one chunk, checked above before each read.
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_len > limits.max_head {
        return Err(Response::error(431, "request head too large"));
    }
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Response::error(400, "incomplete head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Response::error(431, "too many headers"))
        }
        Err(e) => return Err(Response::error(400, format!("bad request: {e}"))),
    }
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    let mut content_length: Option<usize> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Response::error(501, "chunked bodies are not supported"));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| Response::error(400, "bad Content-Length"))?;
            if content_length.is_some_and(|c| c != v) {
                return Err(Response::error(400, "conflicting Content-Length"));
            }
            content_length = Some(v);
        }
    }
    let len = content_length.unwrap_or(0);
    if len > limits.max_body {
        return Err(Response::error(413, "request body too large"));
    }
    let mut body: Vec<u8> = buf.get(head_len..).unwrap_or(&[]).to_vec();
    body.truncate(len);
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(Response::error(400, "body shorter than Content-Length")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => return Err(Response::error(408, "request timeout")),
            Err(e) => return Err(Response::error(400, e.to_string())),
        }
    }
    Ok(Request {
        method,
        path,
        query,
        body,
    })
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn write_response(stream: &mut TcpStream, r: &Response) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&r.body)?;
    stream.flush()
}

/// Percent-decodes a path segment (`PstnGateway%3Agw1` -> `PstnGateway:gw1`).
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but unreserved characters and `:` (identities contain it).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// A client response.
#[derive(Debug)]
pub struct ClientResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request over a fresh connection (the server closes after each).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<ClientResponse> {
    let sock = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or(&[]);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: intertrunk-ctl\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut raw = Vec::new();
    // Bounded: the admin API's answers are small; refuse anything absurd.
    stream.take(64 * 1024 * 1024).read_to_end(&mut raw)?;
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let head_end = find_head_end(&raw).ok_or_else(|| bad("truncated HTTP response"))?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(&raw[..head_end])
        .map_err(|e| bad(&format!("bad HTTP response: {e}")))?;
    let status = resp.code.ok_or_else(|| bad("no status"))?;
    let declared = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = raw.split_off(head_end);
    if let Some(len) = declared {
        body.truncate(len);
    }
    Ok(ClientResponse { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server(limits: Limits) -> Server {
        let h: Handler = Arc::new(|r: &Request| {
            Response::json(
                200,
                &serde_json::json!({
                    "method": r.method, "path": r.path, "query": r.query,
                    "body": String::from_utf8_lossy(&r.body),
                }),
            )
        });
        Server::start("127.0.0.1:0".parse().unwrap(), limits, h).unwrap()
    }

    fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(Shutdown::Write);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn round_trip_and_limits() {
        let limits = Limits {
            max_head: 512,
            max_body: 64,
            io_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let mut srv = echo_server(limits);
        let addr = srv.local_addr().to_string();
        let r = request(
            &addr,
            "POST",
            "/x?y=1",
            Some(b"{\"a\":1}"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["path"], "/x");
        assert_eq!(v["query"], "y=1");
        assert_eq!(v["body"], "{\"a\":1}");

        let a = srv.local_addr();
        let big_head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert!(raw(a, big_head.as_bytes()).starts_with("HTTP/1.1 431"));
        let big_body = "POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n";
        assert!(raw(a, big_body.as_bytes()).starts_with("HTTP/1.1 413"));
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(raw(a, chunked.as_bytes()).starts_with("HTTP/1.1 501"));
        assert!(raw(a, b"GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400"));
        // A head just under the limit with its body in the same segment keeps every body byte.
        let pad = "b".repeat(512 - 70);
        let near = format!(
            "POST / HTTP/1.1\r\nX: {pad}\r\nContent-Length: 40\r\n\r\n{}",
            "z".repeat(40)
        );
        let out = raw(a, near.as_bytes());
        assert!(
            out.starts_with("HTTP/1.1 200") && out.contains(&"z".repeat(40)),
            "{out}"
        );
        let short = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc";
        assert!(raw(a, short.as_bytes()).starts_with("HTTP/1.1 400"));
        // A client that sends half a head and stalls gets 408 after the timeout.
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let mut out = String::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        srv.stop();
    }

    #[test]
    fn percent_coding() {
        assert_eq!(
            percent_decode("PstnGateway%3Agw1").as_deref(),
            Some("PstnGateway:gw1")
        );
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(percent_encode("Site:Redmond/x y"), "Site:Redmond%2Fx%20y");
        assert_eq!(
            percent_decode(&percent_encode("é/ü ?")).as_deref(),
            Some("é/ü ?")
        );
    }
}
