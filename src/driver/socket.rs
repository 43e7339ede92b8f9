//! UDP sockets: shared SIP listeners (SO_REUSEPORT, one per worker), the per-worker SIP socket,
//! and media pairs.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;

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

/// One worker's socket on a shared SIP address: the kernel spreads flows over the workers.
pub(crate) fn sip_shared(addr: SocketAddr, recv_buffer: usize) -> io::Result<Socket> {
    udp(addr, true, recv_buffer)
}

/// The worker's own SIP socket (its Via sent-by and Record-Route point here).
pub(crate) fn sip_own(addr: SocketAddr, recv_buffer: usize) -> io::Result<Socket> {
    udp(addr, false, recv_buffer)
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
