//! Simulated tests of the media core: a fake binder and virtual time.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Records bound pairs; refuses double binds and unknown releases loudly.
#[derive(Default)]
struct FakeBinder {
    bound: BTreeSet<u16>,
    /// Ports some other process holds.
    in_use_elsewhere: HashSet<u16>,
    /// Fail every bind with this error kind.
    fail_with: Option<io::ErrorKind>,
    binds: u64,
}

impl PortBinder for FakeBinder {
    fn bind_pair(&mut self, rtp_port: u16) -> io::Result<()> {
        assert_eq!(rtp_port % 2, 0, "RTP port must be even");
        if let Some(kind) = self.fail_with {
            return Err(kind.into());
        }
        if self.in_use_elsewhere.contains(&rtp_port) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        assert!(self.bound.insert(rtp_port), "pair {rtp_port} bound twice");
        self.binds += 1;
        Ok(())
    }

    fn release_pair(&mut self, rtp_port: u16) {
        assert!(
            self.bound.remove(&rtp_port),
            "pair {rtp_port} released but not bound"
        );
    }
}

const FIRST: u16 = 30000;
const LAST: u16 = 30099; // 50 pairs

fn cfg() -> RelayConfig {
    RelayConfig {
        media_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ports: PortRange {
            first: FIRST,
            last: LAST,
        },
        media_timeout: Duration::from_secs(30),
        latch_window: Duration::from_secs(2),
    }
}

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port)
}

fn rtp(seq: u16, ssrc: u32) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[1] = 8;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// An RTCP receiver report with no blocks.
const RTCP_RR: [u8; 8] = [0x80, 201, 0, 1, 0, 0, 0, 9];

const GW: u8 = 11; // gateway (caller) address 127.0.0.11
const PBX: u8 = 21; // PBX (callee) address 127.0.0.21

struct Call {
    relay: Relay,
    binder: FakeBinder,
    t0: Instant,
    id: SessionId,
    caller_port: u16,
    callee_port: u16,
}

/// A one-stream call, SDP known on both legs: gateway media at .11:4000, PBX at .21:6000.
fn call(latching: bool, teardown: bool) -> Call {
    let mut relay = Relay::new(cfg(), 42);
    let mut binder = FakeBinder::default();
    let t0 = Instant::now();
    let id = relay.create_session(t0, &mut binder, 1, teardown).unwrap();
    relay.set_remote(t0, id, Leg::Caller, 0, Some(addr(GW, 4000)), None, latching);
    relay.set_remote(
        t0,
        id,
        Leg::Callee,
        0,
        Some(addr(PBX, 6000)),
        None,
        latching,
    );
    let caller_port = relay.local_port(id, Leg::Caller, 0).unwrap();
    let callee_port = relay.local_port(id, Leg::Callee, 0).unwrap();
    Call {
        relay,
        binder,
        t0,
        id,
        caller_port,
        callee_port,
    }
}

#[test]
fn forwards_rtp_and_rtcp_both_ways() {
    let mut c = call(false, true);
    let now = c.t0 + Duration::from_millis(20);
    assert_ne!(c.caller_port, c.callee_port);
    assert!(c.binder.bound.contains(&c.caller_port) && c.binder.bound.contains(&c.callee_port));

    let f = c
        .relay
        .handle_packet(now, c.caller_port, addr(GW, 4000), &rtp(1, 7));
    assert_eq!(
        f,
        Forward::To {
            out_port: c.callee_port,
            dst: addr(PBX, 6000)
        }
    );
    let f = c
        .relay
        .handle_packet(now, c.callee_port, addr(PBX, 6000), &rtp(100, 9));
    assert_eq!(
        f,
        Forward::To {
            out_port: c.caller_port,
            dst: addr(GW, 4000)
        }
    );
    let f = c
        .relay
        .handle_packet(now, c.caller_port + 1, addr(GW, 4001), &RTCP_RR);
    assert_eq!(
        f,
        Forward::To {
            out_port: c.callee_port + 1,
            dst: addr(PBX, 6001)
        }
    );
    let f = c
        .relay
        .handle_packet(now, c.callee_port + 1, addr(PBX, 6001), &RTCP_RR);
    assert_eq!(
        f,
        Forward::To {
            out_port: c.caller_port + 1,
            dst: addr(GW, 4001)
        }
    );

    let t = *c.relay.totals();
    assert_eq!(
        (t.forwarded_packets, t.rtp_packets, t.rtcp_packets),
        (4, 2, 2)
    );
    let stats = c.relay.close_session(&mut c.binder, c.id);
    assert_eq!(stats.streams.len(), 1);
    assert_eq!(stats.streams[0].caller.packets, 1);
    assert_eq!(stats.streams[0].caller.bytes, 172);
    assert_eq!(stats.streams[0].caller.rtcp_packets, 1);
    assert_eq!(stats.streams[0].callee.packets, 1);
    assert!(c.binder.bound.is_empty());
}

