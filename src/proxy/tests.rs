//! Simulated-network tests of the proxy core: virtual time, scripted peers (gateway, PBXs),
//! loss and reordering, against the built-in configuration or small configs of their own.

use crate::rng::Rng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::{Config, DEFAULT_CONFIG};
use crate::media::{Forward, PortBinder, PortRange, Relay, RelayConfig};
use crate::route::{LiveTable, RouteTable};
use crate::wire::sdp::Sdp;
use crate::wire::sip::{HeaderName, Message, Method, Uri};

const RELAY: &str = "127.0.0.1:5061";
const GW1: &str = "127.0.0.11:5060";
const GW2: &str = "127.0.0.12:5060";
const PBX1: &str = "127.0.0.21:5060";
const PBX2: &str = "127.0.0.22:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Port binder double: remembers what is bound, can refuse everything.
#[derive(Default)]
struct FakeBinder {
    bound: HashSet<u16>,
}

impl PortBinder for FakeBinder {
    fn bind_pair(&mut self, rtp_port: u16) -> std::io::Result<()> {
        assert!(self.bound.insert(rtp_port), "pair bound twice");
        Ok(())
    }
    fn release_pair(&mut self, rtp_port: u16) {
        assert!(self.bound.remove(&rtp_port), "released a pair never bound");
    }
}

struct Packet {
    at: Instant,
    src: SocketAddr,
    dst: SocketAddr,
    bytes: Vec<u8>,
}

type DropRule = Box<dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool>;

/// The relay core on a simulated network with virtual time.
struct Sim {
    t0: Instant,
    now: Instant,
    proxy: Proxy<FakeBinder>,
    relay_addr: SocketAddr,
    net: Vec<Packet>,
    inbox: HashMap<SocketAddr, VecDeque<(SocketAddr, Vec<u8>)>>,
    /// Peers that answer OPTIONS probes by themselves.
    answer_options: HashSet<SocketAddr>,
    drop: Option<DropRule>,
    latency: Duration,
    jitter: Option<Rng>,
    events: Vec<Event>,
}

/// A config with two PSTN gateways behind one route (failover) and one PBX.
fn failover_config(gw1_fast_failover: bool) -> String {
    format!(
        r#"
[server]
sip_listen = ["udp:127.0.0.1:5060"]
media_address = "127.0.0.1"
media_ports = "30000-39999"
media_timeout_s = 30

[voice]
pstn_usages = ["ToPSTN", "ToPBX"]

[[trunk]]
identity = "PstnGateway:gw1"
address = "{GW1}"
pstn_usages = ["ToPBX"]
enable_fast_failover_timer = {gw1_fast_failover}
sip_response_code_translation_rules = ["Timeout503"]

[[trunk]]
identity = "PstnGateway:gw2"
address = "{GW2}"
pstn_usages = ["ToPBX"]

[[trunk]]
identity = "PstnGateway:pbx1"
address = "{PBX1}"
pstn_usages = ["ToPSTN"]

[[voice_route]]
identity = "PSTN"
number_pattern = '^\+\d+$'
pstn_usages = ["ToPSTN"]
pstn_gateway_list = ["PstnGateway:gw1", "PstnGateway:gw2"]

[[voice_route]]
identity = "PBX"
number_pattern = '^\+1425\d{{7}}$'
pstn_usages = ["ToPBX"]
pstn_gateway_list = ["PstnGateway:pbx1"]

[[response_code_translation_rule]]
identity = "Timeout503"
received_response_code = 408
translated_response_code = 503
"#
    )
}

impl Sim {
    fn new(config: &str) -> Sim {
        Sim::with_proxy(config, ProxyConfig::new(addr(RELAY)))
    }

    /// The default media port range with proxy settings of the test's own.
    fn with_proxy(config: &str, pcfg: ProxyConfig) -> Sim {
        Sim::with(
            config,
            pcfg,
            PortRange {
                first: 30000,
                last: 39999,
            },
        )
    }

    fn with(config: &str, pcfg: ProxyConfig, ports: PortRange) -> Sim {
        let cfg = Config::from_toml(config).unwrap_or_else(|e| panic!("config: {e:?}"));
        let cfg = Arc::new(cfg);
        let table = RouteTable::build(cfg.clone()).unwrap_or_else(|e| panic!("table: {e:?}"));
        let live = LiveTable::new(Arc::new(table));
        let relay = Relay::new(
            RelayConfig {
                media_address: cfg.server.media_address,
                ports,
                media_timeout: Duration::from_secs(u64::from(cfg.server.media_timeout_s)),
                latch_window: Duration::from_secs(2),
            },
            7,
        );
        let relay_addr = pcfg.local;
        let proxy = Proxy::new(pcfg, live.reader(), relay, FakeBinder::default(), 42);
        let t0 = Instant::now();
        let mut sim = Sim {
            t0,
            now: t0,
            proxy,
            relay_addr,
            net: Vec::new(),
            inbox: HashMap::new(),
            answer_options: [GW1, GW2, PBX1, PBX2].iter().map(|a| addr(a)).collect(),
            drop: None,
            latency: Duration::from_millis(1),
            jitter: None,
            events: Vec::new(),
        };
        sim.proxy.handle_timeout(t0);
        sim.pump();
        sim
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn delay(&mut self) -> Duration {
        match self.jitter.as_mut() {
            Some(r) => self.latency + Duration::from_millis(r.below(40)),
            None => self.latency,
        }
    }

    /// Moves what the proxy wants to send onto the network.
    fn pump(&mut self) {
        let mut buf = vec![0u8; 65536];
        while let Some(t) = self.proxy.poll_transmit(&mut buf) {
            let bytes = buf[..t.len].to_vec();
            let dropped = self
                .drop
                .as_mut()
                .is_some_and(|d| d(self.relay_addr, t.dst, &bytes));
            if !dropped {
                let at = self.now + self.delay();
                self.net.push(Packet {
                    at,
                    src: self.relay_addr,
                    dst: t.dst,
                    bytes,
                });
            }
        }
        while let Some(e) = self.proxy.poll_event() {
            self.events.push(e);
        }
    }

    /// A peer sends a datagram to the relay.
    fn send(&mut self, from: &str, bytes: &[u8]) {
        let src = addr(from);
        let dropped = self
            .drop
            .as_mut()
            .is_some_and(|d| d(src, self.relay_addr, bytes));
        if !dropped {
            let at = self.now + self.delay();
            self.net.push(Packet {
                at,
                src,
                dst: self.relay_addr,
                bytes: bytes.to_vec(),
            });
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..1_000_000 {
            let next_pkt = self.net.iter().map(|p| p.at).min();
            let next = match (next_pkt, self.proxy.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(next) = next.filter(|n| *n <= end) else {
                break;
            };
            self.now = self.now.max(next);
            if let Some(i) = self
                .net
                .iter()
                .enumerate()
                .filter(|(_, p)| p.at <= self.now)
                .min_by_key(|(_, p)| p.at)
                .map(|(i, _)| i)
            {
                let p = self.net.remove(i);
                if p.dst == self.relay_addr {
                    self.proxy.handle_datagram(self.now, p.src, p.dst, &p.bytes);
                } else {
                    self.deliver(p);
                }
            } else {
                self.proxy.handle_timeout(self.now);
            }
            self.pump();
        }
        self.now = end;
        self.proxy.handle_timeout(self.now);
        self.pump();
    }

    fn deliver(&mut self, p: Packet) {
        let Ok(m) = Message::parse(&p.bytes) else {
            panic!(
                "relay sent unparseable: {}",
                String::from_utf8_lossy(&p.bytes)
            );
        };
        if m.method() == Some(Method::Options) && self.answer_options.contains(&p.dst) {
            let r = reply(&p.bytes, 200, None, None, None);
            let dst = p.dst.to_string();
            self.send(&dst, &r);
            return;
        }
        self.inbox
            .entry(p.dst)
            .or_default()
            .push_back((p.src, p.bytes));
    }

    /// Next message a peer received (OPTIONS probes it answers are not shown).
    fn recv(&mut self, peer: &str) -> Option<Vec<u8>> {
        self.inbox.get_mut(&addr(peer))?.pop_front().map(|(_, b)| b)
    }

    /// Next message a peer received, which must exist (after letting the network run a bit).
    fn expect(&mut self, peer: &str) -> Vec<u8> {
        if self.inbox.get(&addr(peer)).is_none_or(|q| q.is_empty()) {
            self.run(Duration::from_millis(20));
        }
        self.recv(peer)
            .unwrap_or_else(|| panic!("{peer} received nothing at {:?}", self.elapsed()))
    }

    /// Next message, skipping responses with status `skip` (e.g. 100 Trying).
    fn expect_status(&mut self, peer: &str, code: u16) -> Vec<u8> {
        let m = self.expect(peer);
        let got = Message::parse(&m).unwrap().status();
        assert_eq!(
            got,
            Some(code),
            "{peer} got:\n{}",
            String::from_utf8_lossy(&m)
        );
        m
    }

    fn expect_method(&mut self, peer: &str, method: Method<'_>) -> Vec<u8> {
        let m = self.expect(peer);
        let got = Message::parse(&m).unwrap().method();
        assert_eq!(
            got,
            Some(method),
            "{peer} got:\n{}",
            String::from_utf8_lossy(&m)
        );
        m
    }

    fn quiet(&mut self, peer: &str) {
        self.run(Duration::from_millis(20));
        if let Some(m) = self.recv(peer) {
            panic!("{peer} unexpectedly got:\n{}", String::from_utf8_lossy(&m));
        }
    }

    fn media(&mut self, local_port: u16, from: SocketAddr, seq: u16) -> Forward {
        let mut pkt = vec![
            0x80,
            0x00,
            (seq >> 8) as u8,
            seq as u8,
            0,
            0,
            0,
            160,
            1,
            2,
            3,
            4,
        ];
        pkt.extend_from_slice(&[0xff; 160]);
        self.proxy.handle_media(self.now, local_port, from, &pkt)
    }

    /// Everything ended: no call, no media session, no port bound, no transaction left.
    fn assert_clean(&mut self) {
        self.run(Duration::from_secs(40));
        assert_eq!(self.proxy.active_calls(), 0, "calls left");
        assert_eq!(self.proxy.relay().session_count(), 0, "media sessions left");
        assert!(self.proxy.binder_mut().bound.is_empty(), "ports left bound");
        let left: Vec<_> = self
            .proxy
            .ctxs
            .iter()
            .filter(|(_, _, c)| !matches!(c.kind, super::context::CtxKind::Probe(..)))
            .map(|(_, _, c)| c.kind)
            .collect();
        assert!(left.is_empty(), "transactions left: {left:?}");
        assert_eq!(
            self.proxy.server_keys.len(),
            0,
            "server transaction keys left"
        );
    }

    fn ended(&self) -> Vec<(EndReason, u16)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::CallEnded { reason, status, .. } => Some((*reason, *status)),
                _ => None,
            })
            .collect()
    }
}

