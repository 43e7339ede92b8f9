//! A small SIP user agent over real UDP sockets: the simulated gateway and PBXs of
//! `intertrunk demo`, and the far ends of the binary's integration tests.
//!
//! It is deliberately simple (blocking sockets, one thread per role, messages built with
//! `format!`): it is a test peer, not part of the relay's data path. It still follows RFC 3261
//! closely enough to be a strict peer: it checks tags, follows the Record-Route set, retransmits
//! on its own timer and ACKs every final response.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::wire::sdp::Sdp;
use crate::wire::sip::{Message, Method};

/// How a callee answers an INVITE.
#[derive(Clone, Debug)]
pub struct Answer {
    /// Final response code: 200 answers; anything else rejects.
    pub code: u16,
    /// Time between 180 Ringing and the final response (`None`: ring until CANCEL).
    pub ring: Option<Duration>,
    /// After this long in the call, the callee sends BYE itself.
    pub hang_up_after: Option<Duration>,
}

impl Default for Answer {
    fn default() -> Self {
        Answer {
            code: 200,
            ring: Some(Duration::from_millis(20)),
            hang_up_after: None,
        }
    }
}

/// Counters of a callee, readable while it runs.
#[derive(Default, Debug)]
pub struct CalleeStats {
    pub invites: AtomicU64,
    pub answered: AtomicU64,
    pub rejected: AtomicU64,
    pub cancelled: AtomicU64,
    pub byes_received: AtomicU64,
    pub byes_sent: AtomicU64,
    pub acks: AtomicU64,
    pub options: AtomicU64,
    pub rtp_echoed: AtomicU64,
}