#[test]
fn explicit_rtcp_endpoint_from_sdp() {
    let mut c = call(false, false);
    c.relay.set_remote(
        c.t0,
        c.id,
        Leg::Callee,
        0,
        Some(addr(PBX, 6000)),
        Some(addr(PBX + 1, 7001)),
        false,
    );
    let f = c
        .relay
        .handle_packet(c.t0, c.caller_port + 1, addr(GW, 4001), &RTCP_RR);
    assert_eq!(
        f,
        Forward::To {
            out_port: c.callee_port + 1,
            dst: addr(PBX + 1, 7001)
        }
    );
    // RTCP from the RTP address+1 is no longer the PBX's RTCP source.
    let f = c
        .relay
        .handle_packet(c.t0, c.callee_port + 1, addr(PBX, 6001), &RTCP_RR);
    assert_eq!(f, Forward::Drop(DropReason::UnexpectedSource));
}

#[test]
fn no_destination_before_answer() {
    let mut relay = Relay::new(cfg(), 1);
    let mut binder = FakeBinder::default();
    let t0 = Instant::now();
    let id = relay.create_session(t0, &mut binder, 1, true).unwrap();
    relay.set_remote(t0, id, Leg::Caller, 0, Some(addr(GW, 4000)), None, false);
    let p = relay.local_port(id, Leg::Caller, 0).unwrap();
    // Early RTP from the caller: nowhere to go yet.
    assert_eq!(
        relay.handle_packet(t0, p, addr(GW, 4000), &rtp(1, 1)),
        Forward::Drop(DropReason::NoDestination)
    );
    // Anything on the callee port before its SDP is an unknown source.
    let q = relay.local_port(id, Leg::Callee, 0).unwrap();
    assert_eq!(
        relay.handle_packet(t0, q, addr(PBX, 6000), &rtp(1, 1)),
        Forward::Drop(DropReason::UnexpectedSource)
    );
    assert_eq!(relay.totals().dropped_no_destination, 1);
    let stats = relay.close_session(&mut binder, id);
    assert_eq!(stats.streams[0].caller.dropped_no_destination, 1);
    assert_eq!(stats.streams[0].callee.dropped_source, 1);
}

#[test]
fn strict_source_without_latching() {
    let mut c = call(false, false);
    let now = c.t0;
    for src in [addr(66, 4000), addr(GW, 4002), addr(PBX, 6000)] {
        let f = c.relay.handle_packet(now, c.caller_port, src, &rtp(1, 1));
        assert_eq!(f, Forward::Drop(DropReason::UnexpectedSource), "{src}");
    }
    // A third party on the RTCP port too.
    let f = c
        .relay
        .handle_packet(now, c.caller_port + 1, addr(66, 4001), &RTCP_RR);
    assert_eq!(f, Forward::Drop(DropReason::UnexpectedSource));
    // Still forwarding the genuine source, even long after the set-up.
    let later = now + Duration::from_secs(60);
    assert!(matches!(
        c.relay
            .handle_packet(later, c.caller_port, addr(GW, 4000), &rtp(2, 1)),
        Forward::To { .. }
    ));
    assert_eq!(c.relay.totals().dropped_unexpected_source, 4);
    let stats = c.relay.close_session(&mut c.binder, c.id);
    assert_eq!(stats.streams[0].caller.dropped_source, 4);
    assert_eq!(stats.streams[0].caller.packets, 1);
}

#[test]
fn latching_learns_nat_source_then_locks() {
    let mut c = call(true, false);
    let nat = addr(99, 50000);
    let t = c.t0 + Duration::from_millis(100);
    // The gateway is behind NAT: its packets come from another address than the SDP says.
    assert!(matches!(
        c.relay.handle_packet(t, c.caller_port, nat, &rtp(1, 1)),
        Forward::To { .. }
    ));
    // Learned: the PBX's media now goes to the NAT address.
    let f = c
        .relay
        .handle_packet(t, c.callee_port, addr(PBX, 6000), &rtp(1, 2));
    assert_eq!(
        f,
        Forward::To {
            out_port: c.caller_port,
            dst: nat
        }
    );
    // Another non-matching source within the window does not take over.
    let f = c
        .relay
        .handle_packet(t, c.caller_port, addr(98, 1234), &rtp(2, 1));
    assert_eq!(f, Forward::Drop(DropReason::UnexpectedSource));
    // After the window, only the learned source.
    let after = c.t0 + Duration::from_secs(3);
    assert!(matches!(
        c.relay.handle_packet(after, c.caller_port, nat, &rtp(3, 1)),
        Forward::To { .. }
    ));
    let f = c
        .relay
        .handle_packet(after, c.caller_port, addr(GW, 4000), &rtp(4, 1));
    assert_eq!(f, Forward::Drop(DropReason::UnexpectedSource));
    let f = c
        .relay
        .handle_packet(after, c.caller_port, addr(98, 1234), &rtp(4, 1));
    assert_eq!(f, Forward::Drop(DropReason::UnexpectedSource));
}

