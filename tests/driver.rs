//! The io_uring driver with small test cores, over real loopback sockets (each test on its own
//! 127.0.x.y address so they run in parallel).

use intertrunk::driver::{
    call_id_owner, run_workers, Core, DriverConfig, Forward, MediaBinder, PortBinder,
    RunningWorkers, Transmit, WorkerContext, WorkerStats,
};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the cores saw: (worker index, datagram).
type Seen = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

/// A command-driven core: the SIP payload is a command, replies go back to the sender.
struct TestCore {
    index: usize,
    binder: MediaBinder,
    seen: Seen,
    out: VecDeque<(SocketAddr, Option<SocketAddr>, Vec<u8>)>,
    timers: Vec<(Instant, SocketAddr, SocketAddr)>,
    routes: HashMap<u16, (u16, SocketAddr)>,
    calls: usize,
    draining: bool,
    /// The queueing delay the driver reported for the datagram about to be handled.
    queued: Option<Duration>,
}

impl TestCore {
    fn new(ctx: WorkerContext, seen: Seen) -> TestCore {
        TestCore {
            index: ctx.index,
            binder: ctx.binder,
            seen,
            out: VecDeque::new(),
            timers: Vec::new(),
            routes: HashMap::new(),
            calls: 0,
            draining: false,
            queued: None,
        }
    }

    fn reply(&mut self, src: SocketAddr, local: SocketAddr, text: String) {
        self.out.push_back((src, Some(local), text.into_bytes()));
    }
}

impl Core for TestCore {
    fn handle_sip_queue_delay(&mut self, _: Instant, delay: Duration) {
        self.queued = Some(delay);
    }

    fn handle_sip(&mut self, now: Instant, src: SocketAddr, local: SocketAddr, bytes: &[u8]) {
        let queued = self.queued.take();
        self.seen.lock().unwrap().push((self.index, bytes.to_vec()));
        let text = String::from_utf8_lossy(bytes).to_string();
        let mut words = text.split_whitespace();
        match words.next() {
            Some("ECHO") => self.out.push_back((src, Some(local), bytes.to_vec())),
            Some("TIMER") => {
                let ms: u64 = words.next().unwrap().parse().unwrap();
                self.timers
                    .push((now + Duration::from_millis(ms), src, local));
            }
            Some("BIND") => {
                let port: u16 = words.next().unwrap().parse().unwrap();
                let r = self.binder.bind_pair(port);
                self.reply(src, local, format!("BIND {port} {}", r.is_ok()));
            }
            Some("RELEASE") => {
                let port: u16 = words.next().unwrap().parse().unwrap();
                self.binder.release_pair(port);
                self.reply(src, local, format!("RELEASED {port}"));
            }
            Some("FWD") => {
                let inp: u16 = words.next().unwrap().parse().unwrap();
                let out: u16 = words.next().unwrap().parse().unwrap();
                let dst: SocketAddr = words.next().unwrap().parse().unwrap();
                self.routes.insert(inp, (out, dst));
                self.reply(src, local, format!("FWD {inp}"));
            }
            Some("CALL") => {
                if !self.draining {
                    self.calls += 1;
                }
                let answer = if self.draining { "REFUSED" } else { "OK" };
                self.reply(src, local, answer.to_string());
            }
            Some("SLEEP") => {
                let ms: u64 = words.next().unwrap().parse().unwrap();
                std::thread::sleep(Duration::from_millis(ms));
                self.reply(src, local, "SLEPT".to_string());
            }
            Some("DELAY") => {
                let us = queued.map_or("none".to_string(), |d| d.as_micros().to_string());
                self.reply(src, local, format!("DELAY {us}"));
            }
            Some("HANGUP") => {
                self.calls = self.calls.saturating_sub(1);
                self.reply(src, local, "BYE".to_string());
            }
            _ => {}
        }
    }

