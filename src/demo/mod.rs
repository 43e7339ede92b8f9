//! `intertrunk demo`: the relay with a simulated PSTN gateway and two IP-PBXs on loopback,
//! placing real calls (SIP and RTP) in every direction of intertrunk routing.

pub mod ua;