#[test]
fn latching_prefers_the_sdp_source_within_the_window() {
    let mut c = call(true, false);
    let t = c.t0 + Duration::from_millis(10);
    // An attacker races the real gateway (rtpengine ES2025-01).
    let attacker = addr(66, 4000);
    assert!(matches!(
        c.relay
            .handle_packet(t, c.caller_port, attacker, &rtp(1, 5)),
        Forward::To { .. }
    ));
    // Same address as the SDP, other port: better, takes over.
    let same_ip = addr(GW, 4100);
    assert!(matches!(
        c.relay.handle_packet(t, c.caller_port, same_ip, &rtp(1, 1)),
        Forward::To { .. }
    ));
    assert_eq!(
        c.relay
            .handle_packet(t, c.caller_port, attacker, &rtp(2, 5)),
        Forward::Drop(DropReason::UnexpectedSource)
    );
    // The exact SDP endpoint: best, takes over.
    assert!(matches!(
        c.relay
            .handle_packet(t, c.caller_port, addr(GW, 4000), &rtp(2, 1)),
        Forward::To { .. }
    ));
    assert_eq!(
        c.relay.handle_packet(t, c.caller_port, same_ip, &rtp(3, 1)),
        Forward::Drop(DropReason::UnexpectedSource)
    );
    let f = c
        .relay
        .handle_packet(t, c.callee_port, addr(PBX, 6000), &rtp(1, 2));
    assert_eq!(
        f,
        Forward::To {
            out_port: c.caller_port,
            dst: addr(GW, 4000)
        }
    );
    // Locked after the window.
    let after = c.t0 + Duration::from_secs(5);
    assert_eq!(
        c.relay
            .handle_packet(after, c.caller_port, attacker, &rtp(9, 5)),
        Forward::Drop(DropReason::UnexpectedSource)
    );
}

#[test]
fn latching_with_nothing_learned_accepts_only_the_sdp_source_after_the_window() {
    let mut c = call(true, false);
    let after = c.t0 + Duration::from_secs(3);
    assert_eq!(
        c.relay
            .handle_packet(after, c.caller_port, addr(66, 4000), &rtp(1, 1)),
        Forward::Drop(DropReason::UnexpectedSource)
    );
    assert!(matches!(
        c.relay
            .handle_packet(after, c.caller_port, addr(GW, 4000), &rtp(1, 1)),
        Forward::To { .. }
    ));
}

#[test]
fn reinvite_moves_the_endpoint() {
    let mut c = call(false, false);
    let t1 = c.t0 + Duration::from_secs(10);
    // The PBX moves its media (re-INVITE with a new c=/m=).
    c.relay.set_remote(
        t1,
        c.id,
        Leg::Callee,
        0,
        Some(addr(PBX + 1, 6100)),
        None,
        false,
    );
    let f = c
        .relay
        .handle_packet(t1, c.caller_port, addr(GW, 4000), &rtp(1, 1));
    assert_eq!(
        f,
        Forward::To {
            out_port: c.callee_port,
            dst: addr(PBX + 1, 6100)
        }
    );
    let f = c
        .relay
        .handle_packet(t1, c.callee_port, addr(PBX, 6000), &rtp(1, 2));
    assert_eq!(
        f,
        Forward::Drop(DropReason::UnexpectedSource),
        "old endpoint is no longer accepted"
    );
    let f = c
        .relay
        .handle_packet(t1, c.callee_port, addr(PBX + 1, 6100), &rtp(2, 2));
    assert_eq!(
        f,
        Forward::To {
            out_port: c.caller_port,
            dst: addr(GW, 4000)
        }
    );
    // Ports did not change: no gap for the other side.
    assert_eq!(
        c.relay.local_port(c.id, Leg::Callee, 0),
        Some(c.callee_port)
    );
}

