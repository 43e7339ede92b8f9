//! The configuration file (DESIGN section 4, a contract): TOML, Lync's nouns in snake case.
//!
//! [`Config::from_toml`] parses and validates in one go and reports *every* problem at once,
//! each with its line and the identity of the object it belongs to: unknown keys, wrong
//! types, duplicate identities, dangling references, invalid regexes and translations, two
//! trunks on one address. A [`Config`] built or changed in memory (the admin API does that) is
//! checked with [`Config::validate`]; its diagnostics carry no line. [`Config::to_toml`]
//! writes a config back out; reading that text again gives an equal `Config`.

mod schema;
pub mod translation;
mod validate;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use translation::{Piece, Translation};

/// The built-in configuration: the relay on loopback between one gateway and two PBXs.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// One configuration problem. `line` is 1-based; `identity` names the object (a trunk's
/// identity, `server`, `voice`, ...) when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: Option<usize>,
    pub identity: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(line: Option<usize>, identity: Option<&str>, message: impl Into<String>) -> Self {
        Diagnostic {
            line,
            identity: identity.map(str::to_owned),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(id) = &self.identity {
            write!(f, "{id}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub voice: Voice,
    #[serde(default)]
    pub trunk: Vec<Trunk>,
    #[serde(default)]
    pub voice_route: Vec<VoiceRoute>,
    #[serde(default)]
    pub dial_plan: Vec<DialPlan>,
    #[serde(default)]
    pub translation_rule: Vec<TranslationRule>,
    #[serde(default)]
    pub response_code_translation_rule: Vec<ResponseCodeTranslationRule>,
}

/// `[server]`: where the relay listens and which media ports it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(default = "default_sip_listen")]
    pub sip_listen: Vec<Listen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<IpAddr>,
    #[serde(default = "default_media_address")]
    pub media_address: IpAddr,
    #[serde(default = "default_media_ports")]
    pub media_ports: PortRange,
    /// 0 = one worker per core.
    #[serde(default)]
    pub workers: usize,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    #[serde(default = "default_media_timeout_s")]
    pub media_timeout_s: u32,
    /// Longest a worker holds a ready RTP packet so that one wake-up serves several (the
    /// latency-for-CPU trade of batched waits); unset: the runtime's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_batch_wait_us: Option<u32>,
    /// The same after a loop turn that carried SIP (signaling wants a shorter hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_batch_wait_us: Option<u32>,
    /// Overload control: once a SIP datagram has waited this long (ms) in the socket queue,
    /// new calls get 503 with Retry-After until one has waited a quarter of it or less;
    /// unset or 0: off (20 is the measured choice where the host does not stall workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_overload_queue_ms: Option<u32>,
    /// SCHED_FIFO priority (1-99) of the worker threads; unset or 0: the normal scheduler.
    /// A woken real-time worker preempts whatever else runs on its core at once, instead of
    /// waiting for that task's time slice: the cure for millisecond setup-latency tails on a
    /// shared box. Needs root or CAP_SYS_NICE (refused: a warning, and the normal scheduler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realtime_priority: Option<u8>,
}

fn default_sip_listen() -> Vec<Listen> {
    vec![Listen {
        transport: Transport::Udp,
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060),
    }]
}
fn default_media_address() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
fn default_media_ports() -> PortRange {
    PortRange {
        first: 30000,
        last: 39999,
    }
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8060)
}
fn default_media_timeout_s() -> u32 {
    30
}

impl Default for Server {
    fn default() -> Self {
        Server {
            sip_listen: default_sip_listen(),
            public_address: None,
            media_address: default_media_address(),
            media_ports: default_media_ports(),
            workers: 0,
            admin_listen: default_admin_listen(),
            media_timeout_s: default_media_timeout_s(),
            media_batch_wait_us: None,
            sip_batch_wait_us: None,
            sip_overload_queue_ms: None,
            realtime_priority: None,
        }
    }
}

/// `[voice]`: the global list of PSTN usages (Lync's `Set-CsPstnUsage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voice {
    #[serde(default)]
    pub pstn_usages: Vec<String>,
}

/// SIP transport of a listen address or a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            "tls" => Ok(Transport::Tls),
            _ => Err(format!(
                "unknown transport `{s}` (expected udp, tcp or tls)"
            )),
        }
    }
}

