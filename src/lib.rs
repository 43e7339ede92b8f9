//! intertrunk: a carrier-grade SIP/RTP relay doing Lync Server 2013 style *intertrunk routing*.
//!
//! A call that arrives on one trunk (a PSTN gateway or an IP-PBX) is routed to another trunk by
//! the PSTN usages of the trunk it arrived on, matched against voice routes. The relay is a
//! transaction-stateful SIP proxy that anchors the media.
//!
//! The folder layout is the architecture:
//!
//! - [`wire`]: zero-copy views over datagrams (SIP, SDP) and one-pass rewriting.
//! - [`config`]: the TOML configuration, its validation and its persistence.
//! - [`route`]: the compiled, immutable routing table and its lock-free publication.
//! - [`proxy`]: the sans-IO SIP core (transactions, dialogs, failover, timers).
//! - [`media`]: the sans-IO RTP core (port pairs, latching, forwarding decisions, statistics).
//! - [`driver`]: the only module with syscalls: one io_uring loop per pinned core thread.
//! - [`control`]: the admin HTTP API, `/metrics`, the `ctl` client and hot reload.
//! - [`service`]: the relay process assembling all of the above (`intertrunk run`).
//! - [`demo`]: a simulated gateway and PBXs placing real calls (`intertrunk demo`).

pub mod config;
pub mod control;
pub mod demo;
pub mod driver;
pub mod fnv;
pub mod media;
pub mod proxy;
pub mod rng;
pub mod route;
pub mod service;
pub mod wire;