#[test]
fn reinvite_reopens_the_latching_window() {
    let mut c = call(true, false);
    let t = c.t0 + Duration::from_millis(10);
    let nat1 = addr(99, 50000);
    assert!(matches!(
        c.relay.handle_packet(t, c.caller_port, nat1, &rtp(1, 1)),
        Forward::To { .. }
    ));
    let t1 = c.t0 + Duration::from_secs(20);
    c.relay.set_remote(
        t1,
        c.id,
        Leg::Caller,
        0,
        Some(addr(GW + 1, 4200)),
        None,
        true,
    );
    let nat2 = addr(99, 50002);
    let t2 = t1 + Duration::from_millis(50);
    assert!(matches!(
        c.relay.handle_packet(t2, c.caller_port, nat2, &rtp(2, 1)),
        Forward::To { .. }
    ));
    assert_eq!(
        c.relay.handle_packet(t2, c.caller_port, nat1, &rtp(3, 1)),
        Forward::Drop(DropReason::UnexpectedSource)
    );
    let f = c
        .relay
        .handle_packet(t2, c.callee_port, addr(PBX, 6000), &rtp(1, 2));
    assert_eq!(
        f,
        Forward::To {
            out_port: c.caller_port,
            dst: nat2
        }
    );
}

#[test]
fn hold_and_resume() {
    let mut c = call(false, true);
    let t1 = c.t0 + Duration::from_secs(1);
    // RFC 2543-style hold: the PBX offers c=0.0.0.0.
    let zero = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 6000);
    c.relay
        .set_remote(t1, c.id, Leg::Callee, 0, Some(zero), None, false);
    let f = c
        .relay
        .handle_packet(t1, c.caller_port, addr(GW, 4000), &rtp(1, 1));
    assert_eq!(f, Forward::Drop(DropReason::NoDestination));
    // Resume.
    let t2 = t1 + Duration::from_secs(5);
    c.relay
        .set_remote(t2, c.id, Leg::Callee, 0, Some(addr(PBX, 6000)), None, false);
    let f = c
        .relay
        .handle_packet(t2, c.caller_port, addr(GW, 4000), &rtp(2, 1));
    assert_eq!(
        f,
        Forward::To {
            out_port: c.callee_port,
            dst: addr(PBX, 6000)
        }
    );
}

#[test]
fn silent_call_times_out_once() {
    let mut c = call(false, true);
    assert_eq!(c.relay.poll_timeout(), Some(c.t0 + Duration::from_secs(30)));
    // Media for 10 s, then silence.
    for i in 0..500u16 {
        let t = c.t0 + Duration::from_millis(20 * u64::from(i));
        c.relay
            .handle_packet(t, c.caller_port, addr(GW, 4000), &rtp(i, 1));
    }
    let last = c.t0 + Duration::from_millis(20 * 499);
    c.relay.handle_timeout(c.t0 + Duration::from_secs(30));
    assert_eq!(
        c.relay.poll_event(),
        None,
        "deadline is re-checked, not fired early"
    );
    let next = c.relay.poll_timeout().unwrap();
    assert_eq!(next, last + Duration::from_secs(30));
    c.relay.handle_timeout(next - Duration::from_millis(1));
    assert_eq!(c.relay.poll_event(), None);
    c.relay.handle_timeout(next);
    assert_eq!(c.relay.poll_event(), Some(MediaEvent::Timeout(c.id)));
    assert_eq!(c.relay.poll_event(), None);
    c.relay.handle_timeout(next + Duration::from_secs(120));
    assert_eq!(c.relay.poll_event(), None, "one event per session");
    assert_eq!(c.relay.totals().timeouts, 1);
    c.relay.close_session(&mut c.binder, c.id);
    assert!(c.binder.bound.is_empty());
}

#[test]
fn rtcp_keeps_a_held_call_alive() {
    let mut c = call(false, true);
    // One-way / held: no RTP at all, RTCP every 5 s from the PBX only.
    let mut t = c.t0;
    for _ in 0..40 {
        t += Duration::from_secs(5);
        let f = c
            .relay
            .handle_packet(t, c.callee_port + 1, addr(PBX, 6001), &RTCP_RR);
        assert!(matches!(f, Forward::To { .. }));
        if let Some(d) = c.relay.poll_timeout() {
            if d <= t {
                c.relay.handle_timeout(t);
            }
        }
        assert_eq!(c.relay.poll_event(), None);
    }
    // Then RTCP stops too.
    c.relay.handle_timeout(t + Duration::from_secs(31));
    assert_eq!(c.relay.poll_event(), Some(MediaEvent::Timeout(c.id)));
}

#[test]
fn sessions_without_teardown_never_time_out() {
    let mut c = call(false, false);
    assert_eq!(c.relay.poll_timeout(), None);
    c.relay.handle_timeout(c.t0 + Duration::from_secs(3600));
    assert_eq!(c.relay.poll_event(), None);
}

