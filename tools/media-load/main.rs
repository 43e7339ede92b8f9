//! media-load: RTP load through the real `intertrunk` binary, measured from outside.
//!
//! It starts `intertrunk run` with two loopback trunks (a gateway placing calls and a PBX
//! answering them), sets up N calls over SIP whose SDP offers point at the blaster's source
//! address and whose answers point at a counting sink, so every call holds relay ports on
//! both legs. Then, for each rate, it runs the paced `udpblast` sender (one RTP stream per
//! call, caller -> relay -> callee direction, 172-byte packets) and the `udpblast` sink under
//! an exclusive lock on the bench lock file, and reports per trial: loss, relay CPU per
//! relayed packet (se.sum_exec_runtime over /proc/PID/task/*/sched), relay counters from
//! /metrics, and the added latency of a timestamped probe stream carried by one more call.
//! At the end it hangs every call up and checks that the relay released its media sessions.
//!
//! One JSON object per line on stdout; progress on stderr.
//!
//!   media-load --relay target/release/intertrunk --udpblast PATH [--calls 500]
//!              [--rates 20000,50000] [--search 60000,400000] [--secs 10] [--net 61]
//!              [--workers 2] [--batch-wait-us US] [--gso-blast PATH --gso 8] [--load-cpu N]
//!
//! `--gso-blast` sends with `gso-blast` (UDP GSO bursts of `--gso` packets per stream) instead
//! of `udpblast send`, for rates the sendmmsg blaster cannot reach on a small box;
//! `--load-cpu` pins the sender and the sink to that CPU (`taskset`), e.g. away from a single
//! relay worker, which the relay pins to CPU 0.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use intertrunk::wire::sdp::Sdp;
use intertrunk::wire::sip::{HeaderName, Message, Method};

const BLAST_PORT: u16 = 40000;
const SINK_PORT: u16 = 40010;
const PROBE_SRC_PORT: u16 = 40001;
const PROBE_SINK_PORT: u16 = 40011;
const PROBE_PPS: u64 = 50;
const MAX_CALLS: usize = 2000;

struct Args {
    relay: PathBuf,
    udpblast: PathBuf,
    calls: usize,
    rates: Vec<u64>,
    search: Option<(u64, u64)>,
    secs: u64,
    net: u8,
    lock: PathBuf,
    workers: usize,
    batch_wait_us: Option<u32>,
    gso_blast: Option<PathBuf>,
    gso: usize,
    load_cpu: Option<usize>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        relay: PathBuf::from("target/release/intertrunk"),
        udpblast: PathBuf::from("udpblast"),
        calls: 500,
        rates: vec![20_000, 50_000],
        search: None,
        secs: 10,
        net: 61,
        lock: PathBuf::from("/tmp/bench.lock"),
        workers: 2,
        batch_wait_us: None,
        gso_blast: None,
        gso: 8,
        load_cpu: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--help" || k == "-h" {
            let usage = include_str!("main.rs")
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            println!("{usage}");
            std::process::exit(0);
        }
        let v = it
            .next()
            .ok_or_else(|| anyhow!("{k} needs a value (--help)"))?;
        match k.as_str() {
            "--relay" => a.relay = v.into(),
            "--udpblast" => a.udpblast = v.into(),
            "--calls" => a.calls = v.parse()?,
            "--rates" => {
                a.rates = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--search" => {
                let (s, m) = v
                    .split_once(',')
                    .ok_or_else(|| anyhow!("--search START,MAX"))?;
                a.search = Some((s.parse()?, m.parse()?));
            }
            "--secs" => a.secs = v.parse()?,
            "--net" => a.net = v.parse()?,
            "--lock" => a.lock = v.into(),
            "--workers" => a.workers = v.parse()?,
            "--batch-wait-us" => a.batch_wait_us = Some(v.parse()?),
            "--gso-blast" => a.gso_blast = Some(v.into()),
            "--gso" => a.gso = v.parse()?,
            "--load-cpu" => a.load_cpu = Some(v.parse()?),
            _ => bail!("unknown argument {k} (--help)"),
        }
    }
    if a.calls == 0 || a.calls > MAX_CALLS {
        bail!("--calls must be 1..={MAX_CALLS}");
    }
    if a.secs == 0 || a.secs > 15 {
        bail!("--secs must be 1..=15 (bounded trials)");
    }
    Ok(a)
}