/// A trunk peer that answers calls (the gateway or a PBX, as seen from the relay).
pub struct Callee {
    pub addr: SocketAddr,
    pub stats: Arc<CalleeStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Callee {
    /// Listens on `addr` (SIP) and on an ephemeral RTP port of the same ip, echoing RTP.
    pub fn spawn(addr: SocketAddr, answer: Answer) -> io::Result<Callee> {
        let sip = UdpSocket::bind(addr)?;
        let addr = sip.local_addr()?;
        sip.set_read_timeout(Some(Duration::from_millis(20)))?;
        let rtp = UdpSocket::bind(SocketAddr::new(addr.ip(), 0))?;
        rtp.set_read_timeout(Some(Duration::from_millis(50)))?;
        let rtp_addr = rtp.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(CalleeStats::default());
        let mut threads = Vec::new();
        {
            let (stop, stats) = (stop.clone(), stats.clone());
            threads.push(std::thread::spawn(move || echo_rtp(rtp, &stop, &stats)));
        }
        {
            let (stop, stats) = (stop.clone(), stats.clone());
            threads.push(std::thread::spawn(move || {
                CalleeLoop::new(sip, rtp_addr, answer, stats).run(&stop)
            }));
        }
        Ok(Callee {
            addr,
            stats,
            stop,
            threads,
        })
    }
}

impl Drop for Callee {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn echo_rtp(sock: UdpSocket, stop: &AtomicBool, stats: &CalleeStats) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, src)) = sock.recv_from(&mut buf) {
            if sock.send_to(&buf[..n], src).is_ok() {
                stats.rtp_echoed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One call as the callee sees it.
struct IncomingCall {
    call_id: String,
    local_tag: String,
    /// The INVITE's headers needed to answer it again or to cancel it.
    invite: Vec<u8>,
    /// When to send the final response (None = waits for CANCEL).
    answer_at: Option<Instant>,
    final_sent: Option<Vec<u8>>,
    acked: bool,
    hang_up_at: Option<Instant>,
    /// The dialog for a BYE of our own: remote target, route set, From/To as we send them.
    bye: Option<(SocketAddr, Vec<u8>)>,
    last_retransmit: Instant,
    bye_received: bool,
    done_at: Option<Instant>,
}

struct CalleeLoop {
    sock: UdpSocket,
    local: SocketAddr,
    rtp_addr: SocketAddr,
    answer: Answer,
    stats: Arc<CalleeStats>,
    calls: Vec<IncomingCall>,
    next_tag: u64,
}

impl CalleeLoop {
    fn new(sock: UdpSocket, rtp_addr: SocketAddr, answer: Answer, stats: Arc<CalleeStats>) -> Self {
        CalleeLoop {
            local: sock
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0))),
            sock,
            rtp_addr,
            answer,
            stats,
            calls: Vec::new(),
            next_tag: 1,
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, src)) = self.sock.recv_from(&mut buf) {
                let datagram = buf[..n].to_vec();
                self.handle(&datagram, src);
            }
            self.tick(Instant::now());
        }
    }

    fn send(&self, bytes: &[u8], dst: SocketAddr) {
        let _ = self.sock.send_to(bytes, dst);
    }

    fn handle(&mut self, datagram: &[u8], src: SocketAddr) {
        let Ok(msg) = Message::parse(datagram) else {
            return;
        };
        let Ok(call_id) = msg.call_id() else { return };
        let call_id = String::from_utf8_lossy(call_id).into_owned();
        let now = Instant::now();
        match msg.method() {
            Some(Method::Invite) => {
                if let Some(call) = self.calls.iter().find(|c| c.call_id == call_id) {
                    // A retransmission: repeat the final response if there is one.
                    if let Some(last) = &call.final_sent {
                        self.send(last, src);
                    }
                    return;
                }
                self.stats.invites.fetch_add(1, Ordering::Relaxed);
                let tag = format!("cal{}", self.next_tag);
                self.next_tag += 1;
                let dst = invite_source(&msg).unwrap_or(src);
                self.send(
                    &response(&msg, 180, "Ringing", Some(&tag), Some(self.local), None),
                    dst,
                );
                self.calls.push(IncomingCall {
                    call_id,
                    local_tag: tag,
                    invite: datagram.to_vec(),
                    answer_at: self.answer.ring.map(|r| now + r),
                    final_sent: None,
                    acked: false,
                    hang_up_at: None,
                    bye: None,
                    last_retransmit: now,
                    bye_received: false,
                    done_at: None,
                });
            }
            Some(Method::Ack) => {
                if let Some(call) = self.calls.iter_mut().find(|c| c.call_id == call_id) {
                    if !call.acked {
                        self.stats.acks.fetch_add(1, Ordering::Relaxed);
                    }
                    call.acked = true;
                    if call.done_at.is_none() && call.bye.is_none() {
                        call.done_at = Some(now + Duration::from_secs(1));
                    }
                    if call.bye.is_some() && call.hang_up_at.is_none() {
                        call.hang_up_at = self.answer.hang_up_after.map(|d| now + d);
                    }
                }
            }
            Some(Method::Cancel) => {
                self.send(&response(&msg, 200, "OK", None, None, None), src);
                if let Some(call) = self.calls.iter_mut().find(|c| c.call_id == call_id) {
                    if call.final_sent.is_none() {
                        self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                        let Ok(invite) = Message::parse(&call.invite) else {
                            return;
                        };
                        let r = response(
                            &invite,
                            487,
                            "Request Terminated",
                            Some(&call.local_tag),
                            None,
                            None,
                        );
                        let _ = self.sock.send_to(&r, src);
                        call.final_sent = Some(r);
                        call.answer_at = None;
                    }
                }
            }
            Some(Method::Bye) => {
                // Count before answering: whoever sees the 200 may read the counters at once.
                if let Some(call) = self.calls.iter_mut().find(|c| c.call_id == call_id) {
                    if !call.bye_received {
                        self.stats.byes_received.fetch_add(1, Ordering::Relaxed);
                    }
                    call.bye_received = true;
                    call.done_at = Some(now);
                    call.hang_up_at = None;
                }
                self.send(&response(&msg, 200, "OK", None, None, None), src);
            }
            Some(Method::Options) => {
                self.stats.options.fetch_add(1, Ordering::Relaxed);
                self.send(&response(&msg, 200, "OK", None, None, None), src);
            }
            Some(_) => self.send(&response(&msg, 200, "OK", None, None, None), src),
            None => {
                // A response: to our own BYE; the call is over.
                if let (Some(code), Ok(cseq)) = (msg.status(), msg.cseq()) {
                    if code >= 200 && cseq.method == Method::Bye {
                        if let Some(call) = self.calls.iter_mut().find(|c| c.call_id == call_id) {
                            call.done_at = Some(now);
                            call.bye = None;
                        }
                    }
                }
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        let mut sends: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
        for call in &mut self.calls {
            let answer_due = call.final_sent.is_none() && call.answer_at.is_some_and(|t| now >= t);
            let retransmit_due = call.final_sent.is_some()
                && !call.acked
                && now - call.last_retransmit >= Duration::from_millis(500);
            let hang_up_due = call.hang_up_at.is_some_and(|t| now >= t);
            if !(answer_due || retransmit_due || hang_up_due) {
                // Nothing to send: spare the parse (a busy callee holds thousands of calls).
                continue;
            }
            let Ok(invite) = Message::parse(&call.invite) else {
                call.done_at = Some(now);
                continue;
            };
            let Some(src) = invite_source(&invite) else {
                call.done_at = Some(now);
                continue;
            };
            if call.final_sent.is_none() && call.answer_at.is_some_and(|t| now >= t) {
                let (code, reason) = match self.answer.code {
                    200 => (200, "OK"),
                    486 => (486, "Busy Here"),
                    503 => (503, "Service Unavailable"),
                    404 => (404, "Not Found"),
                    c => (c, "Rejected"),
                };
                let body = (code == 200).then(|| sdp_for(self.rtp_addr));
                let r = response(
                    &invite,
                    code,
                    reason,
                    Some(&call.local_tag),
                    Some(self.local),
                    body.as_deref(),
                );
                sends.push((r.clone(), src));
                call.final_sent = Some(r);
                call.last_retransmit = now;
                if code == 200 {
                    self.stats.answered.fetch_add(1, Ordering::Relaxed);
                    call.bye = self
                        .answer
                        .hang_up_after
                        .and_then(|_| dialog_for_bye(&invite, &call.local_tag, self.local, src));
                } else {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
            } else if let Some(last) = &call.final_sent {
                // Retransmit the final response until the ACK (Timer G, simplified).
                if !call.acked && now - call.last_retransmit >= Duration::from_millis(500) {
                    sends.push((last.clone(), src));
                    call.last_retransmit = now;
                }
            }
            if call.hang_up_at.is_some_and(|t| now >= t) {
                if let Some((dst, bye)) = &call.bye {
                    sends.push((bye.clone(), *dst));
                    self.stats.byes_sent.fetch_add(1, Ordering::Relaxed);
                }
                call.hang_up_at = Some(now + Duration::from_millis(500));
            }
        }
        for (bytes, dst) in sends {
            self.send(&bytes, dst);
        }
        self.calls
            .retain(|c| c.done_at.is_none_or(|d| now < d + Duration::from_secs(4)));
    }
}

/// Where responses to this INVITE go: the top Via's sent-by (rport / received honoured).
fn invite_source(invite: &Message<'_>) -> Option<SocketAddr> {
    let via = invite.top_via().ok()?;
    let host = via.received.unwrap_or(via.host);
    let ip: IpAddr = std::str::from_utf8(host).ok()?.parse().ok()?;
    let port = match via.rport {
        Some(Some(p)) => p,
        _ => via.port.unwrap_or(5060),
    };
    Some(SocketAddr::new(ip, port))
}

/// The BYE this callee sends to end the call itself: to the caller's Contact, through the
/// Record-Route set in the INVITE's order (RFC 3261 12.1.1).
fn dialog_for_bye(
    invite: &Message<'_>,
    local_tag: &str,
    local: SocketAddr,
    via_dst: SocketAddr,
) -> Option<(SocketAddr, Vec<u8>)> {
    let contact = invite.contact()?.ok()?;
    let routes: Vec<String> = invite
        .record_routes()
        .filter_map(|r| r.ok())
        .map(|r| format!("<{}>", String::from_utf8_lossy(r.uri)))
        .collect();
    let first_hop = match invite.record_routes().next() {
        Some(Ok(rr)) => uri_addr(rr.uri),
        _ => uri_addr(contact.uri),
    }
    .unwrap_or(via_dst);
    let from = String::from_utf8_lossy(invite.header(crate::wire::sip::HeaderName::To)?);
    let to = String::from_utf8_lossy(invite.header(crate::wire::sip::HeaderName::From)?);
    let call_id = String::from_utf8_lossy(invite.call_id().ok()?);
    let mut m = format!(
        "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKbye{}\r\n",
        String::from_utf8_lossy(contact.uri),
        local,
        local_tag
    );
    if !routes.is_empty() {
        m.push_str(&format!("Route: {}\r\n", routes.join(",")));
    }
    m.push_str(&format!(
        "From: {from};tag={local_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ));
    Some((first_hop, m.into_bytes()))
}

/// The ip:port of a `sip:` URI with an explicit numeric host.
fn uri_addr(uri: &[u8]) -> Option<SocketAddr> {
    let u = crate::wire::sip::Uri::parse(uri).ok()?;
    let ip: IpAddr = std::str::from_utf8(u.host).ok()?.parse().ok()?;
    Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

fn sdp_for(rtp: SocketAddr) -> String {
    let ip = rtp.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=- 1 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        rtp.port()
    )
}

/// A response to `req` built the way a simple UA does: Vias, From, To (+tag), Call-ID, CSeq,
/// and Record-Route mirrored for dialog-creating responses.
fn response(
    req: &Message<'_>,
    code: u16,
    reason: &str,
    tag: Option<&str>,
    contact: Option<SocketAddr>,
    sdp: Option<&str>,
) -> Vec<u8> {
    use crate::wire::sip::HeaderName as H;
    let mut m = format!("SIP/2.0 {code} {reason}\r\n");
    for h in req.headers() {
        let value = String::from_utf8_lossy(h.value);
        match h.name {
            H::Via | H::From | H::CallId | H::CSeq => m.push_str(&format!(
                "{}: {}\r\n",
                String::from_utf8_lossy(h.raw_name),
                value
            )),
            H::RecordRoute if code > 100 && code < 300 => {
                m.push_str(&format!("Record-Route: {value}\r\n"))
            }
            H::To => {
                let has_tag = req.to().ok().and_then(|t| t.tag).is_some();
                match tag {
                    Some(t) if !has_tag => m.push_str(&format!("To: {value};tag={t}\r\n")),
                    _ => m.push_str(&format!("To: {value}\r\n")),
                }
            }
            _ => {}
        }
    }
    if let Some(contact) = contact.filter(|_| (180..300).contains(&code)) {
        m.push_str(&format!("Contact: <sip:peer@{contact}>\r\n"));
    }
    match sdp {
        Some(body) => m.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => m.push_str("Content-Length: 0\r\n\r\n"),
    }
    m.into_bytes()
}

/// What happened to one call placed by a [`Caller`].
#[derive(Clone, Debug, Default)]
pub struct CallOutcome {
    /// The final response code (0: none arrived).
    pub status: u16,
    /// INVITE sent -> final response received.
    pub setup: Duration,
    pub rtp_sent: u64,
    pub rtp_received: u64,
    /// The BYE got its 200 (or the callee's BYE arrived and was answered).
    pub ended_cleanly: bool,
    /// The callee ended the call.
    pub ended_by_callee: bool,
    /// Where the answer told us to send RTP (the relay's caller-facing port when anchored).
    pub relay_media: Option<SocketAddr>,
    /// Packets sent from the intruder address (see [`Dial::inject_from`]).
    pub rtp_injected: u64,
}

/// What a caller does once the call is answered.
#[derive(Clone, Debug)]
pub struct Dial {
    pub number: String,
    /// RTP packets sent (20 ms apart) while the call is up.
    pub rtp_packets: u32,
    /// Time in the call after the media (0 = hang up at once).
    pub hold: Duration,
    /// Wait for the callee to send BYE instead of sending our own.
    pub wait_for_bye: Option<Duration>,
    /// Send CANCEL this long after the first provisional response.
    pub cancel_after: Option<Duration>,
    /// While the call's media flows, also send an RTP packet to the relay's media port from
    /// this address for each one of ours: an injection attempt the relay must drop.
    pub inject_from: Option<IpAddr>,
}

impl Dial {
    pub fn number(number: &str) -> Dial {
        Dial {
            number: number.to_string(),
            rtp_packets: 0,
            hold: Duration::ZERO,
            wait_for_bye: None,
            cancel_after: None,
            inject_from: None,
        }
    }
}

/// A trunk peer that places calls through the relay, from `ip` (an ephemeral port).
pub struct Caller {
    sip: UdpSocket,
    rtp: UdpSocket,
    relay: SocketAddr,
    seq: u64,
}

impl Caller {
    pub fn new(ip: IpAddr, relay: SocketAddr) -> io::Result<Caller> {
        let sip = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let rtp = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        rtp.set_read_timeout(Some(Duration::from_millis(2)))?;
        Ok(Caller {
            sip,
            rtp,
            relay,
            seq: 0,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sip.local_addr()
    }

    /// Places one call and follows it to its end. Bounded in time: 32 s at most (Timer B).
    pub fn call(&mut self, dial: &Dial) -> io::Result<CallOutcome> {
        self.seq += 1;
        let local = self.sip.local_addr()?;
        let rtp_local = self.rtp.local_addr()?;
        let call_id = format!(
            "{}-{}-{}@{}",
            std::process::id(),
            self.seq,
            local.port(),
            local.ip()
        );
        // A late retransmission for an earlier call on this socket is not ours.
        let ours = |m: &Message<'_>| m.call_id().ok() == Some(call_id.as_bytes());
        let tag = format!("clr{}", self.seq);
        let branch = format!("z9hG4bKinv{}x{}", self.seq, local.port());
        let family = if local.ip().is_ipv4() { "IP4" } else { "IP6" };
        let sdp = format!(
            "v=0\r\no=- 1 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
            ip = rtp_local.ip(),
            port = rtp_local.port()
        );
        let from = format!("<sip:+14255550199@{local};user=phone>;tag={tag}");
        let to = format!("<sip:{}@{};user=phone>", dial.number, self.relay);
        let invite = format!(
            "INVITE sip:{num}@{relay};user=phone SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{local}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            num = dial.number,
            relay = self.relay,
            len = sdp.len()
        );
        let started = Instant::now();
        let mut outcome = CallOutcome::default();
        self.sip.send_to(invite.as_bytes(), self.relay)?;

        // INVITE client transaction: Timer A retransmissions until a provisional, Timer B cap.
        let mut interval = Duration::from_millis(500);
        let mut next_retransmit = started + interval;
        let mut provisional_at: Option<Instant> = None;
        let mut cancel_sent = false;
        let mut buf = vec![0u8; 65536];
        let answer = loop {
            let now = Instant::now();
            if now - started > Duration::from_secs(32) {
                return Ok(outcome);
            }
            if let (Some(p), Some(after), false) = (provisional_at, dial.cancel_after, cancel_sent)
            {
                if now >= p + after {
                    let cancel = format!(
                        "CANCEL sip:{num}@{relay};user=phone SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                        num = dial.number,
                        relay = self.relay
                    );
                    self.sip.send_to(cancel.as_bytes(), self.relay)?;
                    cancel_sent = true;
                }
            }
            if provisional_at.is_none() && now >= next_retransmit {
                self.sip.send_to(invite.as_bytes(), self.relay)?;
                interval = (interval * 2).min(Duration::from_secs(4));
                next_retransmit = now + interval;
            }
            self.sip.set_read_timeout(Some(Duration::from_millis(10)))?;
            let Ok((n, _)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            let Ok(msg) = Message::parse(&buf[..n]) else {
                continue;
            };
            let (Some(code), Ok(cseq)) = (msg.status(), msg.cseq()) else {
                continue;
            };
            if cseq.method != Method::Invite || !ours(&msg) {
                continue;
            }
            if code < 200 {
                if code > 100 && provisional_at.is_none() {
                    provisional_at = Some(now);
                }
                provisional_at.get_or_insert(now);
                continue;
            }
            outcome.status = code;
            outcome.setup = started.elapsed();
            break buf[..n].to_vec();
        };
        let msg = Message::parse(&answer).map_err(|_| io::Error::other("unparseable final"))?;
        let to_with_tag = msg
            .header(crate::wire::sip::HeaderName::To)
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_default();
        if outcome.status >= 300 {
            // Non-2xx: ACK hop-by-hop to the relay, same branch (RFC 3261 17.1.1.3).
            let ack = format!(
                "ACK sip:{num}@{relay};user=phone SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nFrom: {from}\r\nTo: {to_with_tag}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                num = dial.number,
                relay = self.relay
            );
            self.sip.send_to(ack.as_bytes(), self.relay)?;
            return Ok(outcome);
        }
        // 2xx: the dialog. Route set = Record-Route in order; remote target = Contact.
        let routes: Vec<String> = msg
            .record_routes()
            .filter_map(|r| r.ok())
            .map(|r| format!("<{}>", String::from_utf8_lossy(r.uri)))
            .collect();
        let target = msg
            .contact()
            .and_then(|c| c.ok())
            .map(|c| String::from_utf8_lossy(c.uri).into_owned())
            .unwrap_or_else(|| format!("sip:{}@{}", dial.number, self.relay));
        let first_hop = match msg.record_routes().next() {
            Some(Ok(rr)) => uri_addr(rr.uri).unwrap_or(self.relay),
            _ => uri_addr(target.as_bytes()).unwrap_or(self.relay),
        };
        let media = Sdp::parse(msg.body()).ok().and_then(|s| {
            let m = s.media().next()?;
            Some(SocketAddr::new(m.connection?, m.port))
        });
        let route_header = if routes.is_empty() {
            String::new()
        } else {
            format!("Route: {}\r\n", routes.join(","))
        };
        let in_dialog = |method: &str, cseq: u32, branch: &str| {
            format!(
                "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n{route_header}From: {from}\r\nTo: {to_with_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let ack = in_dialog(
            "ACK",
            1,
            &format!("z9hG4bKack{}x{}", self.seq, local.port()),
        );
        self.sip.send_to(ack.as_bytes(), first_hop)?;

        // Media: 20 ms RTP packets to the answer's address, counting what comes back.
        if let Some(dst) = media {
            outcome.relay_media = Some(dst);
            let intruder = match dial.inject_from {
                Some(ip) => Some(UdpSocket::bind(SocketAddr::new(ip, 0))?),
                None => None,
            };
            let mut pkt = [0u8; 172];
            pkt[0] = 0x80;
            pkt[1] = 8;
            pkt[8..12].copy_from_slice(&(self.seq as u32).to_be_bytes());
            for i in 0..dial.rtp_packets {
                pkt[2..4].copy_from_slice(&(i as u16).to_be_bytes());
                pkt[4..8].copy_from_slice(&(i * 160).to_be_bytes());
                self.rtp.send_to(&pkt, dst)?;
                outcome.rtp_sent += 1;
                if let Some(intruder) = &intruder {
                    intruder.send_to(&pkt, dst)?;
                    outcome.rtp_injected += 1;
                }
                let slot = Instant::now() + Duration::from_millis(20);
                while Instant::now() < slot {
                    if let Ok((_, _)) = self.rtp.recv_from(&mut buf) {
                        outcome.rtp_received += 1;
                    }
                }
            }
            let drain_until = Instant::now() + Duration::from_millis(60);
            while Instant::now() < drain_until {
                if self.rtp.recv_from(&mut buf).is_ok() {
                    outcome.rtp_received += 1;
                }
            }
        }
        std::thread::sleep(dial.hold);

        let deadline = Instant::now() + dial.wait_for_bye.unwrap_or(Duration::from_secs(8));
        if dial.wait_for_bye.is_some() {
            // The callee hangs up: answer its BYE (and ACK retransmitted 2xx meanwhile).
            while Instant::now() < deadline {
                let Ok((n, src)) = self.sip.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(m) = Message::parse(&buf[..n]) else {
                    continue;
                };
                if !ours(&m) {
                    continue;
                }
                match m.method() {
                    Some(Method::Bye) => {
                        let ok = response(&m, 200, "OK", None, None, None);
                        self.sip.send_to(&ok, src)?;
                        outcome.ended_cleanly = true;
                        outcome.ended_by_callee = true;
                        return Ok(outcome);
                    }
                    None if m.status() == Some(200) => {
                        self.sip.send_to(ack.as_bytes(), first_hop)?;
                    }
                    _ => {}
                }
            }
            return Ok(outcome);
        }
        let bye = in_dialog(
            "BYE",
            2,
            &format!("z9hG4bKbye{}x{}", self.seq, local.port()),
        );
        self.sip.send_to(bye.as_bytes(), first_hop)?;
        let mut next = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if Instant::now() >= next {
                self.sip.send_to(bye.as_bytes(), first_hop)?;
                next = Instant::now() + Duration::from_millis(500);
            }
            let Ok((n, _)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            let Ok(m) = Message::parse(&buf[..n]) else {
                continue;
            };
            if !ours(&m) {
                continue;
            }
            match (m.status(), m.cseq()) {
                (Some(code), Ok(cseq)) if cseq.method == Method::Bye && code >= 200 => {
                    outcome.ended_cleanly = code == 200;
                    return Ok(outcome);
                }
                (Some(200), Ok(cseq)) if cseq.method == Method::Invite => {
                    self.sip.send_to(ack.as_bytes(), first_hop)?;
                }
                _ => {}
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn caller_and_callee_complete_a_call_with_media_directly() {
        let callee = Callee::spawn(loopback(), Answer::default()).unwrap();
        let mut caller = Caller::new(loopback().ip(), callee.addr).unwrap();
        let mut dial = Dial::number("+14255550100");
        dial.rtp_packets = 10;
        let out = caller.call(&dial).unwrap();
        assert_eq!(out.status, 200);
        assert!(out.ended_cleanly, "{out:?}");
        assert_eq!(out.rtp_sent, 10);
        assert_eq!(out.rtp_received, 10, "the callee echoes every packet");
        assert_eq!(callee.stats.byes_received.load(Ordering::Relaxed), 1);
        assert_eq!(callee.stats.acks.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn rejected_call_reports_the_code() {
        let answer = Answer {
            code: 486,
            ..Answer::default()
        };
        let callee = Callee::spawn(loopback(), answer).unwrap();
        let mut caller = Caller::new(loopback().ip(), callee.addr).unwrap();
        let out = caller.call(&Dial::number("100")).unwrap();
        assert_eq!(out.status, 486);
        assert_eq!(callee.stats.rejected.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn callee_hang_up_and_caller_cancel() {
        let answer = Answer {
            hang_up_after: Some(Duration::from_millis(50)),
            ..Answer::default()
        };
        let callee = Callee::spawn(loopback(), answer).unwrap();
        let mut caller = Caller::new(loopback().ip(), callee.addr).unwrap();
        let mut dial = Dial::number("100");
        dial.wait_for_bye = Some(Duration::from_secs(3));
        let out = caller.call(&dial).unwrap();
        assert!(out.ended_by_callee, "{out:?}");

        let ringing = Answer {
            ring: None,
            ..Answer::default()
        };
        let callee = Callee::spawn(loopback(), ringing).unwrap();
        let mut caller = Caller::new(loopback().ip(), callee.addr).unwrap();
        let mut dial = Dial::number("100");
        dial.cancel_after = Some(Duration::from_millis(20));
        let out = caller.call(&dial).unwrap();
        assert_eq!(out.status, 487);
        assert_eq!(callee.stats.cancelled.load(Ordering::Relaxed), 1);
    }
}