fn phrase(code: u16) -> &'static str {
    super::util::reason_phrase(code)
}

/// A UAS response to `req`: Via, Record-Route, From, Call-ID, CSeq copied; To tagged.
fn reply(
    req: &[u8],
    code: u16,
    to_tag: Option<&str>,
    contact: Option<&str>,
    sdp: Option<&str>,
) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut s = format!("SIP/2.0 {code} {}\r\n", phrase(code));
    for h in m.headers() {
        let v = String::from_utf8_lossy(h.value);
        match h.name {
            HeaderName::Via
            | HeaderName::RecordRoute
            | HeaderName::From
            | HeaderName::CallId
            | HeaderName::CSeq => s += &format!("{}: {v}\r\n", String::from_utf8_lossy(h.raw_name)),
            HeaderName::To => match to_tag {
                Some(t) if !v.contains("tag=") => s += &format!("To: {v};tag={t}\r\n"),
                _ => s += &format!("To: {v}\r\n"),
            },
            _ => {}
        }
    }
    if let Some(c) = contact {
        s += &format!("Contact: <sip:ua@{c}>\r\n");
    }
    body(s, sdp)
}

fn body(mut s: String, sdp: Option<&str>) -> Vec<u8> {
    match sdp {
        Some(b) => {
            s += &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )
        }
        None => s += "Content-Length: 0\r\n\r\n",
    }
    s.into_bytes()
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

/// A scripted user agent's view of one dialog.
struct Ua {
    addr: &'static str,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    local_uri: String,
    remote_uri: String,
    remote_target: String,
    routes: Vec<String>,
    cseq: u32,
    branch_seq: u32,
}

impl Ua {
    fn caller(addr: &'static str, called: &str, call_id: &str) -> Ua {
        Ua {
            addr,
            call_id: call_id.to_string(),
            local_tag: format!("tag-{}", addr.replace(['.', ':'], "")),
            remote_tag: None,
            local_uri: format!("<sip:+12065550999@{addr}>"),
            remote_uri: format!("<sip:{called}@{RELAY}>"),
            remote_target: format!("sip:{called}@{RELAY}"),
            routes: Vec::new(),
            cseq: 1,
            branch_seq: 0,
        }
    }

    /// The callee's dialog from the INVITE it received and its To tag.
    fn callee(addr: &'static str, invite: &[u8], tag: &str) -> Ua {
        let m = Message::parse(invite).unwrap();
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ua {
            addr,
            call_id: s(m.call_id().unwrap()),
            local_tag: tag.to_string(),
            remote_tag: m.from().unwrap().tag.map(s),
            local_uri: s(m.header(HeaderName::To).unwrap()),
            remote_uri: s(m.header(HeaderName::From).unwrap()),
            remote_target: m.contact().unwrap().map(|c| s(c.uri)).unwrap_or_default(),
            routes: m.record_routes().map(|r| s(r.unwrap().uri)).collect(),
            cseq: 100,
            branch_seq: 0,
        }
    }

    /// The caller learns the dialog from a 2xx/18x.
    fn learn(&mut self, resp: &[u8]) {
        let m = Message::parse(resp).unwrap();
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        self.remote_tag = m.to().unwrap().tag.map(s);
        if let Some(Ok(c)) = m.contact() {
            self.remote_target = s(c.uri);
        }
        let mut rr: Vec<String> = m.record_routes().map(|r| s(r.unwrap().uri)).collect();
        rr.reverse();
        self.routes = rr;
    }

    fn branch(&mut self) -> String {
        self.branch_seq += 1;
        let id: String = self
            .call_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        format!(
            "z9hG4bK-{}-{id}-{}",
            self.addr.replace(['.', ':'], ""),
            self.branch_seq
        )
    }

    fn request(
        &mut self,
        method: &str,
        cseq: u32,
        branch: &str,
        sdp: Option<&str>,
        max_forwards: u32,
    ) -> Vec<u8> {
        let mut s = format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch}\r\nMax-Forwards: {max_forwards}\r\n",
            self.remote_target, self.addr
        );
        for r in &self.routes {
            s += &format!("Route: <{r}>\r\n");
        }
        let from = if self.local_uri.contains("tag=") {
            self.local_uri.clone()
        } else {
            format!("{};tag={}", self.local_uri, self.local_tag)
        };
        let to = match &self.remote_tag {
            Some(t) if !self.remote_uri.contains("tag=") => format!("{};tag={t}", self.remote_uri),
            _ => self.remote_uri.clone(),
        };
        s += &format!(
            "From: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <{}>\r\n",
            self.call_id,
            format_args!("sip:ua@{}", self.addr)
        );
        body(s, sdp)
    }

    fn invite(&mut self, sdp: Option<&str>) -> (Vec<u8>, String) {
        let b = self.branch();
        let c = self.cseq;
        (self.request("INVITE", c, &b, sdp, 70), b)
    }

    /// A new in-dialog request (BYE, re-INVITE, ...).
    fn in_dialog(&mut self, method: &str, sdp: Option<&str>) -> Vec<u8> {
        self.cseq += 1;
        let b = self.branch();
        let c = self.cseq;
        self.request(method, c, &b, sdp, 70)
    }

    /// ACK for a 2xx (a new transaction, CSeq of the INVITE).
    fn ack(&mut self, sdp: Option<&str>) -> Vec<u8> {
        let b = self.branch();
        let c = self.cseq;
        self.request("ACK", c, &b, sdp, 70)
    }
}

fn parse(b: &[u8]) -> Message<'_> {
    Message::parse(b).unwrap()
}