fn ip(net: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, net, host))
}

fn config(net: u8, workers: usize, batch_wait_us: Option<u32>) -> String {
    let batch = batch_wait_us.map_or(String::new(), |us| format!("media_batch_wait_us = {us}\n"));
    format!(
        r#"
[server]
sip_listen = ["udp:127.0.{net}.1:5060"]
media_address = "127.0.{net}.1"
media_ports = "20000-29999"
workers = {workers}
admin_listen = "127.0.{net}.1:8060"
media_timeout_s = 600
{batch}
[voice]
pstn_usages = ["ToPBX"]

[[trunk]]
identity = "PstnGateway:gw"
address = "127.0.{net}.11:5060"
pstn_usages = ["ToPBX"]

[[trunk]]
identity = "PstnGateway:pbx"
address = "127.0.{net}.21:5060"
pstn_usages = []

[[voice_route]]
identity = "PBX"
number_pattern = '^\+1425555\d{{4}}$'
pstn_usages = ["ToPBX"]
pstn_gateway_list = ["PstnGateway:pbx"]
"#
    )
}

fn sdp(media: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        ip = media.ip(),
        port = media.port()
    )
}

/// The PBX side: answers every INVITE with 200 and an SDP pointing at the sink (the probe
/// call's answer points at the probe sink), answers BYE. Stateless: the To tag derives from
/// the Call-ID, so a retransmitted INVITE gets the same answer.
fn callee(sock: UdpSocket, net: u8, stop: Arc<AtomicBool>) {
    let local = sock
        .local_addr()
        .unwrap_or(SocketAddr::new(ip(net, 21), 5060));
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(msg) = Message::parse(&buf[..n]) else {
            continue;
        };
        let Ok(call_id) = msg.call_id() else { continue };
        let probe = call_id.starts_with(b"probe-");
        let reply = match msg.method() {
            Some(Method::Invite) => {
                let port = if probe { PROBE_SINK_PORT } else { SINK_PORT };
                let body = sdp(SocketAddr::new(ip(net, 21), port));
                let tag = format!("t{:x}", fnv(call_id));
                response(&msg, 200, Some(&tag), Some(local), Some(&body))
            }
            Some(Method::Ack) => continue,
            Some(_) => response(&msg, 200, None, None, None),
            None => continue,
        };
        let _ = sock.send_to(&reply, src);
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &c| {
        (h ^ c as u64).wrapping_mul(0x100000001b3)
    })
}

fn response(
    req: &Message<'_>,
    code: u16,
    tag: Option<&str>,
    contact: Option<SocketAddr>,
    body: Option<&str>,
) -> Vec<u8> {
    let mut m = format!("SIP/2.0 {code} OK\r\n");
    for h in req.headers() {
        let value = String::from_utf8_lossy(h.value);
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => m
                .push_str(&format!(
                    "{}: {value}\r\n",
                    String::from_utf8_lossy(h.raw_name)
                )),
            HeaderName::RecordRoute => m.push_str(&format!("Record-Route: {value}\r\n")),
            HeaderName::To => match tag {
                Some(t) if req.to().ok().and_then(|t| t.tag).is_none() => {
                    m.push_str(&format!("To: {value};tag={t}\r\n"))
                }
                _ => m.push_str(&format!("To: {value}\r\n")),
            },
            _ => {}
        }
    }
    if let Some(c) = contact {
        m.push_str(&format!("Contact: <sip:pbx@{c}>\r\n"));
    }
    match body {
        Some(b) => m.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => m.push_str("Content-Length: 0\r\n\r\n"),
    }
    m.into_bytes()
}