/// A SIP listen address, written `transport:ip:port` (`udp:127.0.0.1:5060`, `udp:[::1]:5060`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listen {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (transport, addr) = s
            .split_once(':')
            .ok_or_else(|| format!("bad listen address `{s}` (expected transport:ip:port)"))?;
        let transport = transport.parse()?;
        let addr = addr
            .parse()
            .map_err(|_| format!("bad listen address `{s}` (expected transport:ip:port)"))?;
        Ok(Listen { transport, addr })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.as_str(), self.addr)
    }
}

/// An inclusive UDP port range, written `first-last` (`30000-39999`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("bad port range `{s}` (expected first-last, e.g. 30000-39999)");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        // RTP takes an even port and RTCP the next one: the range must hold one such pair.
        let first_even = first + (first & 1);
        if first_even >= last {
            return Err(format!(
                "port range `{s}` holds no even/odd port pair for RTP and RTCP"
            ));
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(Listen);
string_serde!(PortRange);

/// `[[trunk]]`: a peer (PSTN gateway or IP-PBX), Lync's `CsTrunkConfiguration` plus the
/// gateway's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub identity: String,
    pub address: SocketAddr,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default)]
    pub pstn_usages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dial_plan: Option<String>,
    #[serde(default)]
    pub outbound_translation_rules: Vec<String>,
    #[serde(default)]
    pub outbound_calling_number_translation_rules: Vec<String>,
    #[serde(default)]
    pub sip_response_code_translation_rules: Vec<String>,
    #[serde(default)]
    pub enable_bypass: bool,
    #[serde(default)]
    pub enable_rtp_latching: bool,
    #[serde(default)]
    pub remove_plus_from_uri: bool,
    #[serde(default = "yes")]
    pub enable_fast_failover_timer: bool,
    #[serde(default = "default_max_early_dialogs")]
    pub max_early_dialogs: u32,
    #[serde(default = "yes")]
    pub rtcp_active_calls: bool,
    #[serde(default)]
    pub forward_pai: bool,
    #[serde(default)]
    pub forward_call_history: bool,
    #[serde(default)]
    pub enable_session_timer: bool,
    #[serde(default = "default_options_keepalive_s")]
    pub options_keepalive_s: u32,
}

fn yes() -> bool {
    true
}
fn default_max_early_dialogs() -> u32 {
    20
}
fn default_options_keepalive_s() -> u32 {
    30
}

impl Trunk {
    /// A trunk with every setting at its default (DESIGN section 4).
    pub fn new(identity: impl Into<String>, address: SocketAddr) -> Trunk {
        Trunk {
            identity: identity.into(),
            address,
            transport: Transport::Udp,
            pstn_usages: Vec::new(),
            dial_plan: None,
            outbound_translation_rules: Vec::new(),
            outbound_calling_number_translation_rules: Vec::new(),
            sip_response_code_translation_rules: Vec::new(),
            enable_bypass: false,
            enable_rtp_latching: false,
            remove_plus_from_uri: false,
            enable_fast_failover_timer: true,
            max_early_dialogs: default_max_early_dialogs(),
            rtcp_active_calls: true,
            forward_pai: false,
            forward_call_history: false,
            enable_session_timer: false,
            options_keepalive_s: default_options_keepalive_s(),
        }
    }
}

/// `[[voice_route]]`: Lync's `CsVoiceRoute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceRoute {
    pub identity: String,
    pub number_pattern: String,
    #[serde(default)]
    pub pstn_usages: Vec<String>,
    #[serde(default)]
    pub pstn_gateway_list: Vec<String>,
    /// Lower is tried first; ties keep file order.
    #[serde(default)]
    pub priority: u32,
    #[serde(default)]
    pub suppress_caller_id: bool,
    #[serde(default)]
    pub alternate_caller_id: String,
    #[serde(default)]
    pub description: String,
}

impl VoiceRoute {
    pub fn new(identity: impl Into<String>, number_pattern: impl Into<String>) -> VoiceRoute {
        VoiceRoute {
            identity: identity.into(),
            number_pattern: number_pattern.into(),
            pstn_usages: Vec::new(),
            pstn_gateway_list: Vec::new(),
            priority: 0,
            suppress_caller_id: false,
            alternate_caller_id: String::new(),
            description: String::new(),
        }
    }
}

/// `[[dial_plan]]`: Lync's `CsDialPlan` with its normalization rules, tried in list order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialPlan {
    pub identity: String,
    #[serde(default)]
    pub normalization_rules: Vec<NormalizationRule>,
}

