//! The proxy core's own settings (per core), apart from the routing table.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use super::transaction::TimerValues;

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This core's own SIP address: its port goes into our Via sent-by and Record-Route.
    pub local: SocketAddr,
    /// The address written into Via and Record-Route (`server.public_address`, else the
    /// listen ip).
    pub public_address: IpAddr,
    /// This core's index (encoded in our Via branch) and the number of cores.
    pub core: u16,
    pub cores: u16,
    pub timers: TimerValues,
    /// Hard cap on transaction contexts (server transaction with its client branches). New
    /// calls are refused with 503 at `max_transactions - max_transactions / 8`; the last
    /// eighth is kept for requests inside existing calls.
    pub max_transactions: usize,
    /// Hard cap on calls (dialogs in setup or established).
    pub max_calls: usize,
    /// Retry-After (seconds) on a 503 given because of a cap or drain.
    pub retry_after_s: u32,
    /// An established call is torn down (BYE both legs) after this long, whatever happens:
    /// the last guard against a lost BYE on a call without media supervision.
    pub max_call_duration: Duration,
    /// Largest datagram processed and largest message written.
    pub max_message: usize,
    /// Overload control: once a SIP datagram has waited this long in the socket queue before
    /// the core sees it, new calls get 503 with Retry-After (cheaply, without routing or
    /// state) until one has waited a quarter of it or less; requests and responses of calls
    /// in progress are handled as usual. Without it, a relay past its capacity answers
    /// INVITEs after the callers' Timer A has fired, and their retransmissions multiply the
    /// load (congestion collapse). `None` (the default): off.
    /// 20 ms kept goodput near capacity past it in the measurements, but on a 2 vCPU VM its
    /// stalls also crossed 20 ms at half capacity and refused a few calls, so it is opt-in.
    pub overload_queue_delay: Option<Duration>,
}

impl ProxyConfig {
    /// Defaults for a core listening on `local`.
    pub fn new(local: SocketAddr) -> ProxyConfig {
        ProxyConfig {
            local,
            public_address: local.ip(),
            core: 0,
            cores: 1,
            timers: TimerValues::default(),
            max_transactions: 100_000,
            max_calls: 50_000,
            retry_after_s: 10,
            max_call_duration: Duration::from_secs(12 * 3600),
            max_message: 16 * 1024,
            overload_queue_delay: None,
        }
    }

    /// Settings for core `core` of `cores`, whose own SIP socket is `local`: the public
    /// address is `server.public_address`, else the ip of `local`.
    pub fn for_core(
        cfg: &crate::config::Config,
        local: SocketAddr,
        core: u16,
        cores: u16,
    ) -> ProxyConfig {
        let mut p = ProxyConfig::new(local);
        p.public_address = cfg.server.public_address.unwrap_or(local.ip());
        p.core = core;
        p.cores = cores.max(1);
        p.overload_queue_delay = cfg
            .server
            .sip_overload_queue_ms
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(u64::from(ms)));
        p
    }

    pub(crate) fn new_call_reserve(&self) -> usize {
        self.max_transactions - self.max_transactions / 8
    }
}