    fn handle_media(&mut self, _: Instant, port: u16, _: SocketAddr, _: &[u8]) -> Forward {
        match self.routes.get(&port) {
            Some(&(out_port, dst)) => Forward::To { out_port, dst },
            None => Forward::Drop,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = self.timers.drain(..).partition(|t| t.0 <= now);
        self.timers = later;
        for (_, src, local) in due {
            self.reply(src, local, "FIRED".to_string());
        }
    }

    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let (dst, local, bytes) = self.out.pop_front()?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        Some(Transmit {
            dst,
            len: bytes.len(),
            local,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().map(|t| t.0).min()
    }

    fn start_drain(&mut self, _: Instant) {
        self.draining = true;
    }

    fn is_idle(&self) -> bool {
        self.calls == 0
    }
}

fn config(ip: &str, workers: usize) -> DriverConfig {
    let ip: IpAddr = ip.parse().unwrap();
    let mut cfg = DriverConfig::new(vec![SocketAddr::new(ip, 5060)]);
    cfg.workers = workers;
    cfg.media_address = ip;
    cfg.pin = false;
    cfg.sip_buffers = 64;
    cfg.media_buffers = 256;
    cfg.max_media_sockets = 64;
    cfg.recv_buffer = 1 << 20;
    cfg
}

fn start(cfg: DriverConfig) -> (RunningWorkers, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let w = run_workers(cfg, move |ctx| TestCore::new(ctx, s.clone())).expect("driver starts");
    (w, seen)
}

fn client(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

fn ask(c: &UdpSocket, to: SocketAddr, msg: &str) -> (String, SocketAddr) {
    c.send_to(msg.as_bytes(), to).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = recv(c, &mut buf).expect("a reply");
    (String::from_utf8_lossy(&buf[..n]).to_string(), from)
}

/// recv_from, retried on EINTR.
fn recv(c: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    loop {
        match c.recv_from(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn stat(w: &RunningWorkers, f: fn(&WorkerStats) -> &std::sync::atomic::AtomicU64) -> u64 {
    w.stats().iter().map(|s| WorkerStats::get(f(s))).sum()
}

/// A free even port pair on `ip`.
fn free_pair(ip: &str) -> u16 {
    for _ in 0..100 {
        let s = UdpSocket::bind((ip, 0)).unwrap();
        let p = s.local_addr().unwrap().port() & !1;
        drop(s);
        if UdpSocket::bind((ip, p)).is_ok() && UdpSocket::bind((ip, p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free pair");
}

#[test]
fn sip_in_and_out_and_timers_fire() {
    let ip = "127.0.31.1";
    let (w, _) = start(config(ip, 1));
    let listen: SocketAddr = format!("{ip}:5060").parse().unwrap();
    let c = client(ip);
    let (r, from) = ask(&c, listen, "ECHO hello");
    assert_eq!(r, "ECHO hello");
    assert_eq!(
        from, listen,
        "a reply leaves from the socket its request came in on"
    );
    // The worker's own socket answers too, from itself.
    let own = w.worker_addresses()[0];
    assert_eq!(own.port(), 5061);
    let (r, from) = ask(&c, own, "ECHO own");
    assert_eq!((r.as_str(), from), ("ECHO own", own));

    let t0 = Instant::now();
    let (r, _) = ask(&c, listen, "TIMER 80");
    let waited = t0.elapsed();
    assert_eq!(r, "FIRED");
    assert!(waited >= Duration::from_millis(80), "{waited:?}");
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while stat(&w, |s| &s.sip_sent) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(stat(&w, |s| &s.sip_sent), 3);
    assert_eq!(stat(&w, |s| &s.sip_received), 3);
    w.stop();
    w.join().unwrap();
}

#[test]
fn media_pair_bound_forwards_both_ways_unchanged_and_release_closes() {
    let ip = "127.0.31.2";
    let (w, _) = start(config(ip, 1));
    let listen: SocketAddr = format!("{ip}:5060").parse().unwrap();
    let c = client(ip);
    let pa = free_pair(ip);
    let mut pb = free_pair(ip);
    while pb == pa {
        pb = free_pair(ip);
    }
    assert_eq!(
        ask(&c, listen, &format!("BIND {pa}")).0,
        format!("BIND {pa} true")
    );
    assert_eq!(
        ask(&c, listen, &format!("BIND {pb}")).0,
        format!("BIND {pb} true")
    );
    // Bound synchronously: a second bind of the same pair fails at once.
    assert_eq!(
        ask(&c, listen, &format!("BIND {pa}")).0,
        format!("BIND {pa} false")
    );

    let leg_a = client(ip);
    let leg_b = client(ip);
    let a_addr = leg_a.local_addr().unwrap();
    let b_addr = leg_b.local_addr().unwrap();
    ask(&c, listen, &format!("FWD {pa} {pb} {b_addr}"));
    ask(&c, listen, &format!("FWD {pb} {pa} {a_addr}"));

    let relay_a = SocketAddr::new(ip.parse().unwrap(), pa);
    let relay_b = SocketAddr::new(ip.parse().unwrap(), pb);
    let mut buf = [0u8; 2048];
    for i in 0..50u8 {
        let pkt: Vec<u8> = (0..172).map(|j| (j as u8).wrapping_mul(7) ^ i).collect();
        leg_a.send_to(&pkt, relay_a).unwrap();
        let (n, from) = recv(&leg_b, &mut buf).expect("forwarded to leg b");
        assert_eq!(&buf[..n], &pkt[..], "payload unchanged");
        assert_eq!(from, relay_b, "sent from the other leg's port");
        leg_b.send_to(&pkt[..100], relay_b).unwrap();
        let (n, from) = recv(&leg_a, &mut buf).expect("forwarded to leg a");
        assert_eq!(&buf[..n], &pkt[..100]);
        assert_eq!(from, relay_a);
    }
    // RTCP port (+1) is bound and served too (no route: dropped, counted).
    leg_a
        .send_to(b"rtcp", SocketAddr::new(ip.parse().unwrap(), pa + 1))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while stat(&w, |s| &s.media_dropped) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(stat(&w, |s| &s.media_forwarded), 100);
    assert_eq!(stat(&w, |s| &s.media_dropped), 1);
    assert_eq!(stat(&w, |s| &s.media_sockets), 4);

    ask(&c, listen, &format!("RELEASE {pa}"));
    let deadline = Instant::now() + Duration::from_secs(3);
    while stat(&w, |s| &s.media_sockets) != 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(stat(&w, |s| &s.media_sockets), 2);
    // Both ports of the released pair are free again.
    UdpSocket::bind((ip, pa)).expect("RTP port closed");
    UdpSocket::bind((ip, pa + 1)).expect("RTCP port closed");
    // And the pair can be bound again by the core.
    assert_eq!(
        ask(&c, listen, &format!("BIND {pa}")).0,
        format!("BIND {pa} true")
    );
    w.stop();
    w.join().unwrap();
}

#[test]
fn two_workers_each_datagram_handled_once_by_its_owner() {
    let ip = "127.0.31.3";
    let (w, seen) = start(config(ip, 2));
    let listen: SocketAddr = format!("{ip}:5060").parse().unwrap();
    // Several source sockets so SO_REUSEPORT spreads them over both workers.
    let clients: Vec<UdpSocket> = (0..8).map(|_| client(ip)).collect();
    let n = 400;
    let mut sent = Vec::new();
    for i in 0..n {
        let form = if i % 2 == 0 { "Call-ID" } else { "i" };
        let msg = format!("OPTIONS sip:x SIP/2.0\r\n{form}: call-{i}@test\r\n\r\n");
        clients[i % clients.len()]
            .send_to(msg.as_bytes(), listen)
            .unwrap();
        sent.push(msg.into_bytes());
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), n, "each datagram handled exactly once");
    let mut per_owner = [0usize; 2];
    for (index, bytes) in &seen {
        assert_eq!(
            call_id_owner(bytes, 2),
            Some(*index),
            "handled by its owner"
        );
        per_owner[*index] += 1;
    }
    let mut got: Vec<_> = seen.into_iter().map(|(_, b)| b).collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
    assert!(per_owner[0] > 0 && per_owner[1] > 0, "{per_owner:?}");
    assert_eq!(
        stat(&w, |s| &s.handoff_out),
        stat(&w, |s| &s.handoff_in),
        "every handed-off datagram arrived"
    );
    assert!(
        stat(&w, |s| &s.handoff_out) > 0,
        "some datagrams crossed workers"
    );
    w.stop();
    w.join().unwrap();
}

#[test]
fn empty_buffer_ring_is_refilled_and_receive_rearmed() {
    let ip = "127.0.31.4";
    let mut cfg = config(ip, 1);
    cfg.media_buffers = 4;
    cfg.media_min_wait = Duration::from_millis(2);
    // The whole burst must fit in the socket's queue while the ring is dry.
    cfg.media_recv_buffer = 1 << 20;
    let (w, _) = start(cfg);
    let listen: SocketAddr = format!("{ip}:5060").parse().unwrap();
    let c = client(ip);
    let pa = free_pair(ip);
    let sink = client(ip);
    sink.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    ask(&c, listen, &format!("BIND {pa}"));
    ask(
        &c,
        listen,
        &format!("FWD {pa} {pa} {}", sink.local_addr().unwrap()),
    );
    let relay = SocketAddr::new(ip.parse().unwrap(), pa);
    let src = client(ip);
    let burst = 120;
    for i in 0..burst {
        src.send_to(&[i as u8; 172], relay).unwrap();
    }
    let mut buf = [0u8; 2048];
    let mut got = 0;
    while got < burst {
        match recv(&sink, &mut buf) {
            Ok((172, _)) => got += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(
        got, burst,
        "the burst waited in the socket and all came through"
    );
    assert!(
        stat(&w, |s| &s.enobufs_rearms) > 0,
        "the 4-buffer ring ran dry"
    );
    // Still serving afterwards.
    src.send_to(b"after", relay).unwrap();
    let (n, _) = recv(&sink, &mut buf).expect("forwarding resumed");
    assert_eq!(&buf[..n], b"after");
    w.stop();
    w.join().unwrap();
}

#[test]
fn drain_waits_for_calls_then_exits() {
    let ip = "127.0.31.5";
    let (w, _) = start(config(ip, 1));
    let listen: SocketAddr = format!("{ip}:5060").parse().unwrap();
    let c = client(ip);
    assert_eq!(ask(&c, listen, "CALL").0, "OK");
    w.drain();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!w.is_finished(), "a call in progress keeps the worker up");
    assert_eq!(ask(&c, listen, "CALL").0, "REFUSED");
    assert_eq!(ask(&c, listen, "HANGUP").0, "BYE");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !w.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(w.is_finished(), "idle after the last call: exits");
    w.join().unwrap();
}

#[test]
fn drain_grace_bounds_the_wait() {
    let ip = "127.0.31.6";
    let mut cfg = config(ip, 2);
    cfg.drain_grace = Duration::from_millis(300);
    let (w, _) = start(cfg);
    let listen: SocketAddr = format!("{ip}:5061").parse().unwrap();
    let c = client(ip);
    assert_eq!(ask(&c, listen, "CALL").0, "OK");
    let t0 = Instant::now();
    w.drain();
    while !w.is_finished() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = t0.elapsed();
    assert!(w.is_finished());
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    w.join().unwrap();
}

#[test]
fn address_in_use_fails_the_start_with_the_address() {
    let ip = "127.0.31.7";
    let _hold = UdpSocket::bind((ip, 5061)).unwrap();
    let err = run_workers(config(ip, 1), |ctx| TestCore::new(ctx, Arc::default())).unwrap_err();
    assert!(err.to_string().contains("5061"), "{err}");
}

/// Every provided buffer comes back: a burst on many sockets through a tiny submission queue
/// (the queue-full path runs on almost every push) and a tiny completion queue (overflow).
#[test]
fn burst_on_many_sockets_through_tiny_queues_returns_every_buffer() {
    let ip = "127.0.31.8";
    let mut cfg = config(ip, 1);
    cfg.sq_entries = 4;
    cfg.cq_entries = 8;
    cfg.media_buffers = 64;
    cfg.max_media_sockets = 128;
    cfg.media_min_wait = Duration::from_millis(2);
    let (w, _) = start(cfg);
    let listen: SocketAddr = format!("{ip}:5060").parse().unwrap();
    let c = client(ip);
    // A sink with room for a whole round, so nothing is lost after the driver.
    let sink = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    sink.set_recv_buffer_size(4 << 20).unwrap();
    sink.bind(&SocketAddr::new(ip.parse().unwrap(), 0).into())
        .unwrap();
    let sink: UdpSocket = sink.into();
    sink.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let mut ports = Vec::new();
    while ports.len() < 24 {
        let p = free_pair(ip);
        if ask(&c, listen, &format!("BIND {p}")).0 == format!("BIND {p} true") {
            ports.push(p);
        }
    }
    for &p in &ports {
        ask(&c, listen, &format!("FWD {p} {p} {sink_addr}"));
    }
    let src = client(ip);
    let rounds = 4;
    let per_socket = 12;
    let mut sent = 0u64;
    let mut got = 0u64;
    let mut buf = [0u8; 2048];
    for round in 0..rounds {
        for i in 0..per_socket {
            for &p in &ports {
                src.send_to(&[(round * per_socket + i) as u8; 172], (ip, p))
                    .unwrap();
                sent += 1;
            }
        }
        while got < sent {
            match recv(&sink, &mut buf) {
                Ok((172, _)) => got += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let settled = |w: &RunningWorkers| {
        stat(w, |s| &s.media_received)
            == stat(w, |s| &s.media_forwarded)
                + stat(w, |s| &s.media_dropped)
                + stat(w, |s| &s.media_send_errors)
            && stat(w, |s| &s.media_buffers_out) == 0
    };
    while !settled(&w) && Instant::now() < deadline {
        // Keeps the loop turning so the counters are refreshed.
        let _ = ask(&c, listen, "ECHO x");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        stat(&w, |s| &s.cq_overflows),
        0,
        "nothing dropped by the kernel"
    );
    assert_eq!(
        stat(&w, |s| &s.media_received),
        sent,
        "every datagram received"
    );
    assert_eq!(
        stat(&w, |s| &s.media_forwarded),
        sent,
        "every send completed"
    );
    assert_eq!(got, sent, "every datagram reached the sink");
    assert_eq!(
        stat(&w, |s| &s.media_buffers_out),
        0,
        "every buffer back with the kernel"
    );
    w.stop();
    w.join().unwrap();
}

/// The min-wait batches wake-ups but bounds them: a lone packet is forwarded within about one
/// min-wait even though the wait asks for a batch and the core's next timer is seconds away,
/// and an idle worker sleeps instead of waking every min-wait.
#[test]
fn min_wait_bounds_the_added_latency_and_idle_does_not_spin() {
    let ip = "127.0.31.9";
    let mut cfg = config(ip, 1);
    cfg.wait_batch = 64;
    cfg.media_min_wait = Duration::from_millis(40);
    cfg.sip_min_wait = Duration::from_millis(2);
    let (w, _) = start(cfg);
    let listen: SocketAddr = format!("{ip}:5060").parse().unwrap();
    let c = client(ip);
    let pa = free_pair(ip);
    let sink = client(ip);
    ask(&c, listen, &format!("BIND {pa}"));
    ask(
        &c,
        listen,
        &format!("FWD {pa} {pa} {}", sink.local_addr().unwrap()),
    );
    // A timer far away: the wait's overall timeout is long.
    c.send_to(b"TIMER 20000", listen).unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let idle0 = stat(&w, |s| &s.turns);
    std::thread::sleep(Duration::from_millis(300));
    let idle_turns = stat(&w, |s| &s.turns) - idle0;
    assert!(
        idle_turns <= 3,
        "an idle worker woke {idle_turns} times in 300 ms"
    );

    let src = client(ip);
    let mut buf = [0u8; 2048];
    let mut worst = Duration::ZERO;
    for i in 0..5u8 {
        // Let the loop settle into a media wait first.
        std::thread::sleep(Duration::from_millis(60));
        let t0 = Instant::now();
        src.send_to(&[i; 172], (ip, pa)).unwrap();
        let (n, _) = recv(&sink, &mut buf).expect("forwarded");
        assert_eq!(n, 172);
        worst = worst.max(t0.elapsed());
    }
    assert!(
        worst < Duration::from_millis(40 + 30),
        "a ready completion waited {worst:?} (min-wait 40 ms)"
    );
    w.stop();
    w.join().unwrap();
}

/// The microseconds in a `DELAY <us>` reply (the queueing delay the driver reported).
fn delay_us(reply: &str) -> u128 {
    let us = reply.strip_prefix("DELAY ").expect("a DELAY reply");
    us.parse()
        .unwrap_or_else(|_| panic!("no queueing delay reported: {reply}"))
}

#[test]
fn sip_queueing_delay_is_reported_with_each_datagram_handed_over_or_not() {
    let ip = "127.0.31.10";
    let (w, _) = start(config(ip, 2));
    let listen: SocketAddr = format!("{ip}:5060").parse().unwrap();
    let c = client(ip);
    // The worker this client's flow lands on sleeps in its core: the next datagram waits in
    // the socket queue meanwhile, and its reported delay says so.
    c.send_to(b"SLEEP 80", listen).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let (queued, _) = ask(&c, listen, "DELAY");
    let mut buf = [0u8; 64];
    let (n, _) = recv(&c, &mut buf).expect("the SLEPT reply");
    let replies = [queued, String::from_utf8_lossy(&buf[..n]).to_string()];
    let delay = replies
        .iter()
        .find(|r| r.starts_with("DELAY"))
        .expect("DELAY reply");
    assert!(delay_us(delay) >= 50_000, "{replies:?}");
    // Idle: a short wait.
    let (idle, _) = ask(&c, listen, "DELAY");
    assert!(delay_us(&idle) < delay_us(delay), "{idle} after {delay}");
    // Handed to either worker by Call-ID: the receive time travels with the datagram.
    let mut owners = [false; 2];
    for i in 0.. {
        let msg = format!("DELAY\r\nCall-ID: delay-{i}@test\r\n\r\n");
        let Some(owner) = call_id_owner(msg.as_bytes(), 2) else {
            continue;
        };
        if owners[owner] {
            continue;
        }
        owners[owner] = true;
        let (reply, _) = ask(&c, listen, &msg);
        assert!(delay_us(&reply) < 1_000_000, "{reply}");
        if owners == [true, true] {
            break;
        }
    }
    assert!(
        stat(&w, |s| &s.handoff_in) > 0,
        "one of them crossed workers"
    );
    w.stop();
    w.join().unwrap();
}