/// One `CsVoiceNormalizationRule` of a dial plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizationRule {
    pub name: String,
    pub pattern: String,
    pub translation: String,
}

/// `[[translation_rule]]`: Lync's `CsOutboundTranslationRule` (called or calling number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslationRule {
    pub identity: String,
    pub pattern: String,
    pub translation: String,
}

/// `[[response_code_translation_rule]]`: remaps a SIP response code received from a trunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseCodeTranslationRule {
    pub identity: String,
    pub received_response_code: u16,
    pub translated_response_code: u16,
}

impl Config {
    /// Parses and validates a configuration; on failure returns every problem found, in line
    /// order.
    pub fn from_toml(text: &str) -> Result<Config, Vec<Diagnostic>> {
        let doc = match toml_edit::ImDocument::parse(text.to_owned()) {
            Ok(doc) => doc,
            Err(e) => {
                let lines = schema::LineIndex::new(text);
                let line = e.span().map(|s| lines.line(s.start));
                let msg = e.message().trim_end().to_owned();
                return Err(vec![Diagnostic::new(
                    line,
                    None,
                    format!("TOML syntax: {msg}"),
                )]);
            }
        };
        let checked = schema::check(text, &doc);
        let mut diags = checked.diagnostics;
        // The document parsed once is deserialized as it is, unless broken parts had to be
        // dropped (then from the text without them).
        let parsed = match checked.cleaned {
            None => toml_edit::de::from_document::<Config>(doc).map_err(|e| e.message().to_owned()),
            Some(text) => toml::from_str::<Config>(&text).map_err(|e| e.message().to_owned()),
        };
        let config = match parsed {
            Ok(c) => c,
            Err(e) => {
                // The schema walk should have caught anything serde rejects; keep the error
                // rather than lose it.
                diags.push(Diagnostic::new(None, None, e));
                sort(&mut diags);
                return Err(diags);
            }
        };
        validate::check(&config, Some(&checked.map), &mut diags);
        if diags.is_empty() {
            Ok(config)
        } else {
            sort(&mut diags);
            Err(diags)
        }
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Diagnostic::new(
                None,
                None,
                format!("cannot read {}: {e}", path.display()),
            )]
        })?;
        Config::from_toml(&text)
    }

    /// The built-in configuration.
    pub fn builtin() -> Config {
        match Config::from_toml(DEFAULT_CONFIG) {
            Ok(c) => c,
            // A test keeps the built-in file valid; this cannot be reached from input.
            Err(d) => panic!("built-in configuration is invalid: {d:?}"),
        }
    }

    /// Checks a configuration built or changed in memory. Diagnostics carry no line.
    pub fn validate(&self) -> Result<(), Vec<Diagnostic>> {
        let mut diags = Vec::new();
        validate::check(self, None, &mut diags);
        if diags.is_empty() {
            Ok(())
        } else {
            Err(diags)
        }
    }

    /// [`Config::validate`] without parsing the voice routes' number patterns: for a caller
    /// that parses each of them itself (the route table) and reports
    /// [`Config::bad_number_pattern`] for those that fail.
    pub fn validate_except_route_patterns(&self) -> Result<(), Vec<Diagnostic>> {
        let mut diags = Vec::new();
        validate::check_with(self, None, &mut diags, false);
        if diags.is_empty() {
            Ok(())
        } else {
            Err(diags)
        }
    }

    /// The message of a voice route whose number pattern does not parse.
    pub fn bad_number_pattern(error: &str) -> String {
        validate::bad_number_pattern(error)
    }

    /// Serializes back to TOML; `Config::from_toml(&c.to_toml())` gives `c` again.
    pub fn to_toml(&self) -> String {
        // Every field serializes to a TOML value (strings, integers, booleans, tables).
        toml::to_string(self).unwrap_or_else(|e| panic!("config serialization: {e}"))
    }

    pub fn trunk(&self, identity: &str) -> Option<&Trunk> {
        self.trunk.iter().find(|t| t.identity == identity)
    }
    pub fn voice_route(&self, identity: &str) -> Option<&VoiceRoute> {
        self.voice_route.iter().find(|r| r.identity == identity)
    }
}

fn sort(diags: &mut [Diagnostic]) {
    // Stable: diagnostics without a line keep their order at the end.
    diags.sort_by_key(|d| d.line.unwrap_or(usize::MAX));
}

#[cfg(test)]
mod tests;
