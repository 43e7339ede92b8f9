//! The whole proxy core, stateful, under hostile peers: a script of datagrams from the trunks
//! of the built-in configuration (and from strangers), answers built from what the proxy sent
//! (so calls get deep into their dialogs), corrupted echoes and jumps of virtual time. Nothing
//! may panic, everything the proxy sends must parse again, and once every timer has run out no
//! call, transaction or media port may remain.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use intertrunk::config::{Config, DEFAULT_CONFIG};
use intertrunk::media::{PortBinder, PortRange, Relay, RelayConfig};
use intertrunk::proxy::{Proxy, ProxyConfig};
use intertrunk::route::{LiveTable, RouteTable};
use intertrunk::wire::sip::{build_response, Error, HeaderName, Message, ParseOptions};
use libfuzzer_sys::fuzz_target;

struct NoBind;
impl PortBinder for NoBind {
    fn bind_pair(&mut self, _: u16) -> std::io::Result<()> {
        Ok(())
    }
    fn release_pair(&mut self, _: u16) {}
}

/// The gateway, both PBXs, a stranger, and the gateway from another port.
const SOURCES: [&str; 5] = [
    "127.0.0.11:5060",
    "127.0.0.21:5060",
    "127.0.0.22:5060",
    "127.0.0.99:5060",
    "127.0.0.11:5099",
];
const CODES: [u16; 8] = [100, 180, 183, 200, 486, 503, 408, 487];
const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.22\r\ns=-\r\nc=IN IP4 127.0.0.22\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// An answer to `req` from its destination: dialog fields, Record-Route, a To tag, SDP on
/// 183/200.
fn answer(req: &[u8], code: u16) -> Option<Vec<u8>> {
    let m = Message::parse_with(req, &ParseOptions::lenient()).ok()?;
    let mut out = vec![0u8; req.len() + 1024];
    let n = build_response(&m, code, "Fuzz", Some(b"fz"), &[], &mut out).ok()?;
    out.truncate(n);
    let tail = b"Content-Length: 0\r\n\r\n";
    if !out.ends_with(tail) {
        return Some(out);
    }
    out.truncate(out.len() - tail.len());
    for h in m.headers().filter(|h| h.name == HeaderName::RecordRoute) {
        out.extend_from_slice(b"Record-Route: ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Contact: <sip:callee@127.0.0.22:5060>\r\n");
    if code == 183 || code == 200 {
        out.extend_from_slice(b"Content-Type: application/sdp\r\nContent-Length: ");
        out.extend_from_slice(SDP.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(SDP);
    } else {
        out.extend_from_slice(tail);
    }
    Some(out)
}

/// Compiled once: the routing table is read-only to the proxy.
fn table() -> &'static LiveTable {
    static TABLE: OnceLock<LiveTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let cfg = Arc::new(Config::from_toml(DEFAULT_CONFIG).expect("built-in config"));
        LiveTable::new(Arc::new(RouteTable::build(cfg).expect("built-in table")))
    })
}

fuzz_target!(|data: &[u8]| {
    let live = table();
    let relay = Relay::new(
        RelayConfig {
            media_address: "127.0.0.1".parse().unwrap(),
            ports: PortRange { first: 30000, last: 30063 },
            media_timeout: Duration::from_secs(30),
            latch_window: Duration::from_secs(2),
        },
        1,
    );
    let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let mut pcfg = ProxyConfig::new(local);
    pcfg.max_transactions = 64;
    pcfg.max_calls = 16;
    pcfg.max_call_duration = Duration::from_secs(3600);
    let mut proxy = Proxy::new(pcfg, live.reader(), relay, NoBind, 7);
    let mut now = Instant::now();
    proxy.handle_timeout(now);
    let mut buf = vec![0u8; 65536];
    // What the proxy sent last, and where.
    let mut sent: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let mut rest = data;
    let mut steps = 0;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        steps += 1;
        if steps > 64 {
            break;
        }
        match op >> 6 {
            // A datagram from the script.
            0 => {
                let [a, b, tail @ ..] = rest else { break };
                let len = (usize::from(*a) | usize::from(*b) << 8).min(tail.len());
                let (dgram, tail) = tail.split_at(len);
                rest = tail;
                let src: SocketAddr = SOURCES[op as usize % SOURCES.len()].parse().unwrap();
                proxy.handle_datagram(now, src, local, dgram);
            }
            // Its destination answers one of the requests the proxy sent.
            1 => {
                let requests: Vec<&(SocketAddr, Vec<u8>)> =
                    sent.iter().filter(|(_, b)| !b.starts_with(b"SIP/2.0")).collect();
                let Some((dst, req)) = requests.get((op as usize >> 3) % requests.len().max(1)) else {
                    continue;
                };
                if let Some(resp) = answer(req, CODES[op as usize & 7]) {
                    proxy.handle_datagram(now, *dst, local, &resp);
                }
            }
            // Time passes.
            2 => {
                now += Duration::from_millis(u64::from(op & 0x3f) * 250);
                proxy.handle_timeout(now);
            }
            // Something the proxy sent comes back corrupted from where it went.
            _ => {
                let Some((pos, tail)) = rest.split_first() else { break };
                rest = tail;
                let Some((dst, msg)) = sent.last() else { continue };
                let mut m = msg.clone();
                if !m.is_empty() {
                    let i = (*pos as usize * 7) % m.len();
                    m[i] ^= op & 0x3f | 1;
                }
                proxy.handle_datagram(now, *dst, local, &m);
            }
        }
        while let Some(t) = proxy.poll_transmit(&mut buf) {
            let out = &buf[..t.len];
            match Message::parse_with(out, &ParseOptions::lenient()) {
                Ok(_) | Err(Error::TooManyHeaders) => {}
                Err(e) => panic!("the proxy sent what does not parse: {e}: {:?}", String::from_utf8_lossy(out)),
            }
            if sent.len() == 16 {
                sent.remove(0);
            }
            sent.push((t.dst, out.to_vec()));
        }
        while proxy.poll_event().is_some() {}
    }
    // Every call and transaction ends by its timers; its media ports go back to the pool.
    for _ in 0..40 {
        now += Duration::from_secs(600);
        proxy.handle_timeout(now);
        while proxy.poll_transmit(&mut buf).is_some() {}
        while proxy.poll_event().is_some() {}
    }
    assert_eq!(proxy.active_calls(), 0, "a call outlived every timer");
    assert_eq!(proxy.relay().totals().sessions_active, 0, "media outlived its call");
});
