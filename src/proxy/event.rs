//! What the core reports to the outside (logs, /metrics, `get-calls`).

use std::time::Duration;

use crate::media::SessionStats;
use crate::route::TrunkId;

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// BYE from the leg that sent the INVITE.
    ByeFromCaller,
    /// BYE from the leg the call was routed to.
    ByeFromCallee,
    /// The caller cancelled before an answer.
    Cancelled,
    /// A final non-2xx answer (or none: every candidate failed) went back to the caller.
    Failed,
    /// No RTP/RTCP on any stream for media_timeout_s: BYE sent to both legs.
    MediaTimeout,
    /// The call exceeded `max_call_duration`: BYE sent to both legs.
    MaxDuration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new call was accepted for routing.
    CallStarted {
        call: u64,
        source: TrunkId,
        called: String,
        calling: String,
    },
    /// A branch of the call was sent to a gateway (`attempt` counts from 1).
    CallRouted {
        call: u64,
        target: TrunkId,
        attempt: u32,
    },
    CallAnswered {
        call: u64,
        target: TrunkId,
    },
    CallEnded {
        call: u64,
        reason: EndReason,
        /// The final status sent to the caller (200 for answered calls).
        status: u16,
        /// Time since the answer (zero when unanswered).
        duration: Duration,
        media: Option<SessionStats>,
    },
    /// OPTIONS keep-alive got no answer: routing skips the trunk.
    TrunkDown(TrunkId),
    /// A trunk marked down answered again.
    TrunkUp(TrunkId),
}