fn header(m: &[u8], name: HeaderName) -> Option<String> {
    Message::parse(m)
        .unwrap()
        .header(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The audio port and address an SDP body advertises.
fn sdp_endpoint(m: &[u8]) -> (std::net::IpAddr, u16) {
    let msg = parse(m);
    let s = Sdp::parse(msg.body()).unwrap();
    let media = s.media().next().unwrap();
    (media.connection.unwrap(), media.port)
}

/// A full call from `caller` (at `caller_addr`) to number `called` landing on `callee`.
/// Returns the caller and callee dialogs once the call is confirmed (ACK delivered).
fn establish(sim: &mut Sim, caller: &'static str, called: &str, callee: &'static str) -> (Ua, Ua) {
    let mut a = Ua::caller(caller, called, &format!("call-{caller}-{called}"));
    let (inv, _) = a.invite(Some(&sdp(&caller[..caller.find(':').unwrap()], 20000)));
    sim.send(caller, &inv);
    sim.expect_status(caller, 100);
    let fwd = sim.expect_method(callee, Method::Invite);
    let mut b = Ua::callee(callee, &fwd, "callee-tag");
    let r180 = reply(&fwd, 180, Some("callee-tag"), Some(callee), None);
    sim.send(callee, &r180);
    sim.expect_status(caller, 180);
    let callee_ip = &callee[..callee.find(':').unwrap()];
    let r200 = reply(
        &fwd,
        200,
        Some("callee-tag"),
        Some(callee),
        Some(&sdp(callee_ip, 40000)),
    );
    sim.send(callee, &r200);
    let ok = sim.expect_status(caller, 200);
    a.learn(&ok);
    let ack = a.ack(None);
    sim.send(caller, &ack);
    sim.expect_method(callee, Method::Ack);
    b.cseq = 100;
    (a, b)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn gateway_to_pbx_call_with_media_and_caller_bye() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(GW1, "4255550100", "c1@gw");
    let (inv, _) = a.invite(Some(&sdp("127.0.0.11", 20000)));
    sim.send(GW1, &inv);
    sim.expect_status(GW1, 100);
    let fwd = sim.expect_method(PBX1, Method::Invite);
    let m = parse(&fwd);
    // Dial plan normalized the ten digits; new R-URI on the target trunk.
    assert_eq!(
        m.request_uri(),
        Some(&b"sip:+14255550100@127.0.0.21:5060;user=phone"[..])
    );
    let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].host, b"127.0.0.1");
    assert_eq!(vias[0].port, Some(5061));
    assert!(branch::is_ours(vias[0].branch.unwrap()));
    assert_eq!(
        header(&fwd, HeaderName::RecordRoute).as_deref(),
        Some("<sip:127.0.0.1:5061;lr>")
    );
    assert_eq!(m.max_forwards().unwrap(), Some(69));
    // SDP anchored: the PBX sends to the relay.
    let (ip, callee_facing) = sdp_endpoint(&fwd);
    assert_eq!(ip.to_string(), "127.0.0.1");
    assert_ne!(callee_facing, 20000);

    let mut b = Ua::callee(PBX1, &fwd, "pbx1tag");
    sim.send(PBX1, &reply(&fwd, 180, Some("pbx1tag"), Some(PBX1), None));
    sim.expect_status(GW1, 180);
    sim.send(
        PBX1,
        &reply(
            &fwd,
            200,
            Some("pbx1tag"),
            Some(PBX1),
            Some(&sdp("127.0.0.21", 40000)),
        ),
    );
    let ok = sim.expect_status(GW1, 200);
    assert_eq!(parse(&ok).vias().count(), 1, "our Via popped");
    let (ip, caller_facing) = sdp_endpoint(&ok);
    assert_eq!(ip.to_string(), "127.0.0.1");
    assert_ne!(caller_facing, 40000);
    a.learn(&ok);
    assert_eq!(a.routes, vec!["sip:127.0.0.1:5061;lr".to_string()]);
    sim.send(GW1, &a.ack(None));
    let ack = sim.expect_method(PBX1, Method::Ack);
    assert!(parse(&ack).routes().next().is_none(), "our Route popped");

    // Media both ways through the relay.
    match sim.media(caller_facing, addr("127.0.0.11:20000"), 1) {
        Forward::To { out_port, dst } => {
            assert_eq!(out_port, callee_facing);
            assert_eq!(dst, addr("127.0.0.21:40000"));
        }
        other => panic!("{other:?}"),
    }
    match sim.media(callee_facing, addr("127.0.0.21:40000"), 1) {
        Forward::To { out_port, dst } => {
            assert_eq!(out_port, caller_facing);
            assert_eq!(dst, addr("127.0.0.11:20000"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        sim.media(callee_facing, addr("127.0.0.99:40000"), 2),
        Forward::Drop(_)
    ));

    sim.run(Duration::from_secs(5));
    sim.send(GW1, &a.in_dialog("BYE", None));
    let bye = sim.expect_method(PBX1, Method::Bye);
    sim.send(PBX1, &reply(&bye, 200, None, None, None));
    sim.expect_status(GW1, 200);
    let _ = &mut b;
    assert_eq!(sim.ended(), vec![(EndReason::ByeFromCaller, 200)]);
    assert!(sim
        .events
        .iter()
        .any(|e| matches!(e, Event::CallAnswered { .. })));
    assert!(
        matches!(sim.events[0], Event::CallStarted { ref called, .. } if called == "+14255550100")
    );
    sim.assert_clean();
}

#[test]
fn pbx_to_gateway_call_callee_bye() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let (_a, mut b) = establish(&mut sim, PBX1, "+15551234567", GW1);
    sim.send(GW1, &b.in_dialog("BYE", None));
    let bye = sim.expect_method(PBX1, Method::Bye);
    let m = parse(&bye);
    assert_eq!(m.request_uri(), Some(&b"sip:ua@127.0.0.21:5060"[..]));
    assert_eq!(m.vias().count(), 2);
    sim.send(PBX1, &reply(&bye, 200, None, None, None));
    sim.expect_status(GW1, 200);
    assert_eq!(sim.ended(), vec![(EndReason::ByeFromCallee, 200)]);
    sim.assert_clean();
}

#[test]
fn pbx_to_pbx_call() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let (mut a, _b) = establish(&mut sim, PBX1, "+12065550100", PBX2);
    sim.send(PBX1, &a.in_dialog("BYE", None));
    let bye = sim.expect_method(PBX2, Method::Bye);
    sim.send(PBX2, &reply(&bye, 200, None, None, None));
    sim.expect_status(PBX1, 200);
    sim.assert_clean();
}

#[test]
fn lingering_transactions_keep_only_what_retransmissions_need() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let (mut a, _b) = establish(&mut sim, PBX1, "+12065550100", PBX2);
    let bye_in = a.in_dialog("BYE", None);
    sim.send(PBX1, &bye_in);
    let bye = sim.expect_method(PBX2, Method::Bye);
    sim.send(PBX2, &reply(&bye, 200, None, None, None));
    let ok = sim.expect_status(PBX1, 200);
    // Both the INVITE and the BYE contexts linger (Timers L/M and J) but are settled: no
    // request copies, no routing state, and only the BYE keeps its last response.
    let lingering: Vec<_> = sim
        .proxy
        .ctxs
        .iter()
        .filter(|(_, _, c)| !matches!(c.kind, super::context::CtxKind::Probe(..)))
        .map(|(_, _, c)| c)
        .collect();
    assert_eq!(lingering.len(), 2, "INVITE and BYE contexts linger");
    for c in &lingering {
        assert!(c.routing.is_none() && c.best.is_none());
        let s = c.server.as_ref().expect("server side");
        assert!(s.request.is_empty(), "request copy freed");
        assert_eq!(
            s.last.is_empty(),
            s.txn.invite,
            "only the BYE re-sends its 200"
        );
        assert!(c.branches.iter().all(|b| b.request.is_empty()));
    }
    // A retransmitted BYE still gets the same 200, from the lingering transaction.
    sim.send(PBX1, &bye_in);
    assert_eq!(sim.expect_status(PBX1, 200), ok);
    sim.quiet(PBX2);
    sim.assert_clean();
}

/// PBX1 calls the PSTN; gw1 is tried first, gw2 second.
fn pstn_call(sim: &mut Sim) -> (Ua, Vec<u8>) {
    let mut a = Ua::caller(PBX1, "+15551234567", "fo@pbx1");
    let (inv, _) = a.invite(Some(&sdp("127.0.0.21", 20000)));
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 100);
    let fwd = sim.expect_method(GW1, Method::Invite);
    (a, fwd)
}

#[test]
fn failover_on_503_then_answer_on_second_gateway() {
    let mut sim = Sim::new(&failover_config(true));
    let (mut a, fwd1) = pstn_call(&mut sim);
    let (_, port1) = sdp_endpoint(&fwd1);
    sim.send(GW1, &reply(&fwd1, 503, Some("gw1"), None, None));
    // ACK for the 503 goes hop by hop to gw1; the call moves to gw2.
    let ack = sim.expect_method(GW1, Method::Ack);
    assert_eq!(
        parse(&ack).top_via().unwrap().branch,
        parse(&fwd1).top_via().unwrap().branch
    );
    let fwd2 = sim.expect_method(GW2, Method::Invite);
    assert_eq!(
        parse(&fwd2).request_uri(),
        Some(&b"sip:+15551234567@127.0.0.12:5060;user=phone"[..])
    );
    assert_ne!(
        parse(&fwd2).top_via().unwrap().branch,
        parse(&fwd1).top_via().unwrap().branch
    );
    // The media session is kept across failover.
    assert_eq!(sdp_endpoint(&fwd2).1, port1);
    sim.send(
        GW2,
        &reply(
            &fwd2,
            200,
            Some("gw2"),
            Some(GW2),
            Some(&sdp("127.0.0.12", 41000)),
        ),
    );
    let ok = sim.expect_status(PBX1, 200);
    a.learn(&ok);
    sim.send(PBX1, &a.ack(None));
    sim.expect_method(GW2, Method::Ack);
    sim.send(PBX1, &a.in_dialog("BYE", None));
    let bye = sim.expect_method(GW2, Method::Bye);
    sim.send(GW2, &reply(&bye, 200, None, None, None));
    sim.expect_status(PBX1, 200);
    assert_eq!(sim.proxy.stats().failovers, 1);
    assert!(sim.recv(GW1).is_none());
    sim.assert_clean();
}

#[test]
fn failover_on_timer_b_with_timer_a_retransmissions() {
    let mut sim = Sim::new(&failover_config(false));
    let (_a, fwd1) = pstn_call(&mut sim);
    // gw1 is silent: Timer A retransmits at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; Timer B at 32 s.
    sim.run(Duration::from_secs(31) + Duration::from_millis(600));
    let mut retrans = 0;
    while let Some(m) = sim.recv(GW1) {
        assert_eq!(m, fwd1, "a retransmission is the same request");
        retrans += 1;
    }
    assert_eq!(retrans, 6);
    assert!(sim.recv(GW2).is_none());
    sim.run(Duration::from_millis(500));
    let fwd2 = sim.expect_method(GW2, Method::Invite);
    sim.send(GW2, &reply(&fwd2, 486, Some("gw2"), None, None));
    sim.expect_method(GW2, Method::Ack);
    sim.expect_status(PBX1, 486);
    assert_eq!(sim.ended(), vec![(EndReason::Failed, 486)]);
    sim.assert_clean();
}