/// One established call as the gateway sees it.
struct Dialog {
    call_id: String,
    from: String,
    to: String,
    route: String,
    target: String,
    first_hop: SocketAddr,
    /// The relay's caller-facing RTP port (from the answer).
    relay_media: SocketAddr,
}

/// The gateway side: places `n` calls (plus the probe call) with pacing and retransmission,
/// ACKs every 200, returns the dialogs.
fn place_calls(sock: &UdpSocket, relay: SocketAddr, n: usize, net: u8) -> Result<Vec<Dialog>> {
    let local = sock.local_addr()?;
    let invite = |i: usize| -> (String, String) {
        let probe = i == n;
        let call_id = if probe {
            format!("probe-{}@{}", std::process::id(), local.ip())
        } else {
            format!("ml{i}-{}@{}", std::process::id(), local.ip())
        };
        let port = if probe { PROBE_SRC_PORT } else { BLAST_PORT };
        let body = sdp(SocketAddr::new(ip(net, 11), port));
        let num = format!("+1425555{:04}", i % 10_000);
        let text = format!(
            "INVITE sip:{num}@{relay};user=phone SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKml{i};rport\r\nFrom: <sip:+14255550199@{local};user=phone>;tag=f{i}\r\nTo: <sip:{num}@{relay};user=phone>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:gw@{local}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        (call_id, text)
    };
    let total = n + 1;
    let mut pending: HashMap<String, (usize, String, Instant, u32)> = HashMap::new();
    let mut dialogs: Vec<Dialog> = Vec::with_capacity(total);
    let mut next = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(Duration::from_millis(5)))?;
    while dialogs.len() < total {
        if Instant::now() > deadline {
            bail!("only {} of {total} calls answered in 60 s", dialogs.len());
        }
        // Keep at most 50 INVITE transactions open: a steady ramp, no retransmission storm.
        while next < total && pending.len() < 50 {
            let (cid, text) = invite(next);
            sock.send_to(text.as_bytes(), relay)?;
            pending.insert(cid, (next, text, Instant::now(), 0));
            next += 1;
        }
        for (_, text, at, tries) in pending.values_mut() {
            if at.elapsed() > Duration::from_millis(500) {
                if *tries >= 6 {
                    bail!("an INVITE got no final response after 6 retransmissions");
                }
                sock.send_to(text.as_bytes(), relay)?;
                *at = Instant::now();
                *tries += 1;
            }
        }
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(msg) = Message::parse(&buf[..len]) else {
            continue;
        };
        let (Some(code), Ok(cseq), Ok(cid)) = (msg.status(), msg.cseq(), msg.call_id()) else {
            continue;
        };
        if cseq.method != Method::Invite || code < 200 {
            continue;
        }
        let cid = String::from_utf8_lossy(cid).into_owned();
        let Some((i, _, _, _)) = pending.remove(&cid) else {
            continue; // a retransmitted 2xx of a call already ACKed: loopback rarely does it
        };
        if code != 200 {
            bail!("call {i} failed with {code}");
        }
        let to = msg
            .header(HeaderName::To)
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_default();
        let routes: Vec<String> = msg
            .record_routes()
            .filter_map(|r| r.ok())
            .map(|r| format!("<{}>", String::from_utf8_lossy(r.uri)))
            .collect();
        let target = msg
            .contact()
            .and_then(|c| c.ok())
            .map(|c| String::from_utf8_lossy(c.uri).into_owned())
            .ok_or_else(|| anyhow!("200 without Contact"))?;
        let relay_media = Sdp::parse(msg.body())
            .ok()
            .and_then(|s| {
                let m = s.media().next()?;
                Some(SocketAddr::new(m.connection?, m.port))
            })
            .ok_or_else(|| anyhow!("200 without usable SDP"))?;
        let route = if routes.is_empty() {
            String::new()
        } else {
            format!("Route: {}\r\n", routes.join(","))
        };
        let d = Dialog {
            call_id: cid,
            from: format!("<sip:+14255550199@{local};user=phone>;tag=f{i}"),
            to,
            route,
            target,
            first_hop: relay,
            relay_media,
        };
        sock.send_to(in_dialog(&d, local, "ACK", 1, i).as_bytes(), d.first_hop)?;
        dialogs.push(d);
    }
    Ok(dialogs)
}

