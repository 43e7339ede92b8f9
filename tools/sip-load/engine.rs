//! The sip-load engine: a UAC and a UAS, each on its own non-blocking UDP socket, batched with
//! recvmmsg/sendmmsg, running the peer-bench call flow (INVITE with SDP -> 100/180/200 -> ACK ->
//! optional hold -> BYE -> 200) with RFC 3261 retransmissions and loose routing.
//!
//! The UAS runs on its own thread for the life of a [`Generator`]; the UAC runs on the thread
//! calling [`Generator::run_trial`], so one process uses two busy threads.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::timers::Timers;
use intertrunk::wire::sip::{HeaderName, Message, Method, NameAddr, Uri};
use socket2::{Domain, Protocol, Socket, Type};

/// RFC 3261 timer values (17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// Datagrams per recvmmsg/sendmmsg call.
const BATCH: usize = 64;
/// Receive buffer per datagram; longer datagrams are truncated and dropped as malformed.
const RECV_BUF: usize = 4096;
/// INVITEs sent per loop turn at most, so a stalled loop catches up in steps.
const MAX_BURST: u64 = 256;
/// Timers handled per loop turn at most.
const MAX_TIMERS: usize = 4096;
/// Record-Route entries taken into a route set at most.
const MAX_ROUTES: usize = 16;
/// Latency samples kept per trial at most.
const MAX_SAMPLES: usize = 4_000_000;
/// How long the UAS keeps a finished call to answer BYE retransmissions (500+1000+2000 ms).
const UAS_LINGER: Duration = Duration::from_secs(4);
/// SIPp's media ports in the peer-bench harness (the SDP only: no media flows).
const UAC_MEDIA_PORT: u16 = 6000;
const UAS_MEDIA_PORT: u16 = 7000;

#[derive(Clone, Debug)]
pub struct Config {
    pub uac: SocketAddr,
    pub uas: SocketAddr,
    /// Where INVITEs go: the proxy, or the UAS itself to measure the generator alone.
    pub target: SocketAddr,
    /// The dialled number (Request-URI user part).
    pub number: String,
    /// Time between ACK and BYE.
    pub hold: Duration,
    /// A call not complete within hold + this fails.
    pub call_timeout: Duration,
    /// UAC calls in flight at most; an INVITE due with a full table is a failed attempt.
    pub max_calls: usize,
    /// The UAS sends 100 Trying before 180 and 200.
    pub uas_trying: bool,
    /// After a loop turn that found some datagrams but not a full batch, sleep this long
    /// before the next (zero: wait only when there is nothing). Batching the generator's
    /// wake-ups leaves more of a small box to the proxy under test, at the price of at most
    /// this much added delay per message in the generator.
    pub batch: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        Config {
            uac: a(5091),
            uas: a(5090),
            target: a(5070),
            number: "4930123456".into(),
            hold: Duration::ZERO,
            call_timeout: Duration::from_millis(5000),
            max_calls: 100_000,
            uas_trying: true,
            batch: Duration::ZERO,
        }
    }
}

// ------------------------------------------------------------------------ message builders

/// What identifies the UAC in its messages (copied from the peer-bench SIPp uac.xml). The
/// constant parts are rendered once: formatting addresses per message cost the generator more
/// than the proxies it drives spend on some of those messages.
pub struct UacIdent {
    pub target: SocketAddr,
    /// `sip:<number>@<target>`.
    ruri: Vec<u8>,
    /// `<local>`, `-<pid>@<local ip>` (Call-ID suffix), `-<pid>-` (branch infix).
    local_s: Vec<u8>,
    call_id_suffix: Vec<u8>,
    branch_infix: Vec<u8>,
    pid_s: Vec<u8>,
    /// The INVITE's SDP body.
    sdp: Vec<u8>,
}

fn ip_type(a: &SocketAddr) -> u8 {
    if a.is_ipv4() {
        4
    } else {
        6
    }
}