#[test]
fn injected_packets_do_not_keep_a_call_alive() {
    let mut c = call(false, true);
    let t = c.t0 + Duration::from_secs(20);
    c.relay
        .handle_packet(t, c.caller_port, addr(66, 1), &rtp(1, 1));
    c.relay.handle_timeout(c.t0 + Duration::from_secs(30));
    assert_eq!(c.relay.poll_event(), Some(MediaEvent::Timeout(c.id)));
}

#[test]
fn timeout_event_for_a_closed_session_is_not_reported() {
    let mut c = call(false, true);
    c.relay.handle_timeout(c.t0 + Duration::from_secs(31));
    c.relay.close_session(&mut c.binder, c.id);
    assert_eq!(c.relay.poll_event(), None);
}

#[test]
fn malformed_and_unknown_port() {
    let mut c = call(false, false);
    let t = c.t0;
    let f = c
        .relay
        .handle_packet(t, c.caller_port, addr(GW, 4000), &[0x80, 0, 1]);
    assert_eq!(f, Forward::Drop(DropReason::Malformed));
    let f = c
        .relay
        .handle_packet(t, c.caller_port, addr(GW, 4000), &[0x40; 20]);
    assert_eq!(f, Forward::Drop(DropReason::Malformed));
    // RTP is not accepted on the RTCP port.
    let f = c
        .relay
        .handle_packet(t, c.caller_port + 1, addr(GW, 4001), &rtp(1, 1));
    assert_eq!(f, Forward::Drop(DropReason::Malformed));
    for port in [0, FIRST - 1, LAST + 1, 65535] {
        assert_eq!(
            c.relay.handle_packet(t, port, addr(GW, 4000), &rtp(1, 1)),
            Forward::Drop(DropReason::UnknownPort)
        );
    }
    // A port of the range that no session owns.
    let free = (FIRST..=LAST)
        .step_by(2)
        .find(|p| *p != c.caller_port && *p != c.callee_port)
        .unwrap();
    assert_eq!(
        c.relay.handle_packet(t, free, addr(GW, 4000), &rtp(1, 1)),
        Forward::Drop(DropReason::UnknownPort)
    );
    assert_eq!(c.relay.totals().dropped_malformed, 3);
    assert_eq!(c.relay.totals().dropped_unknown_port, 5);
}

#[test]
fn rtcp_muxed_on_the_rtp_port_is_counted_as_rtcp() {
    let mut c = call(false, false);
    let f = c
        .relay
        .handle_packet(c.t0, c.caller_port, addr(GW, 4000), &RTCP_RR);
    assert_eq!(
        f,
        Forward::To {
            out_port: c.callee_port,
            dst: addr(PBX, 6000)
        }
    );
    let s = c.relay.session_stats(c.id).unwrap();
    assert_eq!(
        (
            s.streams[0].caller.packets,
            s.streams[0].caller.rtcp_packets
        ),
        (0, 1)
    );
}

#[test]
fn loss_and_ssrc_changes_reach_the_call_record() {
    let mut c = call(false, false);
    for (i, seq) in [1u16, 2, 4, 5, 9].into_iter().enumerate() {
        let t = c.t0 + Duration::from_millis(20 * i as u64);
        c.relay
            .handle_packet(t, c.caller_port, addr(GW, 4000), &rtp(seq, 1));
    }
    c.relay
        .handle_packet(c.t0, c.caller_port, addr(GW, 4000), &rtp(700, 2));
    let s = c.relay.close_session(&mut c.binder, c.id);
    assert_eq!(s.streams[0].caller.lost, 4);
    assert_eq!(s.streams[0].caller.ssrc_changes, 1);
    assert_eq!(s.streams[0].caller.packets, 6);
}

