//! gso-blast: a paced RTP sender that reaches saturation rates on a small box.
//!
//! A sendmmsg blaster spends about as much CPU per packet as the relay it loads (each packet
//! crosses the whole stack on the sender's CPU), so on two vCPUs it runs out before the relay
//! does. This one sends each stream's packets in bursts of `-g` RTP packets through one UDP
//! GSO send (UDP_SEGMENT): one trip through the stack per burst; the kernel cuts the burst
//! into separate datagrams before they reach the receiving socket, so the relay sees ordinary
//! 172-byte datagrams, `-g` at a time per stream.
//!
//! Same command line and output as the peer harness's `udpblast send`, plus `-g`:
//!
//!   gso-blast send -b IP:PORT -d IP -P p1,p2,..|@file -r PPS -t SECS [-s 172] [-g 8]
//!
//! prints `sent=N secs=S rate=R errors=E` on stdout. Loopback only: the caller chooses the
//! addresses. Every stream gets its own SSRC and consecutive sequence numbers/timestamps.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// The kernel's cap on segments in one GSO send.
const MAX_SEGMENTS: usize = 64;

struct Args {
    bind: SocketAddr,
    dst: IpAddr,
    ports: Vec<u16>,
    rate: u64,
    secs: f64,
    size: usize,
    segments: usize,
}

fn usage() -> &'static str {
    "gso-blast send -b IP:PORT -d IP -P p1,p2,..|@file -r PPS -t SECS [-s 172] [-g 8]"
}

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    match it.next().as_deref() {
        Some("send") => {}
        Some("-h" | "--help") => {
            println!("{}", usage());
            std::process::exit(0);
        }
        _ => bail!("usage: {}", usage()),
    }
    let (mut bind, mut dst, mut ports, mut rate, mut secs) = (None, None, None, None, None);
    let (mut size, mut segments) = (172usize, 8usize);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| anyhow!("{k} needs a value"))?;
        match k.as_str() {
            "-b" => bind = Some(v.parse().with_context(|| format!("-b {v}"))?),
            "-d" => dst = Some(v.parse().with_context(|| format!("-d {v}"))?),
            "-P" => ports = Some(load_ports(&v)?),
            "-r" => rate = Some(v.parse()?),
            "-t" => secs = Some(v.parse()?),
            "-s" => size = v.parse()?,
            "-g" => segments = v.parse()?,
            // udpblast's sendmmsg batch: meaningless here, accepted for drop-in use.
            "-B" => {}
            _ => bail!("unknown argument {k}; usage: {}", usage()),
        }
    }
    let a = Args {
        bind: bind.ok_or_else(|| anyhow!("-b is required"))?,
        dst: dst.ok_or_else(|| anyhow!("-d is required"))?,
        ports: ports.ok_or_else(|| anyhow!("-P is required"))?,
        rate: rate.ok_or_else(|| anyhow!("-r is required"))?,
        secs: secs.ok_or_else(|| anyhow!("-t is required"))?,
        size,
        segments,
    };
    if !a.bind.ip().is_loopback() || !a.dst.is_loopback() {
        bail!("loopback addresses only");
    }
    if a.ports.is_empty() || a.rate == 0 || !(0.1..=60.0).contains(&a.secs) {
        bail!("need ports, a rate and 0.1..=60 seconds");
    }
    if !(12..=1400).contains(&a.size) || !(1..=MAX_SEGMENTS).contains(&a.segments) {
        bail!("-s 12..=1400, -g 1..={MAX_SEGMENTS}");
    }
    Ok(a)
}

fn load_ports(spec: &str) -> Result<Vec<u16>> {
    let text = match spec.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| file.to_string())?,
        None => spec.replace(',', "\n"),
    };
    text.split_whitespace()
        .map(|p| p.parse().with_context(|| format!("port {p}")))
        .collect()
}

/// One stream: where it goes and where its RTP numbering stands.
struct Stream {
    dst: SocketAddr,
    ssrc: u32,
    seq: u16,
    ts: u32,
}

impl Stream {
    /// Writes the next `n` RTP packets of this stream back to back into `buf`.
    fn fill(&mut self, buf: &mut [u8], size: usize, n: usize) {
        for pkt in buf.chunks_mut(size).take(n) {
            pkt[0] = 0x80;
            pkt[1] = 8; // PCMA
            pkt[2..4].copy_from_slice(&self.seq.to_be_bytes());
            pkt[4..8].copy_from_slice(&self.ts.to_be_bytes());
            pkt[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(160);
        }
    }
}

fn set_gso(sock: &UdpSocket, size: usize) -> Result<()> {
    let seg = libc::c_int::try_from(size)?;
    // SAFETY: a valid socket fd, and a c_int option value that lives across the call.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&seg as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        bail!("UDP_SEGMENT: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let (sent, errors, secs) = blast(&a)?;
    println!(
        "sent={sent} secs={secs:.3} rate={:.0} errors={errors}",
        sent as f64 / secs
    );
    Ok(())
}

/// Sends for `a.secs` at `a.rate`; returns packets sent, failed sends and the seconds taken.
fn blast(a: &Args) -> Result<(u64, u64, f64)> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let _ = sock.set_send_buffer_size(4 << 20);
    sock.bind(&a.bind.into())?;
    let sock: UdpSocket = sock.into();
    if a.segments > 1 {
        set_gso(&sock, a.size)?;
    }
    let mut streams: Vec<Stream> = a
        .ports
        .iter()
        .enumerate()
        .map(|(i, &p)| Stream {
            dst: SocketAddr::new(a.dst, p),
            ssrc: 0x6000_0000 | i as u32,
            seq: (i as u16).wrapping_mul(7919),
            ts: 0,
        })
        .collect();
    let mut buf = vec![0u8; a.size * a.segments];
    let burst = a.segments as u64;
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut next = 0usize;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.secs);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = (now - start).as_secs_f64() * a.rate as f64;
        if (sent + burst) as f64 > due {
            // Ahead of schedule: wait for about one burst's worth of time.
            let ahead = ((sent + burst) as f64 - due) / a.rate as f64;
            std::thread::sleep(Duration::from_secs_f64(ahead.min(0.001)));
            continue;
        }
        let s = &mut streams[next];
        next = (next + 1) % a.ports.len();
        s.fill(&mut buf, a.size, a.segments);
        match sock.send_to(&buf, s.dst) {
            Ok(_) => sent += burst,
            Err(_) => errors += 1,
        }
    }
    Ok((sent, errors, start.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_arrive_as_separate_rtp_packets_numbered_per_stream() {
        // Room for every packet of the run: the test reads only after the sender is done.
        let rx = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        rx.set_recv_buffer_size(2 << 20).unwrap();
        rx.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let rx: UdpSocket = rx.into();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let port = rx.local_addr().unwrap().port();
        let a = Args {
            bind: "127.0.0.1:0".parse().unwrap(),
            dst: "127.0.0.1".parse().unwrap(),
            ports: vec![port],
            rate: 2_000,
            secs: 0.05,
            size: 172,
            segments: 4,
        };
        let (sent, errors, _) = blast(&a).unwrap();
        assert_eq!(errors, 0);
        assert!(sent >= 80 && sent % 4 == 0, "{sent}");
        let mut buf = [0u8; 2048];
        let mut last: Option<u16> = None;
        for _ in 0..sent {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(n, 172, "one datagram per RTP packet");
            assert_eq!(buf[0], 0x80);
            let seq = u16::from_be_bytes([buf[2], buf[3]]);
            if let Some(l) = last {
                assert_eq!(seq, l.wrapping_add(1));
            }
            last = Some(seq);
        }
    }
}
