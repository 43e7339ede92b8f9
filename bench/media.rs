//! Media core: the per-packet decision with 1,000 live sessions, and SDP parse / rewrite of a
//! realistic offer.
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use intertrunk::media::{Forward, Leg, PortBinder, PortRange, Relay, RelayConfig};
use intertrunk::wire::sdp::{rewrite, Sdp, SdpRewrite};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

struct Binder;
impl PortBinder for Binder {
    fn bind_pair(&mut self, _: u16) -> std::io::Result<()> {
        Ok(())
    }
    fn release_pair(&mut self, _: u16) {}
}

/// An AudioCodes-style offer with ICE lines, as a PBX or gateway sends it.
const OFFER: &[u8] = b"v=0\r\n\
o=AudiocodesGW 1868442357 1868442168 IN IP4 10.30.4.17\r\n\
s=Phone-Call\r\n\
c=IN IP4 10.30.4.17\r\n\
t=0 0\r\n\
m=audio 6010 RTP/AVP 8 0 18 101\r\n\
c=IN IP4 10.30.4.17\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ice-ufrag:8hhY\r\n\
a=ice-pwd:asd88fgpdd777uzjYhagZg\r\n\
a=candidate:1 1 UDP 2130706431 10.30.4.17 6010 typ host\r\n\
a=candidate:1 2 UDP 2130706430 10.30.4.17 6011 typ host\r\n\
a=rtcp:6011 IN IP4 10.30.4.17\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn rtp(seq: u16) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[1] = 8;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq).wrapping_mul(160)).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    p
}

fn relay_packet(c: &mut Criterion) {
    const SESSIONS: usize = 1000;
    let cfg = RelayConfig {
        media_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ports: PortRange {
            first: 30000,
            last: 39999,
        },
        media_timeout: Duration::from_secs(30),
        latch_window: Duration::from_secs(2),
    };
    let mut relay = Relay::new(cfg, 1);
    let t0 = Instant::now();
    // Each session: (port on the gateway leg, gateway's source).
    let mut flows: Vec<(u16, SocketAddr)> = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let s = relay
            .create_session(t0, &mut Binder, 1, true)
            .expect("ports for 1,000 sessions");
        let gw = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 1, (i % 250) as u8)),
            4000 + 2 * (i / 250) as u16,
        );
        let pbx = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 2, (i % 250) as u8)), 6000);
        relay.set_remote(t0, s, Leg::Caller, 0, Some(gw), None, false);
        relay.set_remote(t0, s, Leg::Callee, 0, Some(pbx), None, false);
        flows.push((relay.local_port(s, Leg::Caller, 0).expect("port"), gw));
    }
    let mut g = c.benchmark_group("media");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    let mut seq = 0u16;
    let mut packet = rtp(0);
    let now = t0 + Duration::from_millis(20);
    g.bench_function("handle_packet_1000_sessions_172B", |b| {
        b.iter(|| {
            let (port, src) = flows[i];
            i += 1;
            if i == SESSIONS {
                i = 0;
                seq = seq.wrapping_add(1);
                packet[2..4].copy_from_slice(&seq.to_be_bytes());
            }
            let f = relay.handle_packet(now, black_box(port), src, black_box(&packet));
            debug_assert!(matches!(f, Forward::To { .. }));
            f
        })
    });
    assert!(relay.totals().dropped_unexpected_source == 0 && relay.totals().forwarded_packets > 0);

    g.throughput(Throughput::Bytes(OFFER.len() as u64));
    g.bench_function("sdp_parse_offer", |b| {
        b.iter(|| {
            let s = Sdp::parse(black_box(OFFER)).expect("offer parses");
            let port = s.media().next().map(|m| m.port);
            port
        })
    });
    let rw = SdpRewrite {
        address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        ports: &[31234],
    };
    let mut out = [0u8; 1500];
    g.bench_function("sdp_rewrite_offer", |b| {
        b.iter(|| rewrite(black_box(OFFER), &rw, &mut out).expect("offer rewrites"))
    });
    g.finish();
}

criterion_group!(benches, relay_packet);
criterion_main!(benches);