fn push_num(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

impl UacIdent {
    pub fn new(local: SocketAddr, target: SocketAddr, number: &str, pid: u32) -> Self {
        let ipt = ip_type(&local);
        UacIdent {
            target,
            ruri: format!("sip:{number}@{target}").into_bytes(),
            local_s: local.to_string().into_bytes(),
            call_id_suffix: format!("-{pid}@{}", local.ip()).into_bytes(),
            branch_infix: format!("-{pid}-").into_bytes(),
            pid_s: pid.to_string().into_bytes(),
            sdp: format!(
                "v=0\r\no=gw 53655765 2353687637 IN IP{ipt} {ip}\r\ns=-\r\nc=IN IP{ipt} {ip}\r\nt=0 0\r\nm=audio {UAC_MEDIA_PORT} RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
                ip = local.ip()
            )
            .into_bytes(),
        }
    }

    pub fn call_id(&self, n: u64, out: &mut Vec<u8>) {
        push_num(out, n);
        out.extend_from_slice(&self.call_id_suffix);
    }

    /// `Via: SIP/2.0/UDP <local>;branch=z9hG4bK-<pid>-<n>-<tag>`, CRLF.
    fn via(&self, n: u64, tag: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(b"Via: SIP/2.0/UDP ");
        out.extend_from_slice(&self.local_s);
        out.extend_from_slice(b";branch=z9hG4bK");
        out.extend_from_slice(&self.branch_infix);
        push_num(out, n);
        out.push(b'-');
        out.extend_from_slice(tag);
        out.extend_from_slice(b"\r\n");
    }

    fn from(&self, n: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"From: \"gw\" <sip:+4930555");
        push_num(out, n);
        out.push(b'@');
        out.extend_from_slice(&self.local_s);
        out.extend_from_slice(b">;tag=");
        out.extend_from_slice(&self.pid_s);
        out.extend_from_slice(b"slTag00");
        push_num(out, n);
        out.extend_from_slice(b"\r\n");
    }

    fn contact(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"Contact: <sip:gw@");
        out.extend_from_slice(&self.local_s);
        out.extend_from_slice(b">\r\n");
    }

    /// The initial INVITE of call `n`; a retransmission is the same bytes.
    pub fn invite(&self, n: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"INVITE ");
        out.extend_from_slice(&self.ruri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        self.via(n, b"inv", out);
        self.from(n, out);
        out.extend_from_slice(b"To: <");
        out.extend_from_slice(&self.ruri);
        out.extend_from_slice(b">\r\nCall-ID: ");
        self.call_id(n, out);
        out.extend_from_slice(b"\r\nCSeq: 1 INVITE\r\n");
        self.contact(out);
        out.extend_from_slice(
            b"Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: ",
        );
        push_num(out, self.sdp.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.sdp);
    }

    /// The ACK of a non-2xx final response: part of the INVITE transaction (same branch and
    /// Request-URI, RFC 3261 17.1.1.3), To from the response.
    pub fn ack_non2xx(&self, n: u64, to: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(b"ACK ");
        out.extend_from_slice(&self.ruri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        self.via(n, b"inv", out);
        self.from(n, out);
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(to);
        out.extend_from_slice(b"\r\nCall-ID: ");
        self.call_id(n, out);
        out.extend_from_slice(b"\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    }

    /// ACK (of the 2xx) or BYE inside the dialog: Request-URI and Route from the route set.
    pub fn in_dialog(&self, method: Method<'_>, n: u64, d: &Dialog, out: &mut Vec<u8>) {
        let (cseq, tag) = match method {
            Method::Ack => (&b"1 "[..], &b"ack"[..]),
            _ => (&b"2 "[..], &b"bye"[..]),
        };
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&d.request_uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        self.via(n, tag, out);
        if !d.route.is_empty() {
            out.extend_from_slice(b"Route: ");
            out.extend_from_slice(&d.route);
            out.extend_from_slice(b"\r\n");
        }
        self.from(n, out);
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(&d.to);
        out.extend_from_slice(b"\r\nCall-ID: ");
        self.call_id(n, out);
        out.extend_from_slice(b"\r\nCSeq: ");
        out.extend_from_slice(cseq);
        out.extend_from_slice(method.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.contact(out);
        out.extend_from_slice(b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    }
}

/// The UAC's view of an established dialog (RFC 3261 12.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// The To header value of the 2xx: remote URI and remote tag.
    pub to: Box<[u8]>,
    /// The remote target (loose routing) or the first route's URI (strict routing).
    pub request_uri: Box<[u8]>,
    /// The Route header value, empty without a route set.
    pub route: Box<[u8]>,
    /// Where in-dialog requests go: the first route's host:port, or the remote target's.
    pub next_hop: SocketAddr,
}

fn trim(s: &[u8]) -> &[u8] {
    let a = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let b = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(a, |i| i + 1);
    s.get(a..b).unwrap_or(&[])
}

/// host:port of a SIP URI; only IP literals (no DNS here), port 5060 by default.
pub fn uri_addr(uri: &Uri<'_>) -> Option<SocketAddr> {
    let h = uri.host;
    let h = h
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(h);
    let ip: IpAddr = std::str::from_utf8(h).ok()?.parse().ok()?;
    Some(SocketAddr::new(ip, uri.port.unwrap_or(5060)))
}

impl Dialog {
    /// The dialog a 2xx to our INVITE establishes: the route set is the Record-Route list in
    /// reverse (12.1.2); with a loose router first (`lr`) the Request-URI is the remote target
    /// (Contact) and the route set goes into Route; with a strict router first, the first route
    /// becomes the Request-URI and the remote target closes the Route list (12.2.1.1).
    pub fn from_2xx(msg: &Message<'_>) -> Result<Dialog, &'static str> {
        let to = msg.header(HeaderName::To).ok_or("2xx without To")?;
        if msg.to().ok().and_then(|t| t.tag).is_none() {
            return Err("2xx without To tag");
        }
        let contact = msg
            .contact()
            .ok_or("2xx without Contact")?
            .map_err(|_| "bad Contact")?;
        let target = contact.uri;
        let target_addr = Uri::parse(target)
            .ok()
            .as_ref()
            .and_then(uri_addr)
            .ok_or("Contact not a sip URI with an IP address")?;
        let mut routes: Vec<&[u8]> = msg
            .header_values(HeaderName::RecordRoute)
            .map(trim)
            .take(MAX_ROUTES + 1)
            .collect();
        if routes.len() > MAX_ROUTES {
            return Err("too many Record-Route entries");
        }
        routes.reverse();
        let Some(first) = routes.first() else {
            return Ok(Dialog {
                to: to.into(),
                request_uri: target.into(),
                route: Box::default(),
                next_hop: target_addr,
            });
        };
        for r in &routes {
            NameAddr::parse(r).map_err(|_| "bad Record-Route")?;
        }
        let first = NameAddr::parse(first).map_err(|_| "bad Record-Route")?;
        let first_uri = Uri::parse(first.uri).map_err(|_| "bad Record-Route URI")?;
        let next_hop = uri_addr(&first_uri).ok_or("Record-Route not at an IP address")?;
        let (request_uri, route) = if first_uri.param(b"lr").is_some() {
            (target.into(), routes.join(&b", "[..]).into_boxed_slice())
        } else {
            let mut rest: Vec<u8> = routes.get(1..).unwrap_or(&[]).join(&b", "[..]);
            if !rest.is_empty() {
                rest.extend_from_slice(b", ");
            }
            rest.push(b'<');
            rest.extend_from_slice(target);
            rest.push(b'>');
            (first.uri.into(), rest.into_boxed_slice())
        };
        Ok(Dialog {
            to: to.into(),
            request_uri,
            route,
            next_hop,
        })
    }
}

/// Where a response to `req` goes (RFC 3261 18.2.2 with RFC 3581): the top Via's `received`
/// (or sent-by host) and `rport` value (or sent-by port); a bare `rport` or a non-IP host
/// means the datagram's source.
pub fn response_dest(req: &Message<'_>, src: SocketAddr) -> SocketAddr {
    let Ok(v) = req.top_via() else { return src };
    let port = match v.rport {
        Some(None) => return src,
        Some(Some(p)) => p,
        None => v.port.unwrap_or(5060),
    };
    let host = v.received.unwrap_or(v.host);
    let host = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host);
    match std::str::from_utf8(host).ok().and_then(|h| h.parse().ok()) {
        Some(ip) => SocketAddr::new(ip, port),
        None => src,
    }
}

/// A UAS response to `req`: Via, Record-Route (when `record_route`), From, To (with `to_tag`
/// added when the request's To has none), Call-ID and CSeq copied in order (8.2.6.2, 12.1.1),
/// then Contact and the body.
#[allow(clippy::too_many_arguments)]
pub fn build_response(
    req: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    record_route: bool,
    contact: Option<SocketAddr>,
    sdp: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"SIP/2.0 ");
    push_num(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let has_tag = req.to().ok().and_then(|t| t.tag).is_some();
    for h in req.headers() {
        let copy = match h.name {
            HeaderName::Via
            | HeaderName::From
            | HeaderName::To
            | HeaderName::CallId
            | HeaderName::CSeq => true,
            HeaderName::RecordRoute => record_route,
            _ => false,
        };
        if !copy {
            continue;
        }
        out.extend_from_slice(h.raw_name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        if let (HeaderName::To, Some(tag), false) = (h.name, to_tag, has_tag) {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(tag);
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(c) = contact {
        let _ = write!(out, "Contact: <sip:pbx@{c};transport=UDP>\r\n");
    }
    match sdp {
        Some(b) => {
            out.extend_from_slice(b"Content-Type: application/sdp\r\nContent-Length: ");
            push_num(out, b.len() as u64);
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
}

/// The UAS's answer (uas.xml): PCMA only.
pub fn uas_sdp(local: SocketAddr) -> Vec<u8> {
    let ipt = ip_type(&local);
    format!(
        "v=0\r\no=pbx 53655765 2353687637 IN IP{ipt} {ip}\r\ns=-\r\nc=IN IP{ipt} {ip}\r\nt=0 0\r\nm=audio {UAS_MEDIA_PORT} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n",
        ip = local.ip()
    )
    .into_bytes()
}

// ------------------------------------------------------------------------ batched UDP

/// Everything that needs `unsafe`: recvmmsg/sendmmsg, poll and flock through libc.
mod sys {
    use super::{BATCH, RECV_BUF};
    use socket2::SockAddr;
    use std::io;
    use std::net::SocketAddr;
    use std::os::fd::RawFd;

    pub struct RecvBatch {
        bufs: Vec<u8>,
        iov: Vec<libc::iovec>,
        names: Vec<libc::sockaddr_storage>,
        hdrs: Vec<libc::mmsghdr>,
        n: usize,
    }

    impl RecvBatch {
        pub fn new() -> RecvBatch {
            // SAFETY: all-zero is a valid value of these plain C structs.
            let zero_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
            RecvBatch {
                bufs: vec![0; BATCH * RECV_BUF],
                iov: vec![
                    libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0
                    };
                    BATCH
                ],
                names: vec![zero_name; BATCH],
                hdrs: vec![zero_hdr; BATCH],
                n: 0,
            }
        }

        /// Receives up to BATCH datagrams without blocking; returns how many.
        pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
            self.n = 0;
            let base = self.bufs.as_mut_ptr();
            for i in 0..BATCH {
                self.iov[i] = libc::iovec {
                    // SAFETY: i * RECV_BUF + RECV_BUF <= bufs.len().
                    iov_base: unsafe { base.add(i * RECV_BUF) }.cast(),
                    iov_len: RECV_BUF,
                };
                let h = &mut self.hdrs[i];
                h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
                h.msg_hdr.msg_iov = &mut self.iov[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            // SAFETY: every header points at live buffers owned by self for the whole call.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                    _ => Err(e),
                };
            }
            self.n = (r as usize).min(BATCH);
            Ok(self.n)
        }

        /// Datagram `i` of the last batch and its source; None when truncated or unknown.
        pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
            if i >= self.n {
                return None;
            }
            let h = &self.hdrs[i];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                return None;
            }
            let len = (h.msg_len as usize).min(RECV_BUF);
            // SAFETY: the kernel wrote msg_namelen bytes of a sockaddr into names[i].
            let addr = unsafe { SockAddr::new(self.names[i], h.msg_hdr.msg_namelen) };
            let data = self.bufs.get(i * RECV_BUF..i * RECV_BUF + len)?;
            Some((data, addr.as_socket()?))
        }
    }

    /// Outgoing datagrams gathered in one arena and sent with sendmmsg.
    pub struct SendQueue {
        arena: Vec<u8>,
        entries: Vec<(SockAddr, usize, usize)>,
        /// Datagrams the kernel refused (socket buffer full for too long); retransmission
        /// recovers them.
        pub dropped: u64,
    }

    impl SendQueue {
        pub fn new() -> SendQueue {
            SendQueue {
                arena: Vec::with_capacity(1 << 20),
                entries: Vec::with_capacity(4 * BATCH),
                dropped: 0,
            }
        }

        /// Appends one datagram to `dst`, written by `f` (which only appends to the arena).
        pub fn push(&mut self, dst: SocketAddr, f: impl FnOnce(&mut Vec<u8>)) {
            let start = self.arena.len();
            f(&mut self.arena);
            self.entries
                .push((SockAddr::from(dst), start, self.arena.len() - start));
        }

        pub fn pending(&self) -> usize {
            self.entries.len()
        }

        /// Sends everything queued. A full socket buffer is waited out for up to ~20 ms.
        pub fn flush(&mut self, fd: RawFd) {
            let mut done = 0usize;
            let mut stalls = 0;
            while done < self.entries.len() {
                let chunk = &self.entries[done..(done + BATCH).min(self.entries.len())];
                let mut iov: [libc::iovec; BATCH] = [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; BATCH];
                // SAFETY: all-zero is a valid mmsghdr.
                let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
                for (i, (addr, start, len)) in chunk.iter().enumerate() {
                    iov[i] = libc::iovec {
                        // SAFETY: start + len <= arena.len(); the arena is not touched until
                        // sendmmsg returns.
                        iov_base: unsafe { self.arena.as_ptr().add(*start) } as *mut libc::c_void,
                        iov_len: *len,
                    };
                    hdrs[i].msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                    hdrs[i].msg_hdr.msg_namelen = addr.len();
                    hdrs[i].msg_hdr.msg_iov = &mut iov[i];
                    hdrs[i].msg_hdr.msg_iovlen = 1;
                }
                // SAFETY: chunk.len() headers, each pointing at live iovecs, addresses and
                // arena bytes.
                let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), chunk.len() as u32, 0) };
                if r > 0 {
                    done += r as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock if stalls < 20 => {
                        stalls += 1;
                        poll(fd, libc::POLLOUT, 1);
                    }
                    io::ErrorKind::Interrupted => {}
                    // The datagram at `done` is refused (e.g. ECONNREFUSED from an earlier
                    // ICMP, or a buffer full for too long): skip it.
                    _ => {
                        self.dropped += 1;
                        done += 1;
                    }
                }
            }
            self.arena.clear();
            self.entries.clear();
        }
    }

    /// Waits until `fd` has `events` or `timeout_ms` passed.
    pub fn poll(fd: RawFd, events: i16, timeout_ms: i32) {
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, timeout_ms) };
    }

    /// flock(2) LOCK_EX on an open file: the lock `flock FILE CMD` takes.
    pub fn lock_exclusive(fd: RawFd) -> io::Result<()> {
        loop {
            // SAFETY: plain syscall on a file descriptor the caller keeps open.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

pub use sys::lock_exclusive;

fn bind(addr: SocketAddr) -> Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    // Ride out scheduling stalls of the other thread (rmem_max permitting).
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())
        .with_context(|| format!("bind {addr}"))?;
    Ok(s)
}