#[test]
fn failover_on_fast_failover_timer_cancels_first_branch() {
    let mut sim = Sim::new(&failover_config(true));
    let (mut a, fwd1) = pstn_call(&mut sim);
    sim.send(GW1, &reply(&fwd1, 100, None, None, None));
    sim.run(Duration::from_millis(9900));
    assert!(sim.recv(GW2).is_none(), "no failover before 10 s");
    assert!(sim.recv(PBX1).is_none());
    sim.run(Duration::from_millis(200));
    // 100 Trying was a provisional: the abandoned branch is CANCELled.
    let cancel = sim.expect_method(GW1, Method::Cancel);
    assert_eq!(
        parse(&cancel).top_via().unwrap().branch,
        parse(&fwd1).top_via().unwrap().branch
    );
    let fwd2 = sim.expect_method(GW2, Method::Invite);
    sim.send(GW1, &reply(&cancel, 200, Some("gw1"), None, None));
    sim.send(GW1, &reply(&fwd1, 487, Some("gw1"), None, None));
    sim.expect_method(GW1, Method::Ack);
    sim.send(GW2, &reply(&fwd2, 180, Some("gw2"), Some(GW2), None));
    sim.expect_status(PBX1, 180);
    sim.send(
        GW2,
        &reply(
            &fwd2,
            200,
            Some("gw2"),
            Some(GW2),
            Some(&sdp("127.0.0.12", 41000)),
        ),
    );
    let ok = sim.expect_status(PBX1, 200);
    a.learn(&ok);
    sim.send(PBX1, &a.ack(None));
    sim.expect_method(GW2, Method::Ack);
    sim.send(PBX1, &a.in_dialog("BYE", None));
    let bye = sim.expect_method(GW2, Method::Bye);
    sim.send(GW2, &reply(&bye, 200, None, None, None));
    sim.expect_status(PBX1, 200);
    assert!(sim.recv(PBX1).is_none(), "the caller never saw the 487");
    sim.assert_clean();
}

#[test]
fn busy_and_not_found_do_not_fail_over() {
    for code in [486u16, 404, 603] {
        let mut sim = Sim::new(&failover_config(true));
        let (_a, fwd1) = pstn_call(&mut sim);
        sim.send(GW1, &reply(&fwd1, code, Some("gw1"), None, None));
        sim.expect_method(GW1, Method::Ack);
        sim.expect_status(PBX1, code);
        sim.quiet(GW2);
        assert_eq!(sim.ended(), vec![(EndReason::Failed, code)]);
        sim.assert_clean();
        assert!(sim.recv(GW2).is_none());
    }
}

#[test]
fn all_candidates_fail_best_response_and_translation() {
    let mut sim = Sim::new(&failover_config(true));
    let (_a, fwd1) = pstn_call(&mut sim);
    // gw1's 408 is translated to 503 (its rule) and fails over.
    sim.send(GW1, &reply(&fwd1, 408, Some("gw1"), None, None));
    sim.expect_method(GW1, Method::Ack);
    let fwd2 = sim.expect_method(GW2, Method::Invite);
    sim.send(GW2, &reply(&fwd2, 500, Some("gw2"), None, None));
    sim.expect_method(GW2, Method::Ack);
    // Both 5xx: the first one kept, as translated.
    let r = sim.expect_status(PBX1, 503);
    assert_eq!(parse(&r).vias().count(), 1);
    sim.send(
        PBX1,
        &Ua::caller(PBX1, "+15551234567", "fo@pbx1").request_ack_for(&r),
    );
    sim.assert_clean();
    assert_eq!(
        sim.proxy.stats().drop_stray_ack,
        0,
        "the ACK was absorbed by the transaction"
    );
}

#[test]
fn no_answer_at_all_gives_408() {
    let mut sim = Sim::new(&failover_config(false));
    let (_a, _fwd1) = pstn_call(&mut sim);
    sim.run(Duration::from_secs(70));
    let mut got = Vec::new();
    while let Some(m) = sim.recv(PBX1) {
        got.push(parse(&m).status().unwrap());
    }
    // 408 (retransmitted by Timer G until Timer H, as no ACK comes).
    assert!(!got.is_empty() && got.iter().all(|c| *c == 408), "{got:?}");
    assert_eq!(sim.ended(), vec![(EndReason::Failed, 408)]);
    sim.assert_clean();
}

impl Ua {
    /// ACK for a non-2xx final (same branch as the INVITE, RFC 3261 17.1.1.3).
    fn request_ack_for(&mut self, resp: &[u8]) -> Vec<u8> {
        let m = parse(resp);
        let via = m.top_via().unwrap();
        let branch = String::from_utf8_lossy(via.branch.unwrap()).into_owned();
        self.remote_tag = m
            .to()
            .unwrap()
            .tag
            .map(|t| String::from_utf8_lossy(t).into_owned());
        self.request("ACK", 1, &branch, None, 70)
    }
}

#[test]
fn cancel_while_ringing() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(PBX1, "+12065550100", "cancel@pbx1");
    let (inv, branch) = a.invite(Some(&sdp("127.0.0.21", 20000)));
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 100);
    let fwd = sim.expect_method(PBX2, Method::Invite);
    sim.send(PBX2, &reply(&fwd, 180, Some("pbx2"), Some(PBX2), None));
    sim.expect_status(PBX1, 180);
    sim.run(Duration::from_secs(3));
    let cancel = a.request("CANCEL", 1, &branch, None, 70);
    sim.send(PBX1, &cancel);
    let r = sim.expect(PBX1);
    let r2 = sim.expect(PBX1);
    let mut codes = [parse(&r).status().unwrap(), parse(&r2).status().unwrap()];
    codes.sort_unstable();
    assert_eq!(codes, [200, 487]);
    let r487 = if parse(&r).status() == Some(487) {
        r
    } else {
        r2
    };
    assert_eq!(parse(&r487).cseq().unwrap().method, Method::Invite);
    let fcancel = sim.expect_method(PBX2, Method::Cancel);
    sim.send(PBX2, &reply(&fcancel, 200, Some("pbx2"), None, None));
    sim.send(PBX2, &reply(&fwd, 487, Some("pbx2"), None, None));
    sim.expect_method(PBX2, Method::Ack);
    // The caller's ACK for the 487 ends at the relay.
    sim.send(PBX1, &a.request_ack_for(&r487));
    sim.quiet(PBX2);
    assert_eq!(sim.ended(), vec![(EndReason::Cancelled, 487)]);
    sim.assert_clean();
    assert!(
        sim.recv(PBX1).is_none(),
        "no 487 retransmission after the ACK"
    );
}

#[test]
fn reinvite_updates_media_in_place() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let (mut a, mut b) = establish(&mut sim, GW1, "4255550100", PBX1);
    let session = *sim.proxy.sessions.keys().next().unwrap();
    let caller_facing = sim
        .proxy
        .relay()
        .local_port(session, crate::media::Leg::Caller, 0)
        .unwrap();
    let callee_facing = sim
        .proxy
        .relay()
        .local_port(session, crate::media::Leg::Callee, 0)
        .unwrap();
    // The gateway moves its media to a new address.
    sim.send(
        GW1,
        &a.in_dialog("INVITE", Some(&sdp("127.0.0.111", 22000))),
    );
    sim.expect_status(GW1, 100);
    let re = sim.expect_method(PBX1, Method::Invite);
    assert_eq!(
        sdp_endpoint(&re),
        ("127.0.0.1".parse().unwrap(), callee_facing)
    );
    sim.send(
        PBX1,
        &reply(&re, 200, None, Some(PBX1), Some(&sdp("127.0.0.21", 40002))),
    );
    let ok = sim.expect_status(GW1, 200);
    assert_eq!(
        sdp_endpoint(&ok),
        ("127.0.0.1".parse().unwrap(), caller_facing)
    );
    sim.send(GW1, &a.ack(None));
    sim.expect_method(PBX1, Method::Ack);
    assert_eq!(sim.proxy.relay().session_count(), 1, "same session");
    match sim.media(callee_facing, addr("127.0.0.21:40002"), 9) {
        Forward::To { dst, .. } => assert_eq!(dst, addr("127.0.0.111:22000")),
        other => panic!("{other:?}"),
    }
    // Re-INVITE from the callee side, answered with 488: the call stays up.
    sim.send(
        PBX1,
        &b.in_dialog("INVITE", Some(&sdp("127.0.0.21", 40004))),
    );
    sim.expect_status(PBX1, 100);
    let re2 = sim.expect_method(GW1, Method::Invite);
    sim.send(GW1, &reply(&re2, 488, None, None, None));
    sim.expect_method(GW1, Method::Ack);
    sim.expect_status(PBX1, 488);
    assert_eq!(sim.proxy.active_calls(), 1);
    sim.send(PBX1, &b.in_dialog("BYE", None));
    let bye = sim.expect_method(GW1, Method::Bye);
    sim.send(GW1, &reply(&bye, 200, None, None, None));
    sim.expect_status(PBX1, 200);
    sim.assert_clean();
}

#[test]
fn lost_200_is_retransmitted_by_the_callee_and_lost_invite_by_timer_a() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    // Drop the first INVITE toward pbx2 and the first 200 from pbx2.
    let mut dropped_invite = false;
    let mut dropped_200 = false;
    sim.drop = Some(Box::new(move |src, dst, b| {
        let m = Message::parse(b).unwrap();
        if dst == addr(PBX2) && m.method() == Some(Method::Invite) && !dropped_invite {
            dropped_invite = true;
            return true;
        }
        if src == addr(PBX2)
            && m.status() == Some(200)
            && m.cseq().unwrap().method == Method::Invite
            && !dropped_200
        {
            dropped_200 = true;
            return true;
        }
        false
    }));
    let mut a = Ua::caller(PBX1, "+12065550100", "loss@pbx1");
    let (inv, _) = a.invite(Some(&sdp("127.0.0.21", 20000)));
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 100);
    sim.run(Duration::from_millis(400));
    assert!(sim.recv(PBX2).is_none(), "first INVITE lost");
    sim.run(Duration::from_millis(200));
    let fwd = sim.expect_method(PBX2, Method::Invite);
    // The caller retransmits its INVITE: absorbed, 100 Trying again.
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 100);
    sim.quiet(PBX2);
    let ok = reply(
        &fwd,
        200,
        Some("pbx2"),
        Some(PBX2),
        Some(&sdp("127.0.0.22", 40000)),
    );
    sim.send(PBX2, &ok);
    sim.quiet(PBX1);
    // The callee retransmits its 200 (T1 later): forwarded.
    sim.run(Duration::from_millis(500));
    sim.send(PBX2, &ok);
    let r = sim.expect_status(PBX1, 200);
    a.learn(&r);
    // A duplicate 200 is forwarded too (the caller's ACK may have been lost).
    sim.send(PBX2, &ok);
    let r2 = sim.expect_status(PBX1, 200);
    assert_eq!(r, r2, "same SDP rewrite each time");
    sim.send(PBX1, &a.ack(None));
    sim.expect_method(PBX2, Method::Ack);
    assert!(sim.proxy.stats().retransmissions_absorbed >= 1);
    sim.send(PBX1, &a.in_dialog("BYE", None));
    let bye = sim.expect_method(PBX2, Method::Bye);
    // The BYE's 200 is lost once: the relay's Timer E retransmits the BYE.
    sim.run(Duration::from_millis(600));
    let bye2 = sim.expect_method(PBX2, Method::Bye);
    assert_eq!(bye, bye2);
    sim.send(PBX2, &reply(&bye, 200, None, None, None));
    sim.expect_status(PBX1, 200);
    sim.assert_clean();
}

