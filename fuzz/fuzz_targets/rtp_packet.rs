//! Random datagrams from random sources into a relay with live sessions: never panics, only
//! forwards between a session's own ports toward an SDP-known address, keeps its books.
#![no_main]
use intertrunk::media::{Forward, Leg, PortBinder, PortRange, Relay, RelayConfig};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

struct Binder;
impl PortBinder for Binder {
    fn bind_pair(&mut self, _: u16) -> std::io::Result<()> {
        Ok(())
    }
    fn release_pair(&mut self, _: u16) {}
}

const FIRST: u16 = 40000;

fuzz_target!(|data: &[u8]| {
    let cfg = RelayConfig {
        media_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ports: PortRange {
            first: FIRST,
            last: FIRST + 63,
        },
        media_timeout: Duration::from_secs(30),
        latch_window: Duration::from_secs(2),
    };
    let mut relay = Relay::new(cfg, 7);
    let mut binder = Binder;
    let t0 = Instant::now();
    let ep =
        |last: u8, port: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port);
    let a = relay.create_session(t0, &mut binder, 1, true).unwrap();
    let b = relay.create_session(t0, &mut binder, 2, true).unwrap();
    relay.set_remote(t0, a, Leg::Caller, 0, Some(ep(1, 4000)), None, false);
    relay.set_remote(t0, a, Leg::Callee, 0, Some(ep(2, 6000)), None, true);
    relay.set_remote(
        t0,
        b,
        Leg::Caller,
        1,
        Some(ep(3, 4000)),
        Some(ep(3, 5001)),
        true,
    );
    relay.set_remote(t0, b, Leg::Callee, 1, Some(ep(4, 6000)), None, false);
    let known = [
        ep(1, 4000),
        ep(2, 6000),
        ep(3, 4000),
        ep(3, 5001),
        ep(4, 6000),
    ];

    // Records: [port offset, source selector, time step, length] followed by the datagram.
    let mut now = t0;
    let mut rest = data;
    let mut forwarded = 0u64;
    let mut sources: Vec<SocketAddr> = Vec::new();
    while let [off, src, step, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        now += Duration::from_millis(u64::from(*step) * 50);
        let port = FIRST.wrapping_add(u16::from(*off)).wrapping_sub(8);
        let src = match src % 8 {
            s @ 0..=4 => known[usize::from(s)],
            5 => ep(1, 4001),
            6 => ep(9, u16::from(*src) * 7),
            _ => ep(4, 6001),
        };
        if !sources.contains(&src) {
            sources.push(src);
        }
        if let Forward::To { out_port, dst } = relay.handle_packet(now, port, src, bytes) {
            forwarded += 1;
            assert_ne!(out_port, port);
            assert_eq!(out_port & 1, port & 1);
            assert!((FIRST..FIRST + 64).contains(&out_port));
            // Destinations are SDP endpoints (+1 for RTCP) or sources learned by latching.
            let rtcp_of = |e: SocketAddr| SocketAddr::new(e.ip(), e.port() + 1);
            assert!(
                known.contains(&dst)
                    || known.iter().any(|&k| rtcp_of(k) == dst)
                    || sources.contains(&dst),
                "{dst}"
            );
        }
        if relay.poll_timeout().is_some_and(|t| t <= now) {
            relay.handle_timeout(now);
        }
        while relay.poll_event().is_some() {}
    }
    assert_eq!(relay.totals().forwarded_packets, forwarded);
    let sa = relay.close_session(&mut binder, a);
    let sb = relay.close_session(&mut binder, b);
    assert_eq!((sa.streams.len(), sb.streams.len()), (1, 2));
    assert_eq!(relay.free_pairs(), 32);
});