fn in_dialog(d: &Dialog, local: SocketAddr, method: &str, cseq: u32, i: usize) -> String {
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{method}{i};rport\r\n{route}From: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        target = d.target,
        route = d.route,
        from = d.from,
        to = d.to,
        cid = d.call_id
    )
}

/// BYE every dialog, paced, with retransmission; returns how many got their 200.
fn hang_up(sock: &UdpSocket, dialogs: &[Dialog]) -> Result<usize> {
    let local = sock.local_addr()?;
    let mut open: HashMap<&str, (usize, Instant, u32)> = HashMap::new();
    let mut done = 0usize;
    let mut next = 0usize;
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(30);
    while (next < dialogs.len() || !open.is_empty()) && Instant::now() < deadline {
        while next < dialogs.len() && open.len() < 50 {
            let d = &dialogs[next];
            sock.send_to(in_dialog(d, local, "BYE", 2, next).as_bytes(), d.first_hop)?;
            open.insert(&d.call_id, (next, Instant::now(), 0));
            next += 1;
        }
        open.retain(|_, (i, at, tries)| {
            if at.elapsed() > Duration::from_millis(500) {
                let d = &dialogs[*i];
                let _ = sock.send_to(in_dialog(d, local, "BYE", 2, *i).as_bytes(), d.first_hop);
                *at = Instant::now();
                *tries += 1;
            }
            *tries < 6
        });
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(msg) = Message::parse(&buf[..len]) else {
            continue;
        };
        if let (Some(code), Ok(cseq), Ok(cid)) = (msg.status(), msg.cseq(), msg.call_id()) {
            let cid = String::from_utf8_lossy(cid);
            if cseq.method == Method::Bye && code >= 200 && open.remove(cid.as_ref()).is_some() {
                done += usize::from(code == 200);
            }
        }
    }
    Ok(done)
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The relay's counters: every unlabelled sample of /metrics, summed over labels.
fn metrics(admin: SocketAddr) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Ok(mut s) = TcpStream::connect_timeout(&admin, Duration::from_secs(2)) else {
        return out;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    for line in text.lines().filter(|l| l.starts_with("intertrunk_")) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name.split('{').next().unwrap_or(name).to_string();
        if let Ok(v) = value.parse::<f64>() {
            *out.entry(name).or_insert(0.0) += v;
        }
    }
    out
}

fn kv(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Timestamped probe stream through the probe call; returns one-way latencies in us.
fn probe(
    net: u8,
    relay_media: SocketAddr,
    stop: Arc<AtomicBool>,
    lat: Arc<Mutex<Vec<u32>>>,
) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let src = UdpSocket::bind(SocketAddr::new(ip(net, 11), PROBE_SRC_PORT))?;
    let sink = UdpSocket::bind(SocketAddr::new(ip(net, 21), PROBE_SINK_PORT))?;
    sink.set_read_timeout(Some(Duration::from_millis(50)))?;
    let epoch = Instant::now();
    let s2 = stop.clone();
    let tx = std::thread::spawn(move || {
        let mut pkt = [0u8; 172];
        pkt[0] = 0x80;
        let mut seq: u16 = 0;
        let mut next = Instant::now();
        while !s2.load(Ordering::Relaxed) {
            seq = seq.wrapping_add(1);
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            pkt[8..12].copy_from_slice(&0x5052_4f42u32.to_be_bytes());
            let t = epoch.elapsed().as_nanos() as u64;
            pkt[12..20].copy_from_slice(&t.to_be_bytes());
            let _ = src.send_to(&pkt, relay_media);
            next += Duration::from_micros(1_000_000 / PROBE_PPS);
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    });
    let rx = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, _)) = sink.recv_from(&mut buf) else {
                continue;
            };
            let now = epoch.elapsed().as_nanos() as u64;
            if n >= 20 {
                let mut t = [0u8; 8];
                t.copy_from_slice(&buf[12..20]);
                let us = now.saturating_sub(u64::from_be_bytes(t)) / 1000;
                if let Ok(mut l) = lat.lock() {
                    if l.len() < 100_000 {
                        l.push(us.min(u32::MAX as u64) as u32);
                    }
                }
            }
        }
    });
    Ok(vec![tx, rx])
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