#[test]
fn calls_survive_reordering_and_jitter() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    sim.jitter = Some(Rng::new(5));
    for i in 0..5 {
        let caller_ua = format!("jit{i}@pbx1");
        let mut a = Ua::caller(PBX1, "+12065550100", &caller_ua);
        let (inv, _) = a.invite(Some(&sdp("127.0.0.21", 20000)));
        sim.send(PBX1, &inv);
        sim.run(Duration::from_millis(100));
        let mut fwd = None;
        while let Some(m) = sim.recv(PBX2) {
            if parse(&m).method() == Some(Method::Invite) {
                fwd = Some(m);
            }
        }
        let fwd = fwd.expect("INVITE forwarded");
        // 180 and 200 sent back to back may arrive in either order.
        sim.send(PBX2, &reply(&fwd, 180, Some("t"), Some(PBX2), None));
        sim.send(
            PBX2,
            &reply(
                &fwd,
                200,
                Some("t"),
                Some(PBX2),
                Some(&sdp("127.0.0.22", 40000)),
            ),
        );
        sim.run(Duration::from_millis(100));
        let mut ok = None;
        while let Some(m) = sim.recv(PBX1) {
            if parse(&m).status() == Some(200) {
                ok = Some(m);
            }
        }
        a.learn(&ok.expect("200 forwarded"));
        sim.send(PBX1, &a.ack(None));
        sim.send(PBX1, &a.in_dialog("BYE", None));
        sim.run(Duration::from_millis(100));
        while let Some(m) = sim.recv(PBX2) {
            if parse(&m).method() == Some(Method::Bye) {
                sim.send(PBX2, &reply(&m, 200, None, None, None));
            }
        }
        sim.run(Duration::from_millis(100));
        while sim.recv(PBX1).is_some() {}
    }
    assert_eq!(sim.ended().len(), 5);
    sim.assert_clean();
}

#[test]
fn max_forwards_zero_is_483() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(PBX1, "+12065550100", "mf@pbx1");
    let b = a.branch();
    let inv = a.request("INVITE", 1, &b, None, 0);
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 483);
    sim.quiet(PBX2);
    assert_eq!(sim.proxy.stats().rejected_too_many_hops, 1);
    // Max-Forwards 1 passes, as 0.
    let b = a.branch();
    let inv = a.request("INVITE", 2, &b, None, 1);
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 100);
    let fwd = sim.expect_method(PBX2, Method::Invite);
    assert_eq!(parse(&fwd).max_forwards().unwrap(), Some(0));
}

#[test]
fn unknown_source_is_403_before_routing() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller("127.0.0.99:5060", "+12065550100", "x@evil");
    let (inv, _) = a.invite(None);
    sim.send("127.0.0.99:5060", &inv);
    sim.expect_status("127.0.0.99:5060", 403);
    sim.quiet(PBX2);
    assert_eq!(sim.proxy.stats().rejected_unknown_source, 1);
    assert_eq!(sim.proxy.active_calls(), 0);
}

#[test]
fn bypass_on_both_trunks_leaves_the_sdp_untouched_and_binds_no_ports() {
    let config = failover_config(false).replace("[[trunk]]\n", "[[trunk]]\nenable_bypass = true\n");
    let mut sim = Sim::new(&config);
    let mut a = Ua::caller(GW1, "+14255550100", "bypass@gw");
    // Not even valid SDP: a bypassed call's body is neither parsed nor refused.
    let offer = "v=0\r\nnot an SDP the relay would accept\r\n";
    let (inv, _) = a.invite(Some(offer));
    sim.send(GW1, &inv);
    sim.expect_status(GW1, 100);
    let fwd = sim.expect_method(PBX1, Method::Invite);
    assert_eq!(parse(&fwd).body(), offer.as_bytes());
    assert_eq!(sim.proxy.relay().session_count(), 0);
    let answer = sdp("127.0.0.21", 40000);
    sim.send(
        PBX1,
        &reply(&fwd, 200, Some("pbx1"), Some(PBX1), Some(&answer)),
    );
    let ok = sim.expect_status(GW1, 200);
    assert_eq!(parse(&ok).body(), answer.as_bytes());
    assert_eq!(sim.proxy.relay().session_count(), 0);
    assert_eq!(sim.proxy.stats().rejected_bad_sdp, 0);
}

#[test]
fn invite_leaves_toward_the_callee_before_the_100_toward_the_caller() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(GW1, "4255550100", "order@gw");
    let (inv, _) = a.invite(None);
    let relay = sim.relay_addr;
    sim.proxy.handle_datagram(sim.now, addr(GW1), relay, &inv);
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::new();
    while let Some(t) = sim.proxy.poll_transmit(&mut buf) {
        let m = parse(&buf[..t.len]);
        out.push((t.dst, m.method() == Some(Method::Invite), m.status()));
    }
    assert_eq!(
        out,
        [(addr(PBX1), true, None), (addr(GW1), false, Some(100))]
    );
}

#[test]
fn no_route_is_403_with_12004() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    // The gateway's usages reach only the PBXs: a PSTN number has no route.
    let mut a = Ua::caller(GW1, "+15551234567", "nr@gw");
    let (inv, _) = a.invite(Some(&sdp("127.0.0.11", 20000)));
    sim.send(GW1, &inv);
    let r = sim.expect_status(GW1, 403);
    let diag = header(&r, HeaderName::MsDiagnostics).unwrap();
    assert!(diag.starts_with("12004;"), "{diag}");
    assert!(header(&r, HeaderName::Reason).is_some());
    assert_eq!(
        sim.proxy.relay().session_count(),
        0,
        "no media for a rejected call"
    );
    assert_eq!(sim.proxy.stats().rejected_no_route, 1);
}

#[test]
fn no_dial_plan_rule_is_404_with_14010() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(GW1, "12345", "nm@gw");
    let (inv, _) = a.invite(None);
    sim.send(GW1, &inv);
    let r = sim.expect_status(GW1, 404);
    assert_eq!(parse(&r).reason(), Some(&b"No matching rule"[..]));
    assert!(header(&r, HeaderName::MsDiagnostics)
        .unwrap()
        .starts_with("14010;"));
}

#[test]
fn options_to_the_relay_is_200_and_to_a_number_is_routed() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let opt = format!(
        "OPTIONS sip:{RELAY} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.99:5060;branch=z9hG4bKo1\r\nFrom: <sip:x@127.0.0.99>;tag=1\r\nTo: <sip:{RELAY}>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sim.send("127.0.0.99:5060", opt.as_bytes());
    let r = sim.expect_status("127.0.0.99:5060", 200);
    assert!(header(&r, HeaderName::Allow).unwrap().contains("INVITE"));
    // MESSAGE to a number: routed like a call, as a non-INVITE transaction.
    let mut a = Ua::caller(PBX1, "+12065550100", "msg@pbx1");
    let b = a.branch();
    sim.send(PBX1, &a.request("MESSAGE", 1, &b, None, 70));
    let fwd = sim.expect_method(PBX2, Method::Message);
    assert_eq!(
        parse(&fwd).request_uri(),
        Some(&b"sip:+12065550100@127.0.0.22:5060;user=phone"[..])
    );
    sim.send(PBX2, &reply(&fwd, 202, Some("m"), None, None));
    sim.expect_status(PBX1, 202);
    assert_eq!(sim.proxy.active_calls(), 0);
    sim.assert_clean();
}

#[test]
fn loop_is_482() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(PBX1, "+12065550100", "loop@pbx1");
    let (inv, _) = a.invite(None);
    let inv = String::from_utf8(inv).unwrap().replacen(
        "Via: ",
        "Via: SIP/2.0/UDP 127.0.0.22:5060;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKit00000000000000000000000000000000000000\r\nVia: ",
        1,
    );
    sim.send(PBX1, inv.as_bytes());
    sim.expect_status(PBX1, 482);
    assert_eq!(sim.proxy.stats().rejected_loop, 1);
}

