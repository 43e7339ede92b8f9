//! SDP rewrite: never panics, accepts exactly what the view accepts, and its output parses with
//! the relay's address and ports and no ICE lines.
#![no_main]
use intertrunk::wire::sdp::{rewrite, Error, Sdp, SdpRewrite};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let address = if sel & 1 == 0 {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    };
    let parsed = Sdp::parse(body);
    let count = parsed
        .as_ref()
        .map_or(usize::from(sel >> 4), |s| s.media_count());
    let ports: Vec<u16> = (0..count).map(|i| 30000 + 2 * i as u16).collect();
    let rw = SdpRewrite {
        address,
        ports: &ports,
    };
    let mut out = vec![0u8; body.len() * 2 + 64 * (count + 1) + 64];
    let result = rewrite(body, &rw, &mut out);
    match (&parsed, result) {
        (Ok(before), Ok(n)) => {
            let after = Sdp::parse(&out[..n]).expect("rewrite output must parse");
            assert_eq!(after.media_count(), before.media_count());
            for ((a, b), p) in after.media().zip(before.media()).zip(&ports) {
                assert_eq!(a.port, if b.port == 0 { 0 } else { *p });
                if b.connection.is_some() {
                    assert_eq!(a.connection, Some(address));
                }
            }
            for line in out[..n].split(|&b| b == b'\n') {
                assert!(!line.starts_with(b"a=candidate:") && !line.starts_with(b"a=ice-"));
            }
            // A buffer one byte short fails cleanly.
            if n > 0 {
                assert_eq!(
                    rewrite(body, &rw, &mut out[..n - 1]),
                    Err(Error::BufferTooSmall)
                );
            }
        }
        (Ok(_), Err(e)) => panic!("view accepted, rewrite refused: {e:?}"),
        (Err(_), Ok(_)) => panic!("view refused, rewrite accepted"),
        (Err(_), Err(_)) => {}
    }
});