#[test]
fn several_streams_are_independent() {
    let mut relay = Relay::new(cfg(), 3);
    let mut binder = FakeBinder::default();
    let t0 = Instant::now();
    let id = relay.create_session(t0, &mut binder, 2, false).unwrap();
    assert_eq!(binder.bound.len(), 4);
    relay.set_remote(t0, id, Leg::Caller, 1, Some(addr(GW, 4002)), None, false);
    relay.set_remote(t0, id, Leg::Callee, 1, Some(addr(PBX, 6002)), None, false);
    let v_caller = relay.local_port(id, Leg::Caller, 1).unwrap();
    let v_callee = relay.local_port(id, Leg::Callee, 1).unwrap();
    let f = relay.handle_packet(t0, v_caller, addr(GW, 4002), &rtp(1, 1));
    assert_eq!(
        f,
        Forward::To {
            out_port: v_callee,
            dst: addr(PBX, 6002)
        }
    );
    // Stream 0 has no endpoints: its ports accept nothing.
    let a_caller = relay.local_port(id, Leg::Caller, 0).unwrap();
    assert_eq!(
        relay.handle_packet(t0, a_caller, addr(GW, 4002), &rtp(1, 1)),
        Forward::Drop(DropReason::UnexpectedSource)
    );
    // A re-INVITE adds a third m= line.
    relay.ensure_streams(&mut binder, id, 3).unwrap();
    assert_eq!(relay.stream_count(id), Some(3));
    assert_eq!(binder.bound.len(), 6);
    relay.ensure_streams(&mut binder, id, 1).unwrap();
    assert_eq!(relay.stream_count(id), Some(3), "streams are never removed");
    assert_eq!(relay.local_port(id, Leg::Caller, 1), Some(v_caller));
    assert_eq!(relay.close_session(&mut binder, id).streams.len(), 3);
    assert!(binder.bound.is_empty());
}

#[test]
fn ports_are_reused_after_release() {
    let mut relay = Relay::new(cfg(), 5);
    let mut binder = FakeBinder::default();
    let t0 = Instant::now();
    for round in 0..3 {
        let ids: Vec<_> = (0..25)
            .map(|_| relay.create_session(t0, &mut binder, 1, true).unwrap())
            .collect();
        assert_eq!(relay.free_pairs(), 0, "round {round}");
        assert_eq!(
            relay.create_session(t0, &mut binder, 1, true),
            Err(MediaError::NoPorts)
        );
        for id in ids {
            relay.close_session(&mut binder, id);
        }
        assert!(binder.bound.is_empty());
        assert_eq!(relay.free_pairs(), 50);
    }
    assert_eq!(relay.totals().sessions_active, 0);
    assert_eq!(relay.totals().pairs_in_use, 0);
}

#[test]
fn stale_session_id_is_inert() {
    let mut relay = Relay::new(cfg(), 5);
    let mut binder = FakeBinder::default();
    let t0 = Instant::now();
    let old = relay.create_session(t0, &mut binder, 1, false).unwrap();
    relay.close_session(&mut binder, old);
    let new = relay.create_session(t0, &mut binder, 1, false).unwrap();
    assert_ne!(old, new);
    assert_eq!(relay.local_port(old, Leg::Caller, 0), None);
    relay.set_remote(t0, old, Leg::Caller, 0, Some(addr(66, 1)), None, true);
    assert_eq!(
        relay.close_session(&mut binder, old),
        SessionStats::default()
    );
    assert_eq!(binder.bound.len(), 2, "the new session keeps its ports");
    assert!(relay.local_port(new, Leg::Caller, 0).is_some());
}

#[test]
fn allocation_is_random_not_sequential() {
    let take = |seed| {
        let mut relay = Relay::new(cfg(), seed);
        let mut binder = FakeBinder::default();
        let t0 = Instant::now();
        let id = relay.create_session(t0, &mut binder, 10, false).unwrap();
        (0..10)
            .flat_map(|i| [Leg::Caller, Leg::Callee].map(|l| relay.local_port(id, l, i).unwrap()))
            .collect::<Vec<_>>()
    };
    let a = take(1);
    let b = take(2);
    assert_ne!(a, b, "different seeds, different ports");
    assert_eq!(a, take(1), "same seed, same ports");
    let steps_of_two = a
        .windows(2)
        .filter(|w| w[1].wrapping_sub(w[0]) == 2)
        .count();
    assert!(steps_of_two < 4, "{a:?}");
    assert!(a.iter().all(|p| p % 2 == 0 && (FIRST..=LAST).contains(p)));
    // Over many calls every pair gets used: the choice covers the range.
    let mut relay = Relay::new(cfg(), 9);
    let mut binder = FakeBinder::default();
    let t0 = Instant::now();
    let mut seen = HashSet::new();
    for _ in 0..400 {
        let id = relay.create_session(t0, &mut binder, 1, false).unwrap();
        seen.insert(relay.local_port(id, Leg::Caller, 0).unwrap());
        relay.close_session(&mut binder, id);
    }
    assert_eq!(seen.len(), 50);
}

