//! UDP sockets: shared SIP listeners (SO_REUSEPORT, one per worker), the per-worker SIP socket,
//! and media pairs.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

fn udp(addr: SocketAddr, reuse_port: bool, recv_buffer: usize) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.cloexec(),
        Some(Protocol::UDP),
    )?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if recv_buffer > 0 {
        // Rides out VM stalls; the kernel silently caps it at rmem_max.
        s.set_recv_buffer_size(recv_buffer)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(addr))?;
    Ok(s)
}

/// Has the kernel stamp every datagram with its receive time (`SCM_TIMESTAMPNS`): how long a
/// SIP request waited in the socket queue is the relay's overload signal.
fn stamp_receive_time(s: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live c_int and its size, on a socket we own.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sip(addr: SocketAddr, reuse_port: bool, recv_buffer: usize) -> io::Result<Socket> {
    let s = udp(addr, reuse_port, recv_buffer)?;
    stamp_receive_time(&s)?;
    Ok(s)
}

/// One worker's socket on a shared SIP address: the kernel spreads flows over the workers.
pub(crate) fn sip_shared(addr: SocketAddr, recv_buffer: usize) -> io::Result<Socket> {
    sip(addr, true, recv_buffer)
}

/// The worker's own SIP socket (its Via sent-by and Record-Route point here).
pub(crate) fn sip_own(addr: SocketAddr, recv_buffer: usize) -> io::Result<Socket> {
    sip(addr, false, recv_buffer)
}

/// The kernel receive time (CLOCK_REALTIME, nanoseconds since the epoch) in a datagram's
/// control data, from its `SCM_TIMESTAMPNS` message.
pub(crate) fn receive_time_ns(mut control: &[u8]) -> Option<u64> {
    const HDR: usize = std::mem::size_of::<libc::cmsghdr>();
    const LEN: usize = std::mem::size_of::<usize>();
    const ALIGN: usize = std::mem::size_of::<usize>();
    while control.len() >= HDR {
        // cmsghdr: cmsg_len (size_t), cmsg_level (int), cmsg_type (int), then the data.
        let len = usize::from_ne_bytes(control.get(..LEN)?.try_into().ok()?);
        let level = i32::from_ne_bytes(control.get(LEN..LEN + 4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(control.get(LEN + 4..LEN + 8)?.try_into().ok()?);
        if len < HDR {
            return None;
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
            let sec = i64::from_ne_bytes(control.get(HDR..HDR + 8)?.try_into().ok()?);
            let nsec = i64::from_ne_bytes(control.get(HDR + 8..HDR + 16)?.try_into().ok()?);
            let sec = u64::try_from(sec).ok()?;
            let nsec = u64::try_from(nsec).ok().filter(|&n| n < 1_000_000_000)?;
            return sec.checked_mul(1_000_000_000)?.checked_add(nsec);
        }
        control = control.get(len.div_ceil(ALIGN) * ALIGN..)?;
    }
    None
}

/// RTP on `addr`'s (even) port and RTCP on the next one; both or neither.
pub(crate) fn media_pair(addr: SocketAddr, recv_buffer: usize) -> io::Result<(Socket, Socket)> {
    if addr.port() % 2 != 0 || addr.port() == u16::MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "RTP port must be even",
        ));
    }
    let rtp = udp(addr, false, recv_buffer)?;
    let mut rtcp_addr = addr;
    rtcp_addr.set_port(addr.port() + 1);
    let rtcp = udp(rtcp_addr, false, recv_buffer)?;
    Ok((rtp, rtcp))
}

/// The source address of a multishot `RecvMsg` buffer's name field.
pub(crate) fn parse_sockaddr(name: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*name.first()?, *name.get(1)?]));
    let port = u16::from_be_bytes([*name.get(2)?, *name.get(3)?]);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::from((ip, port)))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
            let flow = u32::from_ne_bytes(name.get(4..8)?.try_into().ok()?);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip.into(),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_pair_binds_both_and_reports_in_use() {
        let a: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // Find a free even port by binding a probe pair.
        let probe = std::net::UdpSocket::bind(a).unwrap();
        let mut port = probe.local_addr().unwrap().port();
        drop(probe);
        port &= !1;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let (rtp, rtcp) = media_pair(addr, 1 << 20).unwrap();
        assert_eq!(rtp.local_addr().unwrap().as_socket().unwrap().port(), port);
        assert_eq!(
            rtcp.local_addr().unwrap().as_socket().unwrap().port(),
            port + 1
        );
        let err = media_pair(addr, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let odd = SocketAddr::from(([127, 0, 0, 1], port + 1));
        assert_eq!(
            media_pair(odd, 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn finds_the_receive_time_among_control_messages() {
        fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
            let hdr = std::mem::size_of::<libc::cmsghdr>();
            let mut v = (hdr + data.len()).to_ne_bytes().to_vec();
            v.extend_from_slice(&level.to_ne_bytes());
            v.extend_from_slice(&kind.to_ne_bytes());
            v.extend_from_slice(data);
            v.resize(v.len().div_ceil(8) * 8, 0);
            v
        }
        let ts = |sec: i64, nsec: i64| [sec.to_ne_bytes(), nsec.to_ne_bytes()].concat();
        let stamp = cmsg(
            libc::SOL_SOCKET,
            libc::SCM_TIMESTAMPNS,
            &ts(1_700_000_000, 250),
        );
        assert_eq!(
            receive_time_ns(&stamp),
            Some(1_700_000_000 * 1_000_000_000 + 250)
        );
        // After another message with an odd length (padded to the alignment).
        let mut two = cmsg(libc::SOL_IP, libc::IP_TTL, &[64, 0, 0]);
        two.extend_from_slice(&stamp);
        assert_eq!(receive_time_ns(&two), receive_time_ns(&stamp));
        // Nothing, truncated, a zero length, out-of-range nanoseconds: no time, no panic.
        assert_eq!(receive_time_ns(&[]), None);
        assert_eq!(receive_time_ns(&stamp[..stamp.len() - 4]), None);
        assert_eq!(receive_time_ns(&[0u8; 32]), None);
        let bad = cmsg(
            libc::SOL_SOCKET,
            libc::SCM_TIMESTAMPNS,
            &ts(1, 1_000_000_000),
        );
        assert_eq!(receive_time_ns(&bad), None);
        assert_eq!(receive_time_ns(&cmsg(1, 2, &[0; 16])), None);
    }

    #[test]
    fn sip_sockets_report_the_receive_time() {
        let s = sip_own("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        let mut got: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a live c_int with its size.
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&mut got as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0);
        assert_eq!(got, 1);
    }

    #[test]
    fn parses_v4_and_v6_names() {
        let sa = SockAddr::from(SocketAddr::from(([127, 0, 0, 9], 5062)));
        // SAFETY (test): the storage is at least sa.len() bytes.
        let raw =
            unsafe { std::slice::from_raw_parts(sa.as_ptr().cast::<u8>(), sa.len() as usize) };
        assert_eq!(parse_sockaddr(raw), Some("127.0.0.9:5062".parse().unwrap()));
        let v6: SocketAddr = "[::1]:7000".parse().unwrap();
        let sa = SockAddr::from(v6);
        // SAFETY (test): as above.
        let raw =
            unsafe { std::slice::from_raw_parts(sa.as_ptr().cast::<u8>(), sa.len() as usize) };
        assert_eq!(parse_sockaddr(raw), Some(v6));
        assert_eq!(parse_sockaddr(&[]), None);
        assert_eq!(parse_sockaddr(&[2, 0, 1]), None);
    }
}