struct Relay {
    child: Child,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Trial {
    json: String,
    pass: bool,
}

#[allow(clippy::too_many_arguments)]
fn trial(
    a: &Args,
    pid: u32,
    admin: SocketAddr,
    ports_file: &Path,
    rate: u64,
    lat: &Arc<Mutex<Vec<u32>>>,
) -> Result<Trial> {
    let net = a.net;
    // The whole timed part holds the bench lock: the flock(1) wrapper around a shell that runs
    // sink + blaster; CPU samples are taken from inside the lock by the shell itself.
    let script = format!(
        r#"set -e
cat /proc/{pid}/task/*/sched | awk '/se.sum_exec_runtime/ {{s+=$3}} END {{printf "cpu0=%f\n", s}}'
{pin}"{ub}" recv -b {sink} -t {max} > "$T.sink" & SINK=$!
sleep 0.2
timeout -s INT {cap} {pin}{sender} -b {src} -d {dst} -P @{ports} -r {rate} -t {secs} -s 172 > "$T.blast" || true
sleep 0.3
kill -INT $SINK 2>/dev/null || true; wait $SINK || true
cat /proc/{pid}/task/*/sched | awk '/se.sum_exec_runtime/ {{s+=$3}} END {{printf "cpu1=%f\n", s}}'
cat "$T.blast" "$T.sink"
"#,
        ub = a.udpblast.display(),
        pin = a
            .load_cpu
            .map_or(String::new(), |c| format!("taskset -c {c} ")),
        sender = match &a.gso_blast {
            Some(g) => format!("\"{}\" send -g {}", g.display(), a.gso),
            None => format!("\"{}\" send -B 32", a.udpblast.display()),
        },
        sink = SocketAddr::new(ip(net, 21), SINK_PORT),
        src = SocketAddr::new(ip(net, 11), BLAST_PORT),
        dst = ip(net, 1),
        ports = ports_file.display(),
        secs = a.secs,
        max = a.secs + 10,
        cap = a.secs + 2,
    );
    let tmp = ports_file.with_extension(format!("t{rate}"));
    let m0 = metrics(admin);
    if let Ok(mut l) = lat.lock() {
        l.clear();
    }
    let waited = Instant::now();
    let out = Command::new("flock")
        .arg(&a.lock)
        .args(["bash", "-c", &script])
        .env("T", &tmp)
        .stderr(Stdio::inherit())
        .output()
        .context("flock bash")?;
    let total_s = waited.elapsed().as_secs_f64();
    let m1 = metrics(admin);
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| text.lines().map(|l| kv(l, k)).fold(0.0, f64::max);
    let (cpu0, cpu1) = (get("cpu0"), get("cpu1"));
    let (sent, recv) = (get("sent"), get("received"));
    let blast_rate = get("rate");
    let cpu_ms = cpu1 - cpu0; // se.sum_exec_runtime is in ms
    let d = |k: &str| m1.get(k).unwrap_or(&0.0) - m0.get(k).unwrap_or(&0.0);
    let relayed = d("intertrunk_rtp_packets_relayed_total");
    let dropped = d("intertrunk_rtp_packets_dropped_total");
    let loss = if sent > 0.0 {
        (sent - recv) / sent
    } else {
        1.0
    };
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_unstable();
    let pass = loss < 0.001 && blast_rate >= 0.98 * rate as f64 && sent > 0.0;
    let extra: Vec<String> = m1
        .iter()
        .filter(|(k, _)| {
            k.contains("drop") || k.contains("nobuf") || k.contains("rearm") || k.contains("turns")
        })
        .map(|(k, v)| format!("\"{k}\":{}", v - m0.get(k.as_str()).unwrap_or(&0.0)))
        .collect();
    let json = format!(
        "{{\"sut\":\"intertrunk\",\"workers\":{workers},\"sender\":\"{sender}\",\"calls\":{calls},\"rate\":{rate},\"secs\":{secs},\"sent\":{sent},\"received\":{recv},\"blast_rate\":{blast_rate:.0},\"loss_pct\":{lp:.4},\"relay_cpu_ms\":{cpu_ms:.1},\"cpu_pct\":{cp:.1},\"us_per_pkt\":{upp:.2},\"relayed_counter\":{relayed},\"dropped_counter\":{dropped},\"probe_n\":{pn},\"lat_p50_us\":{p50},\"lat_p99_us\":{p99},\"lat_max_us\":{pmax},\"counters\":{{{extra}}},\"trial_wall_s\":{total_s:.1},\"pass\":{pass}}}",
        calls = a.calls,
        workers = a.workers,
        sender = if a.gso_blast.is_some() {
            format!("gso-blast -g {}", a.gso)
        } else {
            "udpblast".to_string()
        },
        secs = a.secs,
        lp = loss * 100.0,
        cp = cpu_ms / (a.secs as f64 * 10.0),
        upp = if recv > 0.0 { cpu_ms * 1000.0 / recv } else { 0.0 },
        pn = l.len(),
        p50 = pct(&l, 0.5),
        p99 = pct(&l, 0.99),
        pmax = l.last().copied().unwrap_or(0),
        extra = extra.join(","),
    );
    let _ = std::fs::remove_file(tmp.with_extension(format!("t{rate}.sink")));
    Ok(Trial { json, pass })
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let dir = std::env::temp_dir().join(format!("media-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("relay.toml");
    std::fs::write(&cfg, config(a.net, a.workers, a.batch_wait_us))?;
    let log = std::fs::File::create(dir.join("relay.log"))?;
    let child = Command::new(&a.relay)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting the relay")?;
    let pid = child.id();
    let relay = Relay { child };
    let admin = SocketAddr::new(ip(a.net, 1), 8060);
    let sip = SocketAddr::new(ip(a.net, 1), 5060);
    let up = Instant::now();
    while metrics(admin).is_empty() {
        if up.elapsed() > Duration::from_secs(20) {
            bail!("relay not up after 20 s (log in {})", dir.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let callee_sock = UdpSocket::bind(SocketAddr::new(ip(a.net, 21), 5060))?;
    callee_sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let callee_t = {
        let (stop, net) = (stop.clone(), a.net);
        std::thread::spawn(move || callee(callee_sock, net, stop))
    };
    let gw = UdpSocket::bind(SocketAddr::new(ip(a.net, 11), 0))?;

    let rss0 = status_kib(pid, "VmRSS:");
    let pss0 = pss_kib(pid);
    let t0 = Instant::now();
    let dialogs = place_calls(&gw, sip, a.calls, a.net)?;
    let setup_s = t0.elapsed().as_secs_f64();
    let rss1 = status_kib(pid, "VmRSS:");
    let pss1 = pss_kib(pid);
    let m = metrics(admin);
    eprintln!(
        "media-load: {} calls (+1 probe) up in {setup_s:.2}s; relay RSS {rss0} -> {rss1} KiB, media sessions {}",
        a.calls,
        m.get("intertrunk_media_sessions").unwrap_or(&0.0)
    );
    println!(
        "{{\"setup\":true,\"calls\":{},\"setup_s\":{setup_s:.2},\"rss_kib_before\":{rss0},\"rss_kib_after\":{rss1},\"pss_kib_before\":{pss0},\"pss_kib_after\":{pss1},\"rss_bytes_per_call\":{},\"media_sessions\":{}}}",
        a.calls,
        (rss1.saturating_sub(rss0) * 1024) / (a.calls as u64 + 1),
        m.get("intertrunk_media_sessions").unwrap_or(&0.0)
    );
    let ports_file = dir.join("ports");
    let mut ports = String::new();
    // Dialogs are in answer order, so the probe call can be anywhere among them: the blaster
    // must not send to its port (the probe's leg latched the probe source and would rightly
    // drop the blaster's packets as coming from an unexpected source).
    for d in dialogs.iter().filter(|d| !d.call_id.starts_with("probe-")) {
        if d.relay_media.ip() != ip(a.net, 1) {
            bail!("call not anchored: answer points at {}", d.relay_media);
        }
        ports.push_str(&format!("{}\n", d.relay_media.port()));
    }
    std::fs::write(&ports_file, ports)?;
    let mut distinct: Vec<u16> = dialogs.iter().map(|d| d.relay_media.port()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    println!(
        "{{\"ports\":true,\"distinct_relay_ports\":{},\"lowest\":{},\"highest\":{}}}",
        distinct.len(),
        distinct.first().copied().unwrap_or(0),
        distinct.last().copied().unwrap_or(0)
    );
    let probe_media = dialogs
        .iter()
        .find(|d| d.call_id.starts_with("probe-"))
        .map(|d| d.relay_media)
        .ok_or_else(|| anyhow!("no probe call"))?;
    let lat = Arc::new(Mutex::new(Vec::new()));
    let probe_stop = Arc::new(AtomicBool::new(false));
    let probe_t = probe(a.net, probe_media, probe_stop.clone(), lat.clone())?;

    let mut rates = a.rates.clone();
    let mut i = 0;
    let mut best: Option<u64> = None;
    let mut first_fail: Option<u64> = None;
    // Fixed rates first, then a bounded search: x1.25 until a trial fails, then one bisection.
    let search_start = a.search.map(|(s, _)| s);
    if let Some(s) = search_start {
        rates.push(s);
    }
    while i < rates.len() && i < 16 {
        let rate = rates[i];
        let t = trial(&a, pid, admin, &ports_file, rate, &lat)?;
        println!("{}", t.json);
        eprintln!("media-load: {}", t.json);
        if let Some((_, max)) = a.search {
            if i + 1 == rates.len() && i >= a.rates.len() {
                if t.pass {
                    best = Some(best.map_or(rate, |b| b.max(rate)));
                } else {
                    first_fail = Some(first_fail.map_or(rate, |f| f.min(rate)));
                }
                let next = match (best, first_fail) {
                    (Some(b), None) if b < max => Some(((b as f64 * 1.25) as u64).min(max)),
                    (Some(b), Some(f)) if f > b + b / 20 && i < a.rates.len() + 8 => {
                        Some((b + f) / 2)
                    }
                    (None, Some(f)) if f > 20_000 && i < a.rates.len() + 8 => Some(f * 4 / 5),
                    _ => None,
                };
                if let Some(n) = next.filter(|n| !rates[a.rates.len()..].contains(n)) {
                    rates.push(n);
                }
            }
        }
        i += 1;
    }
    if a.search.is_some() {
        println!(
            "{{\"search\":true,\"calls\":{},\"max_pass_pps\":{},\"first_fail_pps\":{}}}",
            a.calls,
            best.unwrap_or(0),
            first_fail.unwrap_or(0)
        );
    }
    probe_stop.store(true, Ordering::Relaxed);
    for t in probe_t {
        let _ = t.join();
    }
    let before = metrics(admin);
    let ended = hang_up(&gw, &dialogs)?;
    std::thread::sleep(Duration::from_millis(500));
    let after = metrics(admin);
    println!(
        "{{\"teardown\":true,\"byes_ok\":{ended},\"of\":{},\"media_sessions_before\":{},\"media_sessions_after\":{},\"active_calls_after\":{}}}",
        dialogs.len(),
        before.get("intertrunk_media_sessions").unwrap_or(&0.0),
        after.get("intertrunk_media_sessions").unwrap_or(&0.0),
        after.get("intertrunk_active_calls").unwrap_or(&0.0)
    );
    stop.store(true, Ordering::Relaxed);
    let _ = callee_t.join();
    drop(relay);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