/// Slab of calls keyed by Call-ID.
struct Table<C> {
    slots: Vec<Option<(Box<[u8]>, C)>>,
    free: Vec<u32>,
    by_id: HashMap<Box<[u8]>, u32>,
}

impl<C> Table<C> {
    fn new() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn insert(&mut self, id: &[u8], c: C) -> u32 {
        let entry = Some((Box::<[u8]>::from(id), c));
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(e) = self.slots.get_mut(s as usize) {
                    *e = entry;
                }
                s
            }
            None => {
                self.slots.push(entry);
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(id.into(), slot);
        slot
    }

    fn find(&self, id: &[u8]) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    fn get(&mut self, slot: u32) -> Option<&mut C> {
        self.slots.get_mut(slot as usize)?.as_mut().map(|(_, c)| c)
    }

    fn remove(&mut self, slot: u32) -> Option<C> {
        let (id, c) = self.slots.get_mut(slot as usize)?.take()?;
        self.by_id.remove(&id);
        self.free.push(slot);
        Some(c)
    }

    fn clear(&mut self) -> usize {
        let n = self.by_id.len();
        self.slots.clear();
        self.free.clear();
        self.by_id.clear();
        n
    }
}

// ------------------------------------------------------------------------ UAS

#[derive(Default)]
pub struct UasCounters {
    pub invites: AtomicU64,
    pub retx_sent: AtomicU64,
    pub retx_recv: AtomicU64,
    pub bad: AtomicU64,
    pub table_full: AtomicU64,
    pub send_dropped: AtomicU64,
}

#[derive(PartialEq)]
enum UasState {
    /// 200 sent, retransmitted per Timer G until the ACK.
    Answered,
    Confirmed,
    Terminated,
}

struct UasCall {
    id: u64,
    state: UasState,
    /// The 200 to the INVITE while waiting for the ACK.
    ok: Vec<u8>,
    dest: SocketAddr,
    retx_at: Option<Instant>,
    retx_every: Duration,
    expire_at: Instant,
}

const RETX: u8 = 0;
const EXPIRE: u8 = 1;
const BYE_DUE: u8 = 2;

struct Uas {
    sock: Socket,
    local: SocketAddr,
    cfg: Config,
    pid: u32,
    next_id: u64,
    sdp: Vec<u8>,
    calls: Table<UasCall>,
    timers: Timers,
    out: sys::SendQueue,
    counters: Arc<UasCounters>,
    scratch: Vec<u8>,
}