#[test]
fn keepalive_marks_trunk_down_and_routing_skips_it() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    sim.answer_options.remove(&addr(PBX2));
    // First probes within 30 s, unanswered for 32 s (Timer F).
    sim.run(Duration::from_secs(63));
    while let Some(m) = sim.recv(PBX2) {
        assert_eq!(parse(&m).method(), Some(Method::Options));
    }
    let pbx2 = sim
        .proxy
        .table
        .current()
        .trunk_by_identity("PstnGateway:pbx2")
        .unwrap();
    assert!(
        sim.events.contains(&Event::TrunkDown(pbx2)),
        "{:?}",
        sim.events
    );
    assert!(!sim
        .events
        .iter()
        .any(|e| matches!(e, Event::TrunkDown(t) if *t != pbx2)));
    // Calls to pbx2's numbers skip it: the next usage (the PSTN route) takes them.
    let mut a = Ua::caller(PBX1, "+12065550100", "down@pbx1");
    let (inv, _) = a.invite(None);
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 100);
    let fwd = sim.expect_method(GW1, Method::Invite);
    sim.send(GW1, &reply(&fwd, 486, Some("busy"), None, None));
    sim.expect_method(GW1, Method::Ack);
    let busy = sim.expect_status(PBX1, 486);
    sim.send(PBX1, &a.request_ack_for(&busy));
    sim.quiet(PBX2);
    // The gateway has pbx2 as its only route for that number: no usable gateway at all.
    let mut g = Ua::caller(GW1, "+12065550100", "down@gw1");
    let (inv, _) = g.invite(None);
    sim.send(GW1, &inv);
    let r = sim.expect_status(GW1, 403);
    assert!(header(&r, HeaderName::MsDiagnostics)
        .unwrap()
        .starts_with("12004;"));
    // pbx2 answers again: up.
    sim.answer_options.insert(addr(PBX2));
    sim.run(Duration::from_secs(31));
    assert!(sim.events.contains(&Event::TrunkUp(pbx2)));
    let mut a = Ua::caller(PBX1, "+12065550100", "up@pbx1");
    let (inv, _) = a.invite(None);
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 100);
    sim.expect_method(PBX2, Method::Invite);
}

#[test]
fn port_exhaustion_is_503_and_never_a_broken_call() {
    // Two pairs: one call (a pair per leg).
    let mut sim = Sim::with(
        DEFAULT_CONFIG,
        ProxyConfig::new(addr(RELAY)),
        PortRange {
            first: 40000,
            last: 40003,
        },
    );
    let (mut a, _b) = establish(&mut sim, PBX1, "+12065550100", PBX2);
    let mut c = Ua::caller(PBX1, "+12065550101", "second@pbx1");
    let (inv, _) = c.invite(Some(&sdp("127.0.0.21", 20002)));
    sim.send(PBX1, &inv);
    let r = sim.expect_status(PBX1, 503);
    assert!(header(&r, HeaderName::RetryAfter).is_some());
    sim.quiet(PBX2);
    assert_eq!(sim.proxy.stats().rejected_ports, 1);
    assert_eq!(sim.proxy.active_calls(), 1);
    sim.send(PBX1, &a.in_dialog("BYE", None));
    let bye = sim.expect_method(PBX2, Method::Bye);
    sim.send(PBX2, &reply(&bye, 200, None, None, None));
    sim.expect_status(PBX1, 200);
    sim.assert_clean();
}

#[test]
fn call_cap_and_drain_give_503_and_existing_calls_continue() {
    let mut pcfg = ProxyConfig::new(addr(RELAY));
    pcfg.max_calls = 1;
    let mut sim = Sim::with_proxy(DEFAULT_CONFIG, pcfg);
    let (mut a, _b) = establish(&mut sim, PBX1, "+12065550100", PBX2);
    let mut c = Ua::caller(PBX1, "+12065550101", "cap@pbx1");
    let (inv, _) = c.invite(None);
    sim.send(PBX1, &inv);
    let r = sim.expect_status(PBX1, 503);
    assert_eq!(header(&r, HeaderName::RetryAfter).as_deref(), Some("10"));
    assert_eq!(sim.proxy.stats().rejected_capacity, 1);
    // Draining: new calls refused, the call in progress goes on.
    sim.proxy.start_drain(sim.now);
    let mut d = Ua::caller(PBX1, "+12065550102", "drain@pbx1");
    let (inv, _) = d.invite(None);
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 503);
    assert_eq!(sim.proxy.stats().rejected_draining, 1);
    sim.send(PBX1, &a.in_dialog("INFO", None));
    let info = sim.expect_method(PBX2, Method::Info);
    sim.send(PBX2, &reply(&info, 200, None, None, None));
    sim.expect_status(PBX1, 200);
    sim.send(PBX1, &a.in_dialog("BYE", None));
    let bye = sim.expect_method(PBX2, Method::Bye);
    sim.send(PBX2, &reply(&bye, 200, None, None, None));
    sim.expect_status(PBX1, 200);
    sim.assert_clean();
}

#[test]
fn lingering_transactions_give_way_at_the_cap_live_ones_do_not() {
    let mut pcfg = ProxyConfig::new(addr(RELAY));
    pcfg.max_transactions = 16;
    let mut sim = Sim::with_proxy(DEFAULT_CONFIG, pcfg);
    // Each finished call leaves two settled contexts lingering (Timers L/M and J, 32 s):
    // far more calls than the cap allows contexts still go through, evicting the oldest.
    for n in 0..20 {
        let called = format!("+1206555{:04}", n);
        let (mut a, _b) = establish(&mut sim, PBX1, &called, PBX2);
        sim.send(PBX1, &a.in_dialog("BYE", None));
        let bye = sim.expect_method(PBX2, Method::Bye);
        sim.send(PBX2, &reply(&bye, 200, None, None, None));
        sim.expect_status(PBX1, 200);
    }
    assert_eq!(sim.proxy.stats().rejected_capacity, 0);
    assert!(sim.proxy.stats().lingering_evicted >= 20);
    assert!(sim.proxy.active_transactions() <= 16);
    // Calls still ringing are live: they are never evicted, and once they fill the table a
    // new call gets 503.
    let mut ringing = 0;
    let mut refused = false;
    for n in 0..20 {
        let mut c = Ua::caller(
            PBX1,
            &format!("+1206555{:04}", 100 + n),
            &format!("ring{n}@pbx1"),
        );
        let (inv, _) = c.invite(None);
        sim.send(PBX1, &inv);
        let r = sim.expect(PBX1);
        if parse(&r).status() == Some(503) {
            refused = true;
            break;
        }
        sim.expect_method(PBX2, Method::Invite);
        ringing += 1;
    }
    assert!(refused, "the cap holds once every context is live");
    assert!((8..16).contains(&ringing), "{ringing} calls ringing");
    assert_eq!(sim.proxy.stats().rejected_capacity, 1);
    assert_eq!(sim.proxy.active_calls(), ringing);
}

#[test]
fn media_timeout_sends_bye_to_both_legs() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let (a, b) = establish(&mut sim, GW1, "4255550100", PBX1);
    sim.run(Duration::from_secs(31));
    let bye_gw = sim.expect_method(GW1, Method::Bye);
    let bye_pbx = sim.expect_method(PBX1, Method::Bye);
    // Each BYE is in the leg's dialog: tags, Call-ID, remote target, CSeq above what the leg saw.
    let m = parse(&bye_gw);
    assert_eq!(m.request_uri(), Some(format!("sip:ua@{GW1}").as_bytes()));
    assert_eq!(m.from().unwrap().tag.unwrap(), b.local_tag.as_bytes());
    assert_eq!(m.to().unwrap().tag.unwrap(), a.local_tag.as_bytes());
    let m = parse(&bye_pbx);
    assert_eq!(m.request_uri(), Some(format!("sip:ua@{PBX1}").as_bytes()));
    assert_eq!(m.from().unwrap().tag.unwrap(), a.local_tag.as_bytes());
    assert_eq!(m.to().unwrap().tag.unwrap(), b"callee-tag");
    assert!(m.cseq().unwrap().number > 1);
    assert!(header(&bye_pbx, HeaderName::Reason)
        .unwrap()
        .contains("Media timeout"));
    sim.send(GW1, &reply(&bye_gw, 200, None, None, None));
    sim.send(PBX1, &reply(&bye_pbx, 200, None, None, None));
    assert_eq!(sim.ended(), vec![(EndReason::MediaTimeout, 200)]);
    sim.assert_clean();
}

/// Found by the `proxy_calls` fuzz target: a Contact whose bytes between `<>` are no URI
/// became the Request-URI of the relay's own BYE, which then did not parse. Such a Contact is
/// not a remote target; the BYE goes to the leg's address instead.
#[test]
fn a_contact_that_is_no_uri_never_becomes_our_request_uri() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(GW1, "4255550100", "junk-contact@gw");
    let (inv, _) = a.invite(Some(&sdp("127.0.0.11", 20000)));
    sim.send(GW1, &inv);
    sim.expect_status(GW1, 100);
    let fwd = sim.expect_method(PBX1, Method::Invite);
    let ok = reply(
        &fwd,
        200,
        Some("callee-tag"),
        Some(PBX1),
        Some(&sdp("127.0.0.21", 40000)),
    );
    // Valid UTF-8 would be escaped by the reply builder; splice raw bytes in.
    let contact = format!("<sip:ua@{PBX1}>");
    let at = ok
        .windows(contact.len())
        .position(|w| w == contact.as_bytes())
        .unwrap();
    let mut junk = ok[..at].to_vec();
    junk.extend_from_slice(b"<sip:ua\xff\xfe@127.0.0.21:5060>");
    junk.extend_from_slice(&ok[at + contact.len()..]);
    assert!(Message::parse(&junk).unwrap().contact().unwrap().is_ok());
    sim.send(PBX1, &junk);
    // The caller's ACK would carry that Contact as its Request-URI and is refused as
    // unparseable: the call stays answered until the media timeout ends it.
    sim.expect_status(GW1, 200);

    sim.run(Duration::from_secs(31));
    let _bye_gw = sim.expect_method(GW1, Method::Bye);
    let bye_pbx = sim.expect_method(PBX1, Method::Bye);
    assert_eq!(
        parse(&bye_pbx).request_uri(),
        Some(format!("sip:{PBX1}").as_bytes())
    );
}

