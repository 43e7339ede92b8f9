//! What the binary-level tests share: loopback hosts, the trunk topology as a configuration
//! file, and `intertrunk run` as a child process.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether the relay sends OPTIONS keep-alives to the trunks.
#[derive(Clone, Copy)]
pub enum Probing {
    On,
    /// SIPp's callee scenarios model calls only and count a probe as a failed call.
    Off,
}

pub fn ip(net: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, net, host))
}

pub fn addr(net: u8, host: u8) -> SocketAddr {
    SocketAddr::new(ip(net, host), 5060)
}

/// The three-trunk topology of the seed plus a second gateway for failover:
/// gw1 (.11) and gw2 (.12) are PSTN gateways, pbx1 (.21) and pbx2 (.22) IP-PBXs.
pub fn config(net: u8, probing: Probing) -> String {
    let keepalive = match probing {
        Probing::On => "",
        Probing::Off => "options_keepalive_s = 0\n",
    };
    format!(
        r#"
[server]
sip_listen = ["udp:127.0.{net}.1:5060"]
media_address = "127.0.{net}.1"
media_ports = "20000-21999"
workers = 2
admin_listen = "127.0.{net}.1:8060"
media_timeout_s = 3

[voice]
pstn_usages = ["ToPBX1", "ToPBX2", "ToPSTN"]

[[trunk]]
identity = "PstnGateway:gw1"
address = "127.0.{net}.11:5060"
{keepalive}pstn_usages = ["ToPBX1", "ToPBX2"]
dial_plan = "GatewayInbound"

[[trunk]]
identity = "PstnGateway:gw2"
address = "127.0.{net}.12:5060"
{keepalive}pstn_usages = ["ToPBX1", "ToPBX2"]

[[trunk]]
identity = "PstnGateway:pbx1"
address = "127.0.{net}.21:5060"
{keepalive}pstn_usages = ["ToPBX2", "ToPSTN"]

[[trunk]]
identity = "PstnGateway:pbx2"
address = "127.0.{net}.22:5060"
{keepalive}pstn_usages = ["ToPBX1", "ToPSTN"]

[[voice_route]]
identity = "PBX1"
number_pattern = '^\+1425555\d{{4}}$'
pstn_usages = ["ToPBX1"]
pstn_gateway_list = ["PstnGateway:pbx1"]

[[voice_route]]
identity = "PBX2"
number_pattern = '^\+1206555\d{{4}}$'
pstn_usages = ["ToPBX2"]
pstn_gateway_list = ["PstnGateway:pbx2"]

[[voice_route]]
identity = "PSTN"
number_pattern = '^\+\d+$'
pstn_usages = ["ToPSTN"]
pstn_gateway_list = ["PstnGateway:gw1", "PstnGateway:gw2"]

[[dial_plan]]
identity = "GatewayInbound"
normalization_rules = [
  {{ name = "E164", pattern = '^(\+\d+)$', translation = '$1' }},
  {{ name = "TenDigit", pattern = '^(\d{{10}})$', translation = '+1$1' }},
]
"#
    )
}

/// `intertrunk run --config FILE` as a child process, stopped with SIGTERM when dropped.
pub struct RelayProcess {
    child: Child,
    pub admin: SocketAddr,
    pub sip: SocketAddr,
    log: PathBuf,
    _dir: PathBuf,
}

impl RelayProcess {
    pub fn start(net: u8, config_text: &str) -> RelayProcess {
        let dir =
            std::env::temp_dir().join(format!("intertrunk-relay-{}-{net}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("intertrunk.toml");
        std::fs::write(&cfg, config_text).unwrap();
        let log = dir.join("relay.log");
        let child = Command::new(env!("CARGO_BIN_EXE_intertrunk"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let admin = SocketAddr::new(ip(net, 1), 8060);
        let mut relay = RelayProcess {
            child,
            admin,
            sip: addr(net, 1),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&admin, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = relay.child.try_wait() {
                panic!("relay exited at start ({status}):\n{}", relay.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "relay not ready:\n{}",
                relay.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        relay
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metric(&self, name: &str) -> f64 {
        let mut s = TcpStream::connect(self.admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.admin
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == name).then(|| v.trim().parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
    }

    /// Waits until `name` reaches `want` (workers publish their counters every 250 ms).
    pub fn wait_metric(&self, name: &str, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.metric(name);
            if v == want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn terminate(&mut self) -> Option<i32> {
        // SAFETY: signalling our own child process by its PID.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}
