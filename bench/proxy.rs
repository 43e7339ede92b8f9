//! CPU cost of the proxy core per call (INVITE, 100, 180, 200, ACK, BYE, 200: 14 datagrams in
//! and out of the relay), media anchoring included, no I/O. Only time spent inside the
//! proxy's `handle_*`/`poll_*` is counted (the scripted peers' work is excluded).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use intertrunk::config::{Config, DEFAULT_CONFIG};
use intertrunk::media::{PortBinder, PortRange, Relay, RelayConfig};
use intertrunk::proxy::{Proxy, ProxyConfig};
use intertrunk::route::{LiveTable, RouteTable};
use intertrunk::wire::sip::{HeaderName, Message};

struct NoBind;
impl PortBinder for NoBind {
    fn bind_pair(&mut self, _: u16) -> std::io::Result<()> {
        Ok(())
    }
    fn release_pair(&mut self, _: u16) {}
}

const SDP_A: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.21\r\ns=-\r\nc=IN IP4 127.0.0.21\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
const SDP_B: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.22\r\ns=-\r\nc=IN IP4 127.0.0.22\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn with_body(head: String, body: Option<&str>) -> Vec<u8> {
    let mut s = head;
    match body {
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

fn reply(req: &[u8], code: u16, body: Option<&str>) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut s = format!("SIP/2.0 {code} X\r\n");
    for h in m.headers() {
        let v = String::from_utf8_lossy(h.value);
        match h.name {
            HeaderName::Via
            | HeaderName::RecordRoute
            | HeaderName::From
            | HeaderName::CallId
            | HeaderName::CSeq => s += &format!("{}: {v}\r\n", String::from_utf8_lossy(h.raw_name)),
            HeaderName::To if !v.contains("tag=") => s += &format!("To: {v};tag=b\r\n"),
            HeaderName::To => s += &format!("To: {v}\r\n"),
            _ => {}
        }
    }
    s += "Contact: <sip:b@127.0.0.22:5060>\r\n";
    with_body(s, body)
}

fn caller_request(
    method: &str,
    n: u64,
    cseq: u32,
    branch: &str,
    to_tag: bool,
    body: Option<&str>,
) -> Vec<u8> {
    let route = if to_tag {
        "Route: <sip:127.0.0.1:5061;lr>\r\n"
    } else {
        ""
    };
    let ruri = if to_tag {
        "sip:b@127.0.0.22:5060"
    } else {
        "sip:+12065550100@127.0.0.1:5060"
    };
    let to = if to_tag { ";tag=b" } else { "" };
    with_body(
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.21:5060;branch=z9hG4bK{branch}{n}\r\n{route}Max-Forwards: 70\r\nFrom: <sip:+14255550100@127.0.0.21>;tag=a{n}\r\nTo: <sip:+12065550100@127.0.0.1>{to}\r\nCall-ID: bench{n}@127.0.0.21\r\nCSeq: {cseq} {method}\r\nContact: <sip:a@127.0.0.21:5060>\r\nUser-Agent: bench\r\n"
        ),
        body,
    )
}

struct Bench {
    proxy: Proxy<NoBind>,
    now: Instant,
    buf: Vec<u8>,
    n: u64,
}

impl Bench {
    fn new() -> Bench {
        let cfg = Arc::new(Config::from_toml(DEFAULT_CONFIG).unwrap());
        let live = LiveTable::new(Arc::new(RouteTable::build(cfg).unwrap()));
        let relay = Relay::new(
            RelayConfig {
                media_address: "127.0.0.1".parse().unwrap(),
                ports: PortRange {
                    first: 30000,
                    last: 39999,
                },
                media_timeout: Duration::from_secs(30),
                latch_window: Duration::from_secs(2),
            },
            1,
        );
        let local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        let now = Instant::now();
        let mut proxy = Proxy::new(ProxyConfig::new(local), live.reader(), relay, NoBind, 1);
        proxy.handle_timeout(now);
        Bench {
            proxy,
            now,
            buf: vec![0; 65536],
            n: 0,
        }
    }

    /// Feeds one datagram, collects what the proxy sends; returns the time spent in the proxy.
    fn feed(&mut self, src: &str, bytes: &[u8], out: &mut Vec<Vec<u8>>) -> Duration {
        let src: SocketAddr = src.parse().unwrap();
        let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let t = Instant::now();
        self.proxy.handle_datagram(self.now, src, local, bytes);
        let mut sent = Vec::new();
        while let Some(tx) = self.proxy.poll_transmit(&mut self.buf) {
            sent.push(tx.len);
            out.push(self.buf[..tx.len].to_vec());
        }
        let spent = t.elapsed();
        while self.proxy.poll_event().is_some() {}
        spent
    }

    /// One call, PBX1 -> PBX2; returns proxy time.
    fn call(&mut self) -> Duration {
        self.n += 1;
        let n = self.n;
        let mut spent = Duration::ZERO;
        let mut out = Vec::new();
        spent += self.feed(
            "127.0.0.21:5060",
            &caller_request("INVITE", n, 1, "inv", false, Some(SDP_A)),
            &mut out,
        );
        let fwd = out.pop().unwrap();
        out.clear();
        spent += self.feed("127.0.0.22:5060", &reply(&fwd, 100, None), &mut out);
        spent += self.feed("127.0.0.22:5060", &reply(&fwd, 180, None), &mut out);
        spent += self.feed("127.0.0.22:5060", &reply(&fwd, 200, Some(SDP_B)), &mut out);
        spent += self.feed(
            "127.0.0.21:5060",
            &caller_request("ACK", n, 1, "ack", true, None),
            &mut out,
        );
        out.clear();
        spent += self.feed(
            "127.0.0.21:5060",
            &caller_request("BYE", n, 2, "bye", true, None),
            &mut out,
        );
        let bye = out.pop().unwrap();
        spent += self.feed("127.0.0.22:5060", &reply(&bye, 200, None), &mut out);
        // Virtual time moves on so that finished transactions are reaped.
        self.now += Duration::from_millis(2);
        let t = Instant::now();
        self.proxy.handle_timeout(self.now);
        spent += t.elapsed();
        spent
    }
}

fn calls(c: &mut Criterion) {
    let mut b = Bench::new();
    c.bench_function("proxy_call_pbx_to_pbx", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += b.call();
            }
            total
        })
    });
    assert_eq!(b.proxy.active_calls(), 0);
}

criterion_group!(benches, calls);

/// `PROXY_CALLS=N` runs N calls without criterion (for `valgrind --tool=callgrind`).
fn main() {
    if let Some(n) = std::env::var("PROXY_CALLS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        let mut b = Bench::new();
        let mut total = Duration::ZERO;
        for _ in 0..n.max(1) {
            total += b.call();
        }
        println!("{n} calls: {:?} per call in the proxy", total / n.max(1));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