impl Uas {
    fn cap(&self) -> usize {
        self.cfg.max_calls.saturating_mul(4).max(1024)
    }

    fn run(mut self, stop: Arc<AtomicBool>) {
        let fd = self.sock.as_raw_fd();
        let mut rx = sys::RecvBatch::new();
        while !stop.load(Ordering::Relaxed) {
            let n = rx.recv(fd).unwrap_or(0);
            let now = Instant::now();
            for i in 0..n {
                match rx.get(i) {
                    Some((data, src)) => self.on_datagram(data, src, now),
                    None => {
                        self.counters.bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            self.on_timers(now);
            if self.out.pending() > 0 {
                self.out.flush(fd);
                self.counters
                    .send_dropped
                    .store(self.out.dropped, Ordering::Relaxed);
            }
            if n == 0 {
                let wait = if self.timers.is_empty() { 20 } else { 1 };
                sys::poll(fd, libc::POLLIN, wait);
            } else if n < BATCH && !self.cfg.batch.is_zero() {
                std::thread::sleep(self.cfg.batch);
            }
        }
    }

    fn on_datagram(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        let Ok(msg) = Message::parse(data) else {
            self.counters.bad.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (Some(method), Ok(cid), Ok(_)) = (msg.method(), msg.call_id(), msg.cseq()) else {
            // responses are not for us; a request without Call-ID/CSeq is malformed
            self.counters.bad.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let slot = self.calls.find(cid);
        let dest = response_dest(&msg, src);
        let local = self.local;
        match (method, slot) {
            (Method::Invite, Some(slot)) => {
                // A retransmitted INVITE gets the same final response again.
                self.counters.retx_recv.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = self.calls.get(slot) {
                    if c.state == UasState::Answered {
                        let ok = std::mem::take(&mut c.ok);
                        self.out.push(c.dest, |o| o.extend_from_slice(&ok));
                        c.ok = ok;
                        self.counters.retx_sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (Method::Invite, None) => {
                if self.calls.len() >= self.cap() {
                    self.counters.table_full.fetch_add(1, Ordering::Relaxed);
                    self.out.push(dest, |o| {
                        build_response(&msg, 503, "Service Unavailable", None, false, None, None, o)
                    });
                    return;
                }
                self.counters.invites.fetch_add(1, Ordering::Relaxed);
                self.next_id += 1;
                let id = self.next_id;
                self.scratch.clear();
                let _ = write!(self.scratch, "{}slTag01{id}", self.pid);
                let tag = &self.scratch[..];
                if self.cfg.uas_trying {
                    self.out.push(dest, |o| {
                        build_response(&msg, 100, "Trying", None, false, None, None, o)
                    });
                }
                self.out.push(dest, |o| {
                    build_response(&msg, 180, "Ringing", Some(tag), true, Some(local), None, o)
                });
                let mut ok = Vec::with_capacity(800);
                build_response(
                    &msg,
                    200,
                    "OK",
                    Some(tag),
                    true,
                    Some(local),
                    Some(&self.sdp),
                    &mut ok,
                );
                self.out.push(dest, |o| o.extend_from_slice(&ok));
                // Timer H: without an ACK by the time the UAC gives up, drop the call.
                let h = (64 * T1).min(self.cfg.hold + self.cfg.call_timeout + T1);
                let slot = self.calls.insert(
                    cid,
                    UasCall {
                        id,
                        state: UasState::Answered,
                        ok,
                        dest,
                        retx_at: Some(now + T1),
                        retx_every: T1,
                        expire_at: now + h,
                    },
                );
                self.timers.push((now + T1, slot, id, RETX));
                self.timers.push((now + h, slot, id, EXPIRE));
            }
            (Method::Ack, Some(slot)) => {
                let abandon = self.cfg.hold + self.cfg.call_timeout + 2 * T2;
                if let Some(c) = self.calls.get(slot) {
                    if c.state == UasState::Answered {
                        c.state = UasState::Confirmed;
                        c.ok = Vec::new();
                        c.retx_at = None;
                        // a dialog whose BYE never comes is dropped eventually
                        c.expire_at = now + abandon;
                        self.timers.push((c.expire_at, slot, c.id, EXPIRE));
                    } else {
                        self.counters.retx_recv.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (Method::Ack, None) => {}
            (Method::Bye, Some(slot)) => {
                if let Some(c) = self.calls.get(slot) {
                    if c.state == UasState::Terminated {
                        self.counters.retx_recv.fetch_add(1, Ordering::Relaxed);
                        self.counters.retx_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    c.state = UasState::Terminated;
                    c.ok = Vec::new();
                    c.retx_at = None;
                    c.expire_at = now + UAS_LINGER;
                    self.timers.push((c.expire_at, slot, c.id, EXPIRE));
                }
                self.out.push(dest, |o| {
                    build_response(&msg, 200, "OK", None, false, Some(local), None, o)
                });
            }
            (Method::Bye, None) | (Method::Cancel, None) => self.out.push(dest, |o| {
                build_response(
                    &msg,
                    481,
                    "Call/Transaction Does Not Exist",
                    None,
                    false,
                    None,
                    None,
                    o,
                )
            }),
            // The final response went out with the INVITE: CANCEL has nothing to cancel.
            (Method::Cancel, Some(_)) | (Method::Options, _) => self.out.push(dest, |o| {
                build_response(&msg, 200, "OK", None, false, None, None, o)
            }),
            _ => self.out.push(dest, |o| {
                build_response(&msg, 501, "Not Implemented", None, false, None, None, o)
            }),
        }
    }

    fn on_timers(&mut self, now: Instant) {
        for _ in 0..MAX_TIMERS {
            let Some((at, slot, id, kind)) = self.timers.peek() else {
                return;
            };
            if at > now {
                return;
            }
            self.timers.pop();
            let Some(c) = self.calls.get(slot).filter(|c| c.id == id) else {
                continue;
            };
            match kind {
                RETX if c.retx_at == Some(at) && c.state == UasState::Answered => {
                    // Timer G: the 200 again until the ACK, doubling up to T2.
                    let ok = std::mem::take(&mut c.ok);
                    self.out.push(c.dest, |o| o.extend_from_slice(&ok));
                    c.ok = ok;
                    c.retx_every = (c.retx_every * 2).min(T2);
                    let next = now + c.retx_every;
                    c.retx_at = Some(next);
                    self.timers.push((next, slot, id, RETX));
                    self.counters.retx_sent.fetch_add(1, Ordering::Relaxed);
                }
                EXPIRE if c.expire_at == at => {
                    self.calls.remove(slot);
                }
                _ => {}
            }
        }
    }
}

// ------------------------------------------------------------------------ UAC

#[derive(PartialEq, Clone, Copy)]
enum UacState {
    /// INVITE sent, retransmitted per Timer A until a provisional.
    Calling,
    Proceeding,
    /// ACK sent, BYE due after the hold time.
    Confirmed,
    /// BYE sent, retransmitted per Timer E until the final.
    Terminating,
}

struct UacCall {
    n: u64,
    state: UacState,
    started: Instant,
    retx_at: Option<Instant>,
    retx_every: Duration,
    bye_at: Option<Instant>,
    dialog: Option<Dialog>,
}

/// One trial's outcome as the generator saw it.
#[derive(Debug, Default, Clone)]
pub struct TrialStats {
    pub offered: f64,
    pub secs: f64,
    /// Calls due in the trial (offered rate x seconds).
    pub planned: u64,
    /// Calls started (INVITE sent or refused for a full table).
    pub attempted: u64,
    pub invites_sent: u64,
    /// INVITEs per second from the first to the last one sent.
    pub achieved_cps: f64,
    pub completed: u64,
    pub failed: u64,
    pub failed_timeout: u64,
    pub failed_status: u64,
    pub failed_table_full: u64,
    pub failed_bad_2xx: u64,
    /// The last non-2xx final status seen, 0 if none.
    pub last_fail_status: u16,
    /// Retransmissions sent/received, both sides (a re-sent ACK or 200 counts).
    pub retx_sent: u64,
    pub retx_recv: u64,
    /// Late or unmatched responses at the UAC (e.g. a 2xx retransmission after the call ended).
    pub stray: u64,
    pub bad_msgs: u64,
    pub send_dropped: u64,
    /// INVITE -> first 2xx, microseconds, sorted.
    pub setup_us: Vec<u32>,
    /// Wall time from the first INVITE until every call ended.
    pub wall_s: f64,
}

impl TrialStats {
    /// Percentile `p` (0..=1) of the setup latency in milliseconds.
    pub fn setup_ms(&self, p: f64) -> f64 {
        if self.setup_us.is_empty() {
            return 0.0;
        }
        let i = ((self.setup_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.setup_us.get(i).copied().unwrap_or(0)) / 1000.0
    }

    /// Zero failed calls, every planned call attempted, and at least 99% of the offered rate.
    pub fn pass(&self) -> bool {
        self.failed == 0
            && self.attempted == self.planned
            && self.completed == self.planned
            && self.achieved_cps >= 0.99 * self.offered
    }
}

struct Uac {
    sock: Socket,
    ident: UacIdent,
    cfg: Config,
    next_n: u64,
    calls: Table<UacCall>,
    timers: Timers,
    out: sys::SendQueue,
    key: Vec<u8>,
    st: TrialStats,
}

impl Uac {
    fn fail(&mut self, slot: u32, why: Fail) {
        self.calls.remove(slot);
        self.st.failed += 1;
        match why {
            Fail::Timeout => self.st.failed_timeout += 1,
            Fail::Status(code) => {
                self.st.failed_status += 1;
                self.st.last_fail_status = code;
            }
            Fail::Bad2xx => self.st.failed_bad_2xx += 1,
        }
    }

    fn start_call(&mut self, now: Instant) {
        let n = self.next_n;
        self.next_n += 1;
        self.st.attempted += 1;
        if self.calls.len() >= self.cfg.max_calls {
            self.st.failed += 1;
            self.st.failed_table_full += 1;
            return;
        }
        let ident = &self.ident;
        self.out.push(ident.target, |o| ident.invite(n, o));
        self.st.invites_sent += 1;
        self.key.clear();
        ident.call_id(n, &mut self.key);
        let slot = self.calls.insert(
            &self.key,
            UacCall {
                n,
                state: UacState::Calling,
                started: now,
                retx_at: Some(now + T1),
                retx_every: T1,
                bye_at: None,
                dialog: None,
            },
        );
        self.timers.push((now + T1, slot, n, RETX));
        let deadline = now + self.cfg.hold + self.cfg.call_timeout;
        self.timers.push((deadline, slot, n, EXPIRE));
    }

    fn send_bye(&mut self, slot: u32, now: Instant) {
        let ident = &self.ident;
        let Some(c) = self.calls.get(slot) else {
            return;
        };
        let Some(d) = &c.dialog else { return };
        let n = c.n;
        self.out
            .push(d.next_hop, |o| ident.in_dialog(Method::Bye, n, d, o));
        c.state = UacState::Terminating;
        c.bye_at = None;
        c.retx_every = T1;
        c.retx_at = Some(now + T1);
        self.timers.push((now + T1, slot, n, RETX));
    }

    fn on_datagram(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        let Ok(msg) = Message::parse(data) else {
            self.st.bad_msgs += 1;
            return;
        };
        if let (Some(method), Ok(_), Ok(_)) = (msg.method(), msg.call_id(), msg.cseq()) {
            // No request is part of this flow; a proxy's OPTIONS keep-alive gets its 200.
            let dest = response_dest(&msg, src);
            match method {
                Method::Ack => {}
                Method::Options => self.out.push(dest, |o| {
                    build_response(&msg, 200, "OK", None, false, None, None, o)
                }),
                _ => self.out.push(dest, |o| {
                    build_response(
                        &msg,
                        481,
                        "Call/Transaction Does Not Exist",
                        None,
                        false,
                        None,
                        None,
                        o,
                    )
                }),
            }
            self.st.stray += 1;
            return;
        }
        let (Some(code), Ok(cid), Ok(cseq)) = (msg.status(), msg.call_id(), msg.cseq()) else {
            self.st.bad_msgs += 1;
            return;
        };
        let Some(slot) = self.calls.find(cid) else {
            self.st.stray += 1;
            if cseq.method == Method::Invite && (200..300).contains(&code) {
                self.st.retx_recv += 1;
            }
            return;
        };
        let ident = &self.ident;
        let Some(c) = self.calls.get(slot) else {
            return;
        };
        let n = c.n;
        match (cseq.method, code) {
            (Method::Invite, 100..=199) => {
                if c.state == UacState::Calling {
                    c.state = UacState::Proceeding;
                    c.retx_at = None;
                }
            }
            (Method::Invite, 200..=299) => {
                if let Some(d) = &c.dialog {
                    // 2xx retransmission: the ACK again (13.2.2.4).
                    self.st.retx_recv += 1;
                    self.st.retx_sent += 1;
                    self.out
                        .push(d.next_hop, |o| ident.in_dialog(Method::Ack, n, d, o));
                    return;
                }
                if self.st.setup_us.len() < MAX_SAMPLES {
                    let us = now.duration_since(c.started).as_micros();
                    self.st.setup_us.push(us.min(u128::from(u32::MAX)) as u32);
                }
                let d = match Dialog::from_2xx(&msg) {
                    Ok(d) => d,
                    Err(_) => return self.fail(slot, Fail::Bad2xx),
                };
                self.out
                    .push(d.next_hop, |o| ident.in_dialog(Method::Ack, n, &d, o));
                c.dialog = Some(d);
                c.state = UacState::Confirmed;
                c.retx_at = None;
                if self.cfg.hold.is_zero() {
                    self.send_bye(slot, now);
                } else {
                    let at = now + self.cfg.hold;
                    c.bye_at = Some(at);
                    self.timers.push((at, slot, n, BYE_DUE));
                }
            }
            (Method::Invite, _) => {
                // The non-2xx ACK belongs to the INVITE transaction: it goes where the INVITE
                // went (17.1.1.3).
                let to = msg.header(HeaderName::To).unwrap_or_default();
                self.out.push(ident.target, |o| ident.ack_non2xx(n, to, o));
                self.fail(slot, Fail::Status(code));
            }
            (Method::Bye, 100..=199) => {
                if c.state == UacState::Terminating {
                    // Timer E continues at T2 once a provisional arrived (17.1.2.2).
                    c.retx_every = T2;
                }
            }
            (Method::Bye, 200..=299) => {
                if c.state == UacState::Terminating {
                    self.calls.remove(slot);
                    self.st.completed += 1;
                }
            }
            (Method::Bye, _) => {
                if c.state == UacState::Terminating {
                    self.fail(slot, Fail::Status(code));
                }
            }
            _ => self.st.stray += 1,
        }
    }

    fn on_timers(&mut self, now: Instant) {
        for _ in 0..MAX_TIMERS {
            let Some((at, slot, n, kind)) = self.timers.peek() else {
                return;
            };
            if at > now {
                return;
            }
            self.timers.pop();
            let ident = &self.ident;
            let Some(c) = self.calls.get(slot).filter(|c| c.n == n) else {
                continue;
            };
            match kind {
                RETX if c.retx_at == Some(at) => {
                    match (c.state, &c.dialog) {
                        // Timer A doubles without a cap; Timer E caps at T2.
                        (UacState::Calling, _) => {
                            self.out.push(ident.target, |o| ident.invite(n, o));
                            c.retx_every *= 2;
                        }
                        (UacState::Terminating, Some(d)) => {
                            self.out
                                .push(d.next_hop, |o| ident.in_dialog(Method::Bye, n, d, o));
                            c.retx_every = (c.retx_every * 2).min(T2);
                        }
                        _ => continue,
                    }
                    self.st.retx_sent += 1;
                    let next = now + c.retx_every;
                    c.retx_at = Some(next);
                    self.timers.push((next, slot, n, RETX));
                }
                BYE_DUE if c.bye_at == Some(at) => self.send_bye(slot, now),
                EXPIRE => self.fail(slot, Fail::Timeout),
                _ => {}
            }
        }
    }
}

enum Fail {
    Timeout,
    Status(u16),
    Bad2xx,
}

// ------------------------------------------------------------------------ generator

/// The UAC and UAS sockets, the UAS thread, and the UAC state carried from trial to trial.
pub struct Generator {
    uac: Uac,
    uas_counters: Arc<UasCounters>,
    stop: Arc<AtomicBool>,
    uas_thread: Option<JoinHandle<()>>,
}

impl Generator {
    pub fn start(cfg: Config) -> Result<Generator> {
        let uas_sock = bind(cfg.uas)?;
        let uac_sock = bind(cfg.uac)?;
        let pid = std::process::id();
        let counters = Arc::new(UasCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let uas = Uas {
            sock: uas_sock,
            local: cfg.uas,
            cfg: cfg.clone(),
            pid,
            next_id: 0,
            sdp: uas_sdp(cfg.uas),
            calls: Table::new(),
            timers: Timers::new(),
            out: sys::SendQueue::new(),
            counters: counters.clone(),
            scratch: Vec::new(),
        };
        let s = stop.clone();
        let uas_thread = std::thread::Builder::new()
            .name("sip-load-uas".into())
            .spawn(move || uas.run(s))?;
        let uac = Uac {
            sock: uac_sock,
            ident: UacIdent::new(cfg.uac, cfg.target, &cfg.number, pid),
            cfg,
            next_n: 1,
            calls: Table::new(),
            timers: Timers::new(),
            out: sys::SendQueue::new(),
            key: Vec::new(),
            st: TrialStats::default(),
        };
        Ok(Generator {
            uac,
            uas_counters: counters,
            stop,
            uas_thread: Some(uas_thread),
        })
    }

    /// Offers `rate` calls/s for `secs`, INVITEs spread evenly (call k is due at k/rate), then
    /// waits until every call completed or failed (at most hold + call timeout after the last
    /// INVITE). Runs the UAC on the calling thread.
    pub fn run_trial(&mut self, rate: f64, secs: f64) -> TrialStats {
        let u = &mut self.uac;
        let c = &self.uas_counters;
        let uas0 = (
            c.retx_sent.load(Ordering::Relaxed),
            c.retx_recv.load(Ordering::Relaxed),
            c.send_dropped.load(Ordering::Relaxed),
        );
        let planned = (rate * secs).round().max(0.0) as u64;
        u.st = TrialStats {
            offered: rate,
            secs,
            planned,
            setup_us: Vec::with_capacity((planned as usize).min(MAX_SAMPLES)),
            ..TrialStats::default()
        };
        let drop0 = u.out.dropped;
        let fd: RawFd = u.sock.as_raw_fd();
        let mut rx = sys::RecvBatch::new();
        let start = Instant::now();
        let linger = u.cfg.hold + u.cfg.call_timeout + Duration::from_secs(1);
        // The sending window may overrun `secs` while the loop catches up; it stays bounded.
        let hard_end = start + Duration::from_secs_f64(secs * 2.0 + 1.0) + linger;
        let mut last_invite = start;
        loop {
            let now = Instant::now();
            if now >= hard_end {
                break;
            }
            let mut due_more = false;
            if u.st.attempted < planned {
                let due =
                    ((now.duration_since(start).as_secs_f64() * rate) as u64 + 1).min(planned);
                let mut k = 0;
                while u.st.attempted < due && k < MAX_BURST {
                    u.start_call(now);
                    k += 1;
                }
                if k > 0 {
                    last_invite = now;
                }
                due_more = u.st.attempted < due;
            } else if u.calls.len() == 0 {
                break;
            }
            let mut got = 0;
            for _ in 0..8 {
                let n = rx.recv(fd).unwrap_or(0);
                for i in 0..n {
                    match rx.get(i) {
                        Some((data, src)) => u.on_datagram(data, src, now),
                        None => u.st.bad_msgs += 1,
                    }
                }
                got += n;
                if u.out.pending() > 0 {
                    u.out.flush(fd);
                }
                if n < BATCH {
                    break;
                }
            }
            u.on_timers(Instant::now());
            if u.out.pending() > 0 {
                u.out.flush(fd);
            }
            if got == 0 && !due_more {
                // The next INVITE is due within 1/rate; wait at most 1 ms (the pacing tick).
                sys::poll(fd, libc::POLLIN, 1);
            } else if got < BATCH && !due_more && !u.cfg.batch.is_zero() {
                std::thread::sleep(u.cfg.batch);
            }
        }
        // Whatever is still open at the hard end failed.
        let left = u.calls.clear() as u64;
        u.timers.clear();
        u.st.failed += left;
        u.st.failed_timeout += left;
        let end = Instant::now();
        let st = &mut u.st;
        st.wall_s = end.duration_since(start).as_secs_f64();
        // Call k is due at k/rate: n INVITEs sent by `last_invite` keep pace when
        // last_invite - start <= (n-1)/rate, so measure over (n-1) intervals plus one.
        let span = last_invite.duration_since(start).as_secs_f64() + 1.0 / rate.max(1e-9);
        st.achieved_cps = if st.invites_sent > 0 {
            st.invites_sent as f64 / span.max(secs)
        } else {
            0.0
        };
        st.retx_sent += c.retx_sent.load(Ordering::Relaxed) - uas0.0;
        st.retx_recv += c.retx_recv.load(Ordering::Relaxed) - uas0.1;
        st.send_dropped =
            (u.out.dropped - drop0) + (c.send_dropped.load(Ordering::Relaxed) - uas0.2);
        st.setup_us.sort_unstable();
        std::mem::take(&mut u.st)
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.uas_thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ident() -> UacIdent {
        UacIdent::new(
            sa("127.0.67.11:5091"),
            sa("127.0.67.1:5070"),
            "4930123456",
            42,
        )
    }

    #[test]
    fn invite_parses_back_as_the_harness_invite() {
        let mut b = Vec::new();
        ident().invite(7, &mut b);
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(
            m.request_uri(),
            Some(&b"sip:4930123456@127.0.67.1:5070"[..])
        );
        assert_eq!(m.call_id().unwrap(), b"7-42@127.0.67.11");
        let cseq = m.cseq().unwrap();
        assert_eq!((cseq.number, cseq.method), (1, Method::Invite));
        let via = m.top_via().unwrap();
        assert_eq!(via.host, b"127.0.67.11");
        assert_eq!(via.port, Some(5091));
        assert!(via.has_rfc3261_branch());
        assert_eq!(m.from().unwrap().tag, Some(&b"42slTag007"[..]));
        assert_eq!(m.to().unwrap().tag, None);
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
        let body = std::str::from_utf8(m.body()).unwrap();
        assert!(body.starts_with("v=0\r\no=gw 53655765 2353687637 IN IP4 127.0.67.11\r\n"));
        assert!(body.contains("m=audio 6000 RTP/AVP 8 0\r\n"));
        assert!(body.ends_with("a=sendrecv\r\n"));
        // a retransmission is the very same datagram
        let mut again = Vec::new();
        ident().invite(7, &mut again);
        assert_eq!(b, again);
    }

    /// The UAS side: the 200 to an INVITE that went through two record-routing proxies.
    fn two_proxy_200() -> Vec<u8> {
        let mut inv = Vec::new();
        ident().invite(3, &mut inv);
        // What the UAS receives: two more Vias and two Record-Routes (p2 nearest the UAS),
        // one of them in a comma list with a parameter.
        let text = String::from_utf8(inv).unwrap().replacen(
            "Via: ",
            "Via: SIP/2.0/UDP 127.0.67.2:5080;branch=z9hG4bKp2;rport=5080;received=127.0.67.2\r\nVia: SIP/2.0/UDP 127.0.67.1:5070;branch=z9hG4bKp1\r\nRecord-Route: <sip:127.0.67.2:5080;lr>\r\nRecord-Route: <sip:127.0.67.1:5070;lr;ftag=x>\r\nVia: ",
            1,
        );
        let req = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(
            response_dest(&req, sa("127.0.67.99:1")),
            sa("127.0.67.2:5080")
        );
        let mut ok = Vec::new();
        let sdp = uas_sdp(sa("127.0.67.21:5090"));
        build_response(
            &req,
            200,
            "OK",
            Some(b"t1"),
            true,
            Some(sa("127.0.67.21:5090")),
            Some(&sdp),
            &mut ok,
        );
        ok
    }

    #[test]
    fn response_copies_the_dialog_fields_and_adds_the_to_tag() {
        let ok = two_proxy_200();
        let m = Message::parse(&ok).unwrap();
        assert_eq!(m.status(), Some(200));
        let vias: Vec<_> = m.vias().map(|v| v.unwrap().host).collect();
        assert_eq!(vias, [&b"127.0.67.2"[..], b"127.0.67.1", b"127.0.67.11"]);
        let rr: Vec<_> = m.record_routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(
            rr,
            [
                &b"sip:127.0.67.2:5080;lr"[..],
                b"sip:127.0.67.1:5070;lr;ftag=x"
            ]
        );
        assert_eq!(m.to().unwrap().tag, Some(&b"t1"[..]));
        assert_eq!(m.from().unwrap().tag, Some(&b"42slTag003"[..]));
        assert_eq!(m.call_id().unwrap(), b"3-42@127.0.67.11");
        assert_eq!(m.cseq().unwrap().method, Method::Invite);
        assert_eq!(
            m.contact().unwrap().unwrap().uri,
            b"sip:pbx@127.0.67.21:5090;transport=UDP"
        );
        assert!(m.body().starts_with(b"v=0\r\no=pbx "));
        // the BYE's 200 keeps the To tag it already has and carries no Record-Route
        let mut bye = Vec::new();
        let d = Dialog::from_2xx(&m).unwrap();
        ident().in_dialog(Method::Bye, 3, &d, &mut bye);
        let bye = Message::parse(&bye).unwrap();
        let mut r = Vec::new();
        build_response(&bye, 200, "OK", Some(b"zz"), false, None, None, &mut r);
        let r = Message::parse(&r).unwrap();
        assert_eq!(r.to().unwrap().tag, Some(&b"t1"[..]));
        assert_eq!(r.record_routes().count(), 0);
        assert_eq!(r.cseq().unwrap().method, Method::Bye);
    }

    #[test]
    fn route_set_is_the_record_route_reversed_with_loose_routing() {
        let ok = two_proxy_200();
        let m = Message::parse(&ok).unwrap();
        let d = Dialog::from_2xx(&m).unwrap();
        // the proxy nearest the UAC (last Record-Route) is the first hop
        assert_eq!(d.next_hop, sa("127.0.67.1:5070"));
        assert_eq!(&*d.request_uri, b"sip:pbx@127.0.67.21:5090;transport=UDP");
        for method in [Method::Ack, Method::Bye] {
            let mut b = Vec::new();
            ident().in_dialog(method, 3, &d, &mut b);
            let r = Message::parse(&b).unwrap();
            assert_eq!(r.method(), Some(method));
            assert_eq!(
                r.request_uri(),
                Some(&b"sip:pbx@127.0.67.21:5090;transport=UDP"[..])
            );
            let routes: Vec<_> = r.routes().map(|x| x.unwrap().uri).collect();
            assert_eq!(
                routes,
                [
                    &b"sip:127.0.67.1:5070;lr;ftag=x"[..],
                    b"sip:127.0.67.2:5080;lr"
                ]
            );
            assert_eq!(r.to().unwrap().tag, Some(&b"t1"[..]));
            assert_eq!(r.from().unwrap().tag, Some(&b"42slTag003"[..]));
            assert_eq!(r.call_id().unwrap(), b"3-42@127.0.67.11");
            let cseq = r.cseq().unwrap();
            assert_eq!(cseq.number, if method == Method::Ack { 1 } else { 2 });
            // a new transaction: not the INVITE's branch
            assert_ne!(r.top_via().unwrap().branch, Some(&b"z9hG4bK-42-3-inv"[..]));
        }
    }

    #[test]
    fn strict_router_becomes_the_request_uri() {
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.67.11:5091;branch=z9hG4bKx\r\nRecord-Route: <sip:127.0.67.2:5080;lr>, <sip:127.0.67.1:5070>\r\nFrom: <sip:a@b>;tag=a\r\nTo: <sip:c@d>;tag=b\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:pbx@127.0.67.21:5090>\r\nContent-Length: 0\r\n\r\n";
        let d = Dialog::from_2xx(&Message::parse(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(&*d.request_uri, b"sip:127.0.67.1:5070");
        assert_eq!(d.next_hop, sa("127.0.67.1:5070"));
        assert_eq!(
            &*d.route,
            b"<sip:127.0.67.2:5080;lr>, <sip:pbx@127.0.67.21:5090>"
        );
        // no Record-Route: straight to the Contact
        let direct = text.replace(
            "Record-Route: <sip:127.0.67.2:5080;lr>, <sip:127.0.67.1:5070>\r\n",
            "",
        );
        let d = Dialog::from_2xx(&Message::parse(direct.as_bytes()).unwrap()).unwrap();
        assert_eq!(d.next_hop, sa("127.0.67.21:5090"));
        assert!(d.route.is_empty());
    }

    #[test]
    fn unusable_2xx_is_refused() {
        let base = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.67.11:5091;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=a\r\nTo: <sip:c@d>;tag=b\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:pbx@127.0.67.21:5090>\r\nContent-Length: 0\r\n\r\n";
        let cases = [
            base.replace("Contact: <sip:pbx@127.0.67.21:5090>\r\n", ""),
            base.replace("To: <sip:c@d>;tag=b", "To: <sip:c@d>"),
            base.replace("pbx@127.0.67.21", "pbx@pbx.example"),
            base.replace(
                "Contact:",
                "Record-Route: <sip:proxy.example;lr>\r\nContact:",
            ),
        ];
        for c in cases {
            assert!(
                Dialog::from_2xx(&Message::parse(c.as_bytes()).unwrap()).is_err(),
                "{c}"
            );
        }
    }

    #[test]
    fn responses_follow_the_top_via() {
        let req = |via: &str| {
            format!("BYE sip:x@127.0.67.21 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=a\r\nTo: <sip:c@d>;tag=b\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")
        };
        let src = sa("127.0.67.9:7777");
        let cases = [
            (
                "SIP/2.0/UDP 127.0.67.1:5070;branch=z9hG4bKa",
                "127.0.67.1:5070",
            ),
            ("SIP/2.0/UDP 127.0.67.1;branch=z9hG4bKa", "127.0.67.1:5060"),
            (
                "SIP/2.0/UDP 127.0.67.1:5070;branch=z9hG4bKa;rport",
                "127.0.67.9:7777",
            ),
            (
                "SIP/2.0/UDP 127.0.67.1:5070;branch=z9hG4bKa;received=127.0.67.3;rport=6000",
                "127.0.67.3:6000",
            ),
            (
                "SIP/2.0/UDP proxy.example:5070;branch=z9hG4bKa",
                "127.0.67.9:7777",
            ),
        ];
        for (via, want) in cases {
            let text = req(via);
            let m = Message::parse(text.as_bytes()).unwrap();
            assert_eq!(response_dest(&m, src), sa(want), "{via}");
        }
    }

    #[test]
    fn non_2xx_ack_is_part_of_the_invite_transaction() {
        let mut b = Vec::new();
        ident().ack_non2xx(5, b"<sip:4930123456@127.0.67.1:5070>;tag=e", &mut b);
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.method(), Some(Method::Ack));
        assert_eq!(
            m.request_uri(),
            Some(&b"sip:4930123456@127.0.67.1:5070"[..])
        );
        assert_eq!(m.top_via().unwrap().branch, Some(&b"z9hG4bK-42-5-inv"[..]));
        assert_eq!(m.cseq().unwrap().number, 1);
        assert_eq!(m.to().unwrap().tag, Some(&b"e"[..]));
    }

    fn cfg(uac: &str, uas: &str, target: &str) -> Config {
        Config {
            uac: sa(uac),
            uas: sa(uas),
            target: sa(target),
            ..Config::default()
        }
    }

    #[test]
    fn uac_and_uas_complete_calls_directly() {
        let mut g = Generator::start(cfg(
            "127.0.67.11:6101",
            "127.0.67.21:6102",
            "127.0.67.21:6102",
        ))
        .unwrap();
        let st = g.run_trial(400.0, 0.5);
        assert_eq!(st.planned, 200);
        assert_eq!((st.completed, st.failed), (200, 0), "{st:?}");
        assert_eq!(st.setup_us.len(), 200);
        // a second trial on the same generator: fresh Call-IDs, same result
        let st = g.run_trial(400.0, 0.25);
        assert_eq!((st.completed, st.failed), (100, 0));
    }

    #[test]
    fn unanswered_calls_time_out_and_a_full_table_fails_attempts() {
        // Nobody listens at the target: every INVITE is retransmitted, then times out.
        let mut c = cfg("127.0.67.11:6111", "127.0.67.21:6112", "127.0.67.31:6113");
        c.call_timeout = Duration::from_millis(1200);
        c.max_calls = 5;
        let _blackhole = UdpSocket::bind("127.0.67.31:6113").unwrap();
        let mut g = Generator::start(c).unwrap();
        let st = g.run_trial(20.0, 0.5);
        assert_eq!(st.planned, 10);
        assert_eq!(st.completed, 0);
        assert_eq!(st.failed, 10);
        assert_eq!(st.failed_table_full, 5);
        assert_eq!(st.failed_timeout, 5);
        // Timer A: 500 ms, then 1000 ms later; 1.2 s allows exactly one retransmission each
        assert_eq!(st.retx_sent, 5);
        assert!(!st.pass());
    }

    #[test]
    fn uac_answers_a_proxy_options_keepalive() {
        let prober = UdpSocket::bind("127.0.67.1:6133").unwrap();
        prober
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut g = Generator::start(cfg(
            "127.0.67.11:6131",
            "127.0.67.21:6132",
            "127.0.67.21:6132",
        ))
        .unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let req = "OPTIONS sip:gw@127.0.67.11:6131 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.67.1:6133;branch=z9hG4bKka\r\nFrom: <sip:p@127.0.67.1>;tag=k\r\nTo: <sip:gw@127.0.67.11>\r\nCall-ID: ka1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
            prober.send_to(req.as_bytes(), "127.0.67.11:6131").unwrap();
            let mut buf = [0u8; 2048];
            let (n, _) = prober.recv_from(&mut buf).unwrap();
            let m = Message::parse(&buf[..n]).unwrap();
            (m.status(), m.call_id().unwrap().to_vec())
        });
        let st = g.run_trial(20.0, 0.5);
        assert_eq!(t.join().unwrap(), (Some(200), b"ka1".to_vec()));
        assert_eq!((st.completed, st.failed), (10, 0));
    }

    /// A record-routing forwarder that drops the first copy of every INVITE, ACK and BYE, so
    /// every retransmission path runs: Timer A (INVITE), Timer G (the UAS's 200 until the
    /// ACK, re-ACKed by the UAC) and Timer E (BYE).
    fn lossy_proxy(sock: UdpSocket, uas: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
        let me = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut dropped = 0;
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(m) = Message::parse(&buf[..n]) else {
                continue;
            };
            let (Some(method), Ok(cid)) = (m.method(), m.call_id()) else {
                continue;
            };
            if seen.insert((method.as_bytes().to_vec(), cid.to_vec())) {
                dropped += 1;
                continue;
            }
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let out = if method == Method::Invite {
                text.replacen("\r\n", &format!("\r\nRecord-Route: <sip:{me};lr>\r\n"), 1)
            } else {
                text
            };
            let _ = sock.send_to(out.as_bytes(), uas);
        }
        dropped
    }

    #[test]
    fn every_retransmission_path_recovers_a_lost_datagram() {
        let proxy = UdpSocket::bind("127.0.67.1:6123").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let p = std::thread::spawn(move || lossy_proxy(proxy, sa("127.0.67.21:6122"), s));
        // The BYE waits 200 ms after the ACK, so the UAS's Timer G (1 s) fires before the BYE
        // retransmission (1.2 s) ends the call.
        let mut c = cfg("127.0.67.11:6121", "127.0.67.21:6122", "127.0.67.1:6123");
        c.hold = Duration::from_millis(200);
        let mut g = Generator::start(c).unwrap();
        let st = g.run_trial(40.0, 0.25);
        stop.store(true, Ordering::Relaxed);
        let dropped = p.join().unwrap();
        assert_eq!((st.completed, st.failed), (10, 0), "{st:?}");
        assert_eq!(dropped, 30);
        // per call at least: INVITE (A), 200 (G), the ACK again, BYE (E)
        assert!(st.retx_sent >= 40, "{st:?}");
        assert!(st.retx_recv >= 10, "{st:?}");
        assert!(st.setup_ms(0.5) >= 500.0, "{st:?}");
    }
}