#[test]
fn ringing_longer_than_media_timeout_is_not_torn_down() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(PBX1, "+12065550100", "ring@pbx1");
    let (inv, _) = a.invite(Some(&sdp("127.0.0.21", 20000)));
    sim.send(PBX1, &inv);
    let fwd = sim.expect_method(PBX2, Method::Invite);
    sim.send(PBX2, &reply(&fwd, 180, Some("r"), Some(PBX2), None));
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.proxy.active_calls(), 1);
    assert!(sim.ended().is_empty());
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(PBX1, "+12065550100", "fuzz@pbx1");
    let (inv, _) = a.invite(Some(&sdp("127.0.0.21", 20000)));
    let resp = reply(
        &inv,
        200,
        Some("x"),
        Some(PBX2),
        Some(&sdp("127.0.0.22", 1)),
    );
    let mut rng = Rng::new(99);
    for i in 0..3000u32 {
        let base = if i % 2 == 0 { &inv } else { &resp };
        let mut m = base.clone();
        let flips = 1 + rng.below(8) as usize;
        for _ in 0..flips {
            let pos = rng.below(m.len() as u64) as usize;
            match rng.below(3) {
                0 => m[pos] = rng.below(256) as u8,
                1 => {
                    m.remove(pos);
                }
                _ => m.truncate(pos),
            }
            if m.is_empty() {
                break;
            }
        }
        let from = if i % 3 == 0 { PBX1 } else { PBX2 };
        sim.proxy
            .handle_datagram(sim.now, addr(from), addr(RELAY), &m);
        sim.pump();
    }
    sim.run(Duration::from_secs(1));
    let s = sim.proxy.stats().clone();
    assert!(s.datagrams_in >= 3000);
    assert!(
        s.drop_unparseable > 0 && s.bad_requests > 0 && s.drop_stray_response > 0,
        "{s:?}"
    );
    // Whatever got through, every call and port is released in the end (Timers B, H).
    sim.inbox.clear();
    sim.run(Duration::from_secs(200));
    sim.assert_clean();
}

#[test]
fn early_media_183_with_sdp_is_anchored_and_prack_passes() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(GW1, "4255550100", "em@gw");
    let (inv, _) = a.invite(Some(&sdp("127.0.0.11", 20000)));
    sim.send(GW1, &inv);
    let fwd = sim.expect_method(PBX1, Method::Invite);
    let mut b = Ua::callee(PBX1, &fwd, "em-tag");
    sim.send(
        PBX1,
        &reply(
            &fwd,
            183,
            Some("em-tag"),
            Some(PBX1),
            Some(&sdp("127.0.0.21", 40000)),
        ),
    );
    sim.expect_status(GW1, 100);
    let r183 = sim.expect_status(GW1, 183);
    let (ip, caller_facing) = sdp_endpoint(&r183);
    assert_eq!(ip.to_string(), "127.0.0.1");
    // Early media flows toward the gateway.
    let s = *sim.proxy.sessions.keys().next().unwrap();
    let callee_facing = sim
        .proxy
        .relay()
        .local_port(s, crate::media::Leg::Callee, 0)
        .unwrap();
    assert!(matches!(
        sim.media(callee_facing, addr("127.0.0.21:40000"), 1),
        Forward::To { out_port, dst } if out_port == caller_facing && dst == addr("127.0.0.11:20000")
    ));
    // PRACK inside the early dialog follows the route set.
    a.learn(&r183);
    sim.send(GW1, &a.in_dialog("PRACK", None));
    let prack = sim.expect_method(PBX1, Method::Prack);
    sim.send(PBX1, &reply(&prack, 200, None, None, None));
    sim.expect_status(GW1, 200);
    sim.send(
        PBX1,
        &reply(
            &fwd,
            200,
            Some("em-tag"),
            Some(PBX1),
            Some(&sdp("127.0.0.21", 40000)),
        ),
    );
    let ok = sim.expect_status(GW1, 200);
    a.learn(&ok);
    a.cseq = 1;
    sim.send(GW1, &a.ack(None));
    sim.expect_method(PBX1, Method::Ack);
    sim.send(PBX1, &b.in_dialog("BYE", None));
    let bye = sim.expect_method(GW1, Method::Bye);
    sim.send(GW1, &reply(&bye, 200, None, None, None));
    sim.expect_status(PBX1, 200);
    sim.assert_clean();
}

#[test]
fn early_dialogs_are_capped() {
    let cfg = DEFAULT_CONFIG.replace(
        "identity = \"PstnGateway:pbx2\"",
        "identity = \"PstnGateway:pbx2\"\nmax_early_dialogs = 2",
    );
    let mut sim = Sim::new(&cfg);
    let mut a = Ua::caller(PBX1, "+12065550100", "early@pbx1");
    let (inv, _) = a.invite(None);
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 100);
    let fwd = sim.expect_method(PBX2, Method::Invite);
    for tag in ["f1", "f2", "f3", "f1"] {
        sim.send(PBX2, &reply(&fwd, 180, Some(tag), Some(PBX2), None));
    }
    sim.run(Duration::from_millis(50));
    let mut tags = Vec::new();
    while let Some(m) = sim.recv(PBX1) {
        tags.push(String::from_utf8_lossy(parse(&m).to().unwrap().tag.unwrap()).into_owned());
    }
    assert_eq!(tags, ["f1", "f2", "f1"]);
    assert_eq!(sim.proxy.stats().drop_early_dialog_cap, 1);
}

#[test]
fn transport_error_fails_over_at_once() {
    let mut sim = Sim::new(&failover_config(false));
    let (_a, _fwd1) = pstn_call(&mut sim);
    sim.proxy.handle_transport_error(sim.now, addr(GW1));
    sim.pump();
    let fwd2 = sim.expect_method(GW2, Method::Invite);
    sim.send(GW2, &reply(&fwd2, 480, Some("g"), None, None));
    sim.expect_method(GW2, Method::Ack);
    sim.expect_status(PBX1, 480);
    // No Timer A retransmission toward the unreachable gateway.
    sim.run(Duration::from_secs(2));
    assert!(sim.recv(GW1).is_none());
    sim.assert_clean();
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(PBX1, "+12065550100", "early-cancel@pbx1");
    let (inv, branch) = a.invite(None);
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 100);
    let fwd = sim.expect_method(PBX2, Method::Invite);
    sim.send(PBX1, &a.request("CANCEL", 1, &branch, None, 70));
    sim.run(Duration::from_millis(50));
    let mut codes: Vec<u16> = std::iter::from_fn(|| sim.recv(PBX1))
        .map(|m| parse(&m).status().unwrap())
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, [200, 487]);
    // RFC 3261 9.1: no CANCEL before a provisional; it goes out when the 180 arrives.
    assert!(sim.recv(PBX2).is_none());
    sim.send(PBX2, &reply(&fwd, 180, Some("late"), Some(PBX2), None));
    sim.expect_method(PBX2, Method::Cancel);
    assert!(
        sim.recv(PBX1).is_none(),
        "the 180 is not forwarded after the CANCEL"
    );
}

#[test]
fn a_2xx_crossing_the_cancel_is_acked_and_released() {
    let mut sim = Sim::new(&failover_config(true));
    let (_a, fwd1) = pstn_call(&mut sim);
    sim.send(GW1, &reply(&fwd1, 180, Some("gw1"), Some(GW1), None));
    sim.expect_status(PBX1, 180);
    // 180 stops the fast-failover timer: let Timer C expire instead.
    sim.run(Duration::from_millis(180_100));
    let cancel = sim.expect_method(GW1, Method::Cancel);
    let fwd2 = sim.expect_method(GW2, Method::Invite);
    // gw1 answered before seeing the CANCEL.
    sim.send(GW1, &reply(&cancel, 481, Some("gw1"), None, None));
    sim.send(
        GW1,
        &reply(
            &fwd1,
            200,
            Some("gw1"),
            Some(GW1),
            Some(&sdp("127.0.0.11", 45000)),
        ),
    );
    let ack = sim.expect_method(GW1, Method::Ack);
    assert_eq!(parse(&ack).to().unwrap().tag, Some(&b"gw1"[..]));
    let bye = sim.expect_method(GW1, Method::Bye);
    assert_eq!(parse(&bye).cseq().unwrap().number, 2);
    sim.send(GW1, &reply(&bye, 200, None, None, None));
    assert!(sim.recv(PBX1).is_none(), "the caller never sees that 200");
    sim.send(GW2, &reply(&fwd2, 503, Some("gw2"), None, None));
    sim.expect_method(GW2, Method::Ack);
    sim.expect_status(PBX1, 503);
    sim.assert_clean();
}

#[test]
fn caller_id_suppression_and_header_stripping() {
    let cfg = DEFAULT_CONFIG.replace(
        "identity = \"PBX2\"",
        "identity = \"PBX2\"\nsuppress_caller_id = true",
    );
    let mut sim = Sim::new(&cfg);
    let mut a = Ua::caller(PBX1, "+12065550100", "priv@pbx1");
    let (inv, _) = a.invite(None);
    let inv = String::from_utf8(inv).unwrap().replacen(
        "Call-ID:",
        "P-Asserted-Identity: <sip:+14255550100@127.0.0.21>\r\nHistory-Info: <sip:x@y>;index=1\r\nDiversion: <sip:z@y>\r\nCall-ID:",
        1,
    );
    sim.send(PBX1, inv.as_bytes());
    let fwd = sim.expect_method(PBX2, Method::Invite);
    let m = parse(&fwd);
    assert_eq!(
        Uri::parse(m.from().unwrap().uri).unwrap().user,
        Some(&b"anonymous"[..])
    );
    assert_eq!(header(&fwd, HeaderName::Privacy).as_deref(), Some("id"));
    assert!(header(&fwd, HeaderName::PAssertedIdentity).is_none());
    assert!(header(&fwd, HeaderName::HistoryInfo).is_none());
    assert!(header(&fwd, HeaderName::Diversion).is_none());
}