#[test]
fn addr_in_use_takes_another_pair() {
    let mut relay = Relay::new(cfg(), 11);
    // Another process holds 40 of the 50 pairs.
    let mut binder = FakeBinder {
        in_use_elsewhere: (FIRST..=LAST).step_by(2).take(40).collect(),
        ..FakeBinder::default()
    };
    let t0 = Instant::now();
    let id = relay.create_session(t0, &mut binder, 1, false).unwrap();
    for leg in [Leg::Caller, Leg::Callee] {
        let p = relay.local_port(id, leg, 0).unwrap();
        assert!(!binder.in_use_elsewhere.contains(&p));
    }
    assert!(relay.totals().bind_retries > 0);
    // Held pairs stay candidates: once freed elsewhere they are used.
    binder.in_use_elsewhere.clear();
    let ids: Vec<_> = (0..24)
        .map(|_| relay.create_session(t0, &mut binder, 1, false).unwrap())
        .collect();
    assert_eq!(relay.free_pairs(), 0);
    for id in ids {
        relay.close_session(&mut binder, id);
    }
}

#[test]
fn exhaustion_and_bind_failure_leak_nothing() {
    let mut relay = Relay::new(cfg(), 13);
    let mut binder = FakeBinder::default();
    let t0 = Instant::now();
    let a = relay.create_session(t0, &mut binder, 16, false).unwrap();
    let b = relay.create_session(t0, &mut binder, 8, false).unwrap();
    assert_eq!(relay.free_pairs(), 2);
    // Needs 4 pairs, 2 left: refused, and the 2 it took are back.
    assert_eq!(
        relay.create_session(t0, &mut binder, 2, true),
        Err(MediaError::NoPorts)
    );
    assert_eq!(relay.free_pairs(), 2);
    assert_eq!(binder.bound.len(), 48);
    assert_eq!(
        relay.ensure_streams(&mut binder, b, 10),
        Err(MediaError::NoPorts)
    );
    assert_eq!(relay.stream_count(b), Some(8));
    assert_eq!(relay.free_pairs(), 2);
    assert_eq!(
        relay.create_session(t0, &mut binder, 17, true),
        Err(MediaError::TooManyStreams)
    );
    relay.close_session(&mut binder, a);
    binder.fail_with = Some(io::ErrorKind::PermissionDenied);
    assert_eq!(
        relay.create_session(t0, &mut binder, 1, true),
        Err(MediaError::Bind(io::ErrorKind::PermissionDenied))
    );
    assert_eq!(relay.free_pairs(), 34);
    // Everything in use elsewhere: bounded retries, then an error.
    binder.fail_with = Some(io::ErrorKind::AddrInUse);
    assert_eq!(
        relay.create_session(t0, &mut binder, 1, true),
        Err(MediaError::Bind(io::ErrorKind::AddrInUse))
    );
    assert_eq!(relay.free_pairs(), 34);
    binder.fail_with = None;
    relay.close_session(&mut binder, b);
    assert!(binder.bound.is_empty());
    assert_eq!(relay.free_pairs(), 50);
    assert!(relay.totals().allocation_failures >= 4);
}

#[test]
fn odd_and_tiny_ranges() {
    let mut binder = FakeBinder::default();
    let t0 = Instant::now();
    let mut c = cfg();
    c.ports = PortRange {
        first: 30001,
        last: 30004,
    };
    let mut relay = Relay::new(c, 1);
    // Only 30002/30003 is a whole pair inside 30001..=30004.
    assert_eq!(relay.free_pairs(), 1);
    assert_eq!(
        relay.create_session(t0, &mut binder, 1, false),
        Err(MediaError::NoPorts)
    );
    c.ports = PortRange {
        first: 65534,
        last: 65535,
    };
    assert_eq!(Relay::new(c, 1).free_pairs(), 1);
    c.ports = PortRange {
        first: 65535,
        last: 65535,
    };
    let mut relay = Relay::new(c, 1);
    assert_eq!(relay.free_pairs(), 0);
    assert_eq!(
        relay.handle_packet(t0, 65535, addr(1, 1), &rtp(1, 1)),
        Forward::Drop(DropReason::UnknownPort)
    );
    assert!(binder.bound.is_empty());
}

