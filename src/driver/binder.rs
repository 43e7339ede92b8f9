//! The driver's [`PortBinder`]: binds media pairs at once (so `EADDRINUSE` reaches the media
//! core, which takes another pair) and queues them for the loop, which registers them in its
//! ring and arms their receives right after the core call returns.

use super::{socket, PortBinder};
use socket2::Socket;
use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

pub(crate) enum BinderAction {
    Bound {
        rtp_port: u16,
        rtp: Socket,
        rtcp: Socket,
    },
    Released {
        rtp_port: u16,
    },
}

pub(crate) struct BinderState {
    media_address: IpAddr,
    recv_buffer: usize,
    /// Most media sockets this worker may hold (its share of the open-file limit and of its
    /// fixed-file table).
    max_sockets: usize,
    bound: HashSet<u16>,
    pending: VecDeque<BinderAction>,
}

/// Binds this worker's media pairs. Lives on the worker's thread (not `Send`); clones share
/// state. Hand it to the media core.
#[derive(Clone)]
pub struct MediaBinder(Rc<RefCell<BinderState>>);

impl fmt::Debug for MediaBinder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.borrow();
        f.debug_struct("MediaBinder")
            .field("media_address", &s.media_address)
            .field("pairs", &s.bound.len())
            .finish()
    }
}

impl MediaBinder {
    pub(crate) fn new(media_address: IpAddr, recv_buffer: usize, max_sockets: usize) -> Self {
        MediaBinder(Rc::new(RefCell::new(BinderState {
            media_address,
            recv_buffer,
            max_sockets,
            bound: HashSet::new(),
            pending: VecDeque::with_capacity(64),
        })))
    }

    /// Pairs currently bound.
    pub fn bound_pairs(&self) -> usize {
        self.0.borrow().bound.len()
    }

    pub(crate) fn next_action(&self) -> Option<BinderAction> {
        self.0.borrow_mut().pending.pop_front()
    }
}

impl PortBinder for MediaBinder {
    fn bind_pair(&mut self, rtp_port: u16) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        if s.bound.contains(&rtp_port) {
            return Err(io::Error::from(io::ErrorKind::AddrInUse));
        }
        if (s.bound.len() + 1) * 2 > s.max_sockets {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        let (rtp, rtcp) =
            socket::media_pair(SocketAddr::new(s.media_address, rtp_port), s.recv_buffer)?;
        s.bound.insert(rtp_port);
        s.pending.push_back(BinderAction::Bound {
            rtp_port,
            rtp,
            rtcp,
        });
        Ok(())
    }

    fn release_pair(&mut self, rtp_port: u16) {
        let mut s = self.0.borrow_mut();
        if s.bound.remove(&rtp_port) {
            s.pending.push_back(BinderAction::Released { rtp_port });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_queues_sockets_and_release_queues_close() {
        let mut b = MediaBinder::new("127.0.0.1".parse().unwrap(), 0, 4);
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        b.bind_pair(port).unwrap();
        assert_eq!(
            b.bind_pair(port).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        assert_eq!(b.bound_pairs(), 1);
        assert!(
            matches!(b.next_action(), Some(BinderAction::Bound { rtp_port, .. }) if rtp_port == port)
        );
        b.release_pair(port);
        b.release_pair(port);
        assert!(
            matches!(b.next_action(), Some(BinderAction::Released { rtp_port }) if rtp_port == port)
        );
        assert!(b.next_action().is_none());
        assert_eq!(b.bound_pairs(), 0);
    }

    #[test]
    fn socket_cap_is_enforced() {
        let mut b = MediaBinder::new("127.0.0.1".parse().unwrap(), 0, 2);
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        b.bind_pair(port).unwrap();
        let err = b.bind_pair(port.wrapping_add(2)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE));
    }

    #[test]
    fn media_sockets_get_the_small_receive_buffer() {
        let cfg = crate::driver::DriverConfig::new(Vec::new());
        let mut b = MediaBinder::new("127.0.0.1".parse().unwrap(), cfg.media_recv_buffer, 4);
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        b.bind_pair(port).unwrap();
        let Some(BinderAction::Bound { rtp, rtcp, .. }) = b.next_action() else {
            panic!("no bound pair queued");
        };
        for s in [rtp, rtcp] {
            // Linux doubles the requested size for its bookkeeping.
            let got = s.recv_buffer_size().unwrap();
            assert!(
                (cfg.media_recv_buffer..=2 * cfg.media_recv_buffer).contains(&got),
                "{got}"
            );
            assert!(
                got < cfg.recv_buffer,
                "media queues stay far below the SIP ones"
            );
        }
    }
}