#[test]
fn maximum_call_duration_ends_the_call() {
    let mut pcfg = ProxyConfig::new(addr(RELAY));
    pcfg.max_call_duration = Duration::from_secs(20);
    let cfg = DEFAULT_CONFIG.replace("media_timeout_s = 30", "media_timeout_s = 3600");
    let mut sim = Sim::with_proxy(&cfg, pcfg);
    let (_a, _b) = establish(&mut sim, PBX1, "+12065550100", PBX2);
    sim.run(Duration::from_secs(21));
    let b1 = sim.expect_method(PBX1, Method::Bye);
    let b2 = sim.expect_method(PBX2, Method::Bye);
    sim.send(PBX1, &reply(&b1, 200, None, None, None));
    sim.send(PBX2, &reply(&b2, 200, None, None, None));
    assert_eq!(sim.ended(), vec![(EndReason::MaxDuration, 200)]);
    sim.assert_clean();
}

/// Peers that behave like simple user agents, on a lossy network: whatever is lost, every
/// call ends and every port and transaction is released in the end.
#[test]
fn seeded_lossy_sweep_leaks_nothing() {
    for seed in 0..12u64 {
        let mut sim = Sim::new(DEFAULT_CONFIG);
        let mut loss = Rng::new(seed);
        sim.drop = Some(Box::new(move |_, _, _| loss.below(100) < 15));
        sim.jitter = Some(Rng::new(seed + 100));
        let mut callers: Vec<Ua> = Vec::new();
        let mut answered: HashSet<String> = HashSet::new();
        for i in 0..6 {
            let (caller, number) = match i % 3 {
                0 => (PBX1, "+12065550100"),
                1 => (PBX2, "+14255550100"),
                _ => (GW1, "4255550100"),
            };
            let mut a = Ua::caller(caller, number, &format!("sweep{seed}-{i}"));
            let ip = &caller[..caller.find(':').unwrap()];
            let (inv, _) = a.invite(Some(&sdp(ip, 20000 + i as u16 * 2)));
            // The caller retransmits its INVITE like Timer A would (three times).
            for _ in 0..3 {
                sim.send(caller, &inv);
                sim.run(Duration::from_millis(500));
            }
            callers.push(a);
        }
        for step in 0..400 {
            sim.run(Duration::from_millis(250));
            for peer in [GW1, PBX1, PBX2] {
                while let Some(m) = sim.recv(peer) {
                    let msg = parse(&m);
                    match (msg.method(), msg.status()) {
                        (Some(Method::Invite), _) => {
                            let ip = &peer[..peer.find(':').unwrap()];
                            sim.send(peer, &reply(&m, 180, Some("s"), Some(peer), None));
                            sim.send(
                                peer,
                                &reply(&m, 200, Some("s"), Some(peer), Some(&sdp(ip, 40000))),
                            );
                        }
                        (Some(Method::Bye | Method::Cancel | Method::Info), _) => {
                            sim.send(peer, &reply(&m, 200, Some("s"), None, None));
                        }
                        (Some(_), _) => {}
                        (None, Some(200)) if msg.cseq().unwrap().method == Method::Invite => {
                            let id = String::from_utf8_lossy(msg.call_id().unwrap()).into_owned();
                            if let Some(a) = callers.iter_mut().find(|a| a.call_id == id) {
                                a.learn(&m);
                                a.cseq = 1;
                                let ack = a.ack(None);
                                sim.send(peer, &ack);
                                answered.insert(id);
                            }
                        }
                        _ => {}
                    }
                }
            }
            // Callers hang up after 10 s (the BYE may be lost: media timeout cleans up).
            if step == 40 {
                for a in callers.iter_mut().filter(|a| answered.contains(&a.call_id)) {
                    let bye = a.in_dialog("BYE", None);
                    let from = a.addr;
                    sim.send(from, &bye);
                }
            }
        }
        sim.drop = None;
        sim.inbox.clear();
        sim.run(Duration::from_secs(120));
        sim.inbox.clear();
        sim.assert_clean();
        let s = sim.proxy.stats();
        assert_eq!(s.calls_started, s.calls_ended, "seed {seed}: {s:?}");
        assert!(
            s.calls_started >= 5 && s.calls_answered >= 3,
            "seed {seed}: {s:?}"
        );
    }
}

#[test]
fn responses_leave_from_the_socket_their_request_arrived_on() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let shared = addr("127.0.0.1:5060");
    let mut a = Ua::caller(PBX1, "+12065550100", "sock@pbx1");
    let (inv, _) = a.invite(None);
    sim.proxy.handle_datagram(sim.now, addr(PBX1), shared, &inv);
    let mut buf = vec![0u8; 65536];
    let mut seen = Vec::new();
    while let Some(t) = sim.proxy.poll_transmit(&mut buf) {
        seen.push((t.dst, t.local, parse(&buf[..t.len]).status()));
    }
    assert!(
        seen.contains(&(addr(PBX1), Some(shared), Some(100))),
        "{seen:?}"
    );
    assert!(seen.contains(&(addr(PBX2), None, None)), "{seen:?}");
    assert!(!sim.proxy.is_idle());
    sim.proxy.start_drain(sim.now);
    sim.run(Duration::from_secs(100));
    assert!(sim.proxy.is_idle());
}

#[test]
fn in_dialog_requests_only_from_the_legs() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let (mut a, _b) = establish(&mut sim, PBX1, "+12065550100", PBX2);
    // Same dialog identifiers, another host: refused, the call stays.
    let bye = a.in_dialog("BYE", None);
    sim.send("127.0.0.66:5060", &bye);
    sim.expect_status("127.0.0.66:5060", 481);
    sim.quiet(PBX2);
    assert_eq!(sim.proxy.active_calls(), 1);
    sim.send(PBX1, &bye);
    let fwd = sim.expect_method(PBX2, Method::Bye);
    sim.send(PBX2, &reply(&fwd, 200, None, None, None));
    sim.expect_status(PBX1, 200);
    sim.assert_clean();
}

#[test]
fn unreadable_sdp_offer_is_488_without_leak() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    let mut a = Ua::caller(PBX1, "+12065550100", "badsdp@pbx1");
    let (inv, _) = a.invite(Some("this is not sdp\r\n"));
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 488);
    sim.quiet(PBX2);
    assert_eq!(sim.proxy.stats().rejected_bad_sdp, 1);
    sim.assert_clean();
}

#[test]
fn overload_refuses_new_calls_until_the_queue_drains_and_serves_calls_in_progress() {
    let ms = Duration::from_millis;
    let mut pcfg = ProxyConfig::new(addr(RELAY));
    pcfg.overload_queue_delay = Some(ms(20));
    let mut sim = Sim::with_proxy(DEFAULT_CONFIG, pcfg);
    let (mut a, _b) = establish(&mut sim, PBX1, "+12065550100", PBX2);
    // Below the 20 ms mark: a burst, nothing refused.
    sim.proxy.handle_queue_delay(ms(19));
    assert!(!sim.proxy.is_overloaded());
    sim.proxy.handle_queue_delay(ms(20));
    assert!(sim.proxy.is_overloaded());
    let mut c = Ua::caller(PBX1, "+12065550101", "overload@pbx1");
    let (inv, _) = c.invite(None);
    sim.send(PBX1, &inv);
    let r = sim.expect_status(PBX1, 503);
    assert_eq!(header(&r, HeaderName::RetryAfter).as_deref(), Some("10"));
    sim.quiet(PBX2);
    // The stateless 503 leaves nothing behind; its ACK is absorbed.
    sim.send(PBX1, &c.request_ack_for(&r));
    sim.quiet(PBX2);
    // The call in progress goes on while overloaded.
    sim.send(PBX1, &a.in_dialog("INFO", None));
    let info = sim.expect_method(PBX2, Method::Info);
    sim.send(PBX2, &reply(&info, 200, None, None, None));
    sim.expect_status(PBX1, 200);
    // Hysteresis: still refusing until a datagram has waited a quarter of the mark or less.
    sim.proxy.handle_queue_delay(ms(6));
    assert!(sim.proxy.is_overloaded());
    sim.proxy.handle_queue_delay(ms(5));
    assert!(!sim.proxy.is_overloaded());
    let mut d = Ua::caller(PBX1, "+12065550102", "after@pbx1");
    let (inv, _) = d.invite(None);
    sim.send(PBX1, &inv);
    sim.expect_status(PBX1, 100);
    sim.expect_method(PBX2, Method::Invite);
    let s = sim.proxy.stats();
    assert_eq!((s.rejected_overload, s.overload_episodes), (1, 1));
    sim.send(PBX1, &a.in_dialog("BYE", None));
    let bye = sim.expect_method(PBX2, Method::Bye);
    sim.send(PBX2, &reply(&bye, 200, None, None, None));
    sim.expect_status(PBX1, 200);
}

#[test]
fn overload_control_is_off_by_default() {
    let mut sim = Sim::new(DEFAULT_CONFIG);
    sim.proxy.handle_queue_delay(Duration::from_secs(5));
    assert!(!sim.proxy.is_overloaded());
    establish(&mut sim, PBX1, "+12065550100", PBX2);
    assert_eq!(sim.proxy.stats().rejected_overload, 0);
}