#[test]
fn media_state_per_call_is_small() {
    let per_stream = std::mem::size_of::<stream::Stream>();
    let per_session = std::mem::size_of::<session::Slot>();
    // One-stream call: slot (stream inline) + two table entries + one timer entry.
    let one_stream_call = per_session + 2 * 8 + 24;
    println!("slot {per_session} B, stream {per_stream} B, one-stream call {one_stream_call} B");
    assert!(one_stream_call < 2048, "{one_stream_call}");
    // A two-stream call spills its streams to the heap.
    assert!(per_session + 2 * per_stream + 4 * 8 + 24 < 2048);
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        streams: usize,
        teardown: bool,
    },
    Grow {
        which: usize,
        streams: usize,
    },
    Remote {
        which: usize,
        leg: bool,
        stream: usize,
        port: u16,
        latching: bool,
    },
    Packet {
        which: usize,
        leg: bool,
        stream: usize,
        rtcp: bool,
        src_port: u16,
        seq: u16,
    },
    Advance {
        ms: u64,
    },
    Close {
        which: usize,
    },
    Busy {
        on: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..4, any::<bool>()).prop_map(|(streams, teardown)| Op::Create { streams, teardown }),
        (0usize..8, 0usize..5).prop_map(|(which, streams)| Op::Grow { which, streams }),
        (0usize..8, any::<bool>(), 0usize..4, 0u16..4, any::<bool>()).prop_map(
            |(which, leg, stream, port, latching)| Op::Remote {
                which,
                leg,
                stream,
                port,
                latching
            }
        ),
        (
            0usize..8,
            any::<bool>(),
            0usize..4,
            any::<bool>(),
            0u16..4,
            any::<u16>()
        )
            .prop_map(|(which, leg, stream, rtcp, src_port, seq)| Op::Packet {
                which,
                leg,
                stream,
                rtcp,
                src_port,
                seq
            }),
        (0u64..40_000).prop_map(|ms| Op::Advance { ms }),
        (0usize..8).prop_map(|which| Op::Close { which }),
        any::<bool>().prop_map(|on| Op::Busy { on }),
    ]
}

proptest! {
    /// Whatever the sequence, nothing panics, the binder and the relay agree on what is bound,
    /// and closing everything returns every pair.
    #[test]
    fn random_operations_never_leak(ops in proptest::collection::vec(op(), 1..120), seed: u64) {
        let mut relay = Relay::new(cfg(), seed);
        let mut binder = FakeBinder::default();
        let t0 = Instant::now();
        let mut now = t0;
        let mut live: Vec<SessionId> = Vec::new();
        for op in ops {
            match op {
                Op::Create { streams, teardown } => {
                    if let Ok(id) = relay.create_session(now, &mut binder, streams, teardown) {
                        live.push(id);
                    }
                }
                Op::Grow { which, streams } => {
                    if let Some(&id) = live.get(which) {
                        let before = relay.stream_count(id).unwrap();
                        let r = relay.ensure_streams(&mut binder, id, streams);
                        let after = relay.stream_count(id).unwrap();
                        prop_assert_eq!(after, if r.is_ok() { before.max(streams) } else { before });
                    }
                }
                Op::Remote { which, leg, stream, port, latching } => {
                    if let Some(&id) = live.get(which) {
                        let leg = if leg { Leg::Caller } else { Leg::Callee };
                        relay.set_remote(now, id, leg, stream, Some(addr(10, 4000 + port * 2)), None, latching);
                    }
                }
                Op::Packet { which, leg, stream, rtcp, src_port, seq } => {
                    let id = live.get(which).copied();
                    let leg = if leg { Leg::Caller } else { Leg::Callee };
                    let port = id.and_then(|id| relay.local_port(id, leg, stream)).unwrap_or(FIRST + 2 * which as u16);
                    let port = port + u16::from(rtcp);
                    let bytes: &[u8] = if rtcp { &RTCP_RR } else { &rtp(seq, 1) };
                    if let Forward::To { out_port, dst } = relay.handle_packet(now, port, addr(10, 4000 + src_port * 2 + u16::from(rtcp)), bytes) {
                        prop_assert!(binder.bound.contains(&(out_port & !1)));
                        prop_assert_eq!(out_port & 1, u16::from(rtcp));
                        prop_assert_ne!(out_port, port);
                        prop_assert_eq!(dst.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10)));
                    }
                }
                Op::Advance { ms } => {
                    now += Duration::from_millis(ms);
                    if relay.poll_timeout().is_some_and(|t| t <= now) {
                        relay.handle_timeout(now);
                    }
                    while let Some(MediaEvent::Timeout(id)) = relay.poll_event() {
                        prop_assert!(live.contains(&id));
                        relay.close_session(&mut binder, id);
                        live.retain(|x| *x != id);
                    }
                }
                Op::Close { which } => {
                    if which < live.len() {
                        let id = live.swap_remove(which);
                        relay.close_session(&mut binder, id);
                    }
                }
                Op::Busy { on } => {
                    binder.fail_with = on.then_some(io::ErrorKind::AddrInUse);
                }
            }
            prop_assert_eq!(binder.bound.len() as u64, relay.totals().pairs_in_use);
            prop_assert_eq!(relay.free_pairs() + binder.bound.len(), 50);
            prop_assert_eq!(relay.session_count(), live.len());
        }
        for id in live {
            relay.close_session(&mut binder, id);
        }
        prop_assert!(binder.bound.is_empty());
        prop_assert_eq!(relay.free_pairs(), 50);
    }
}
