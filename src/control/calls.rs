//! Calls in progress, for `GET /calls` and `intertrunk ctl get-calls`.
//!
//! The workers report call start, state changes and end (a few events per call, never per
//! packet) into [`CallTable`]; the admin API only reads through the [`CallRegistry`] trait, so
//! another source (e.g. a test double) can be plugged in.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One call as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInfo {
    pub call_id: String,
    /// Identity of the trunk the INVITE came from.
    pub source_trunk: String,
    /// Identity of the trunk currently tried or connected, if any.
    pub target_trunk: Option<String>,
    /// Called number after normalization.
    pub called: String,
    pub calling: String,
    /// `trying`, `ringing`, `confirmed`, `terminating`.
    pub state: String,
    /// Worker core that owns the dialog.
    pub worker: u16,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

/// What the admin API reads.
pub trait CallRegistry: Send + Sync {
    /// A snapshot of every call in progress.
    fn calls(&self) -> Vec<CallInfo>;
}

/// Milliseconds since the Unix epoch (for [`CallInfo::started_unix_ms`]).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where a call stands, as `GET /calls` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Trying,
    Ringing,
    Confirmed,
    Terminating,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Trying => "trying",
            CallState::Ringing => "ringing",
            CallState::Confirmed => "confirmed",
            CallState::Terminating => "terminating",
        }
    }
}

/// A call as a worker reports it at the start.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub source_trunk: String,
    pub called: String,
    pub calling: String,
    pub started_unix_ms: u64,
}

/// What the table keeps per call: no key text and no state text (both are made only when the
/// admin reads), so a report costs a hash of an integer and, at most, one moved string.
struct Record {
    call: NewCall,
    target_trunk: Option<String>,
    state: CallState,
}

/// The proxy's call numbers are unique per relay and not chosen by peers: the fast hash is safe.
type Records = HashMap<u64, Record, foldhash::fast::RandomState>;

/// The calls of every worker, one map per worker so that workers never contend with each other
/// (only with the rare admin read). A worker reports a few events per call, never per packet.
pub struct CallTable {
    workers: Box<[Mutex<Records>]>,
}

impl CallTable {
    pub fn new(workers: usize) -> Self {
        CallTable {
            workers: (0..workers.max(1))
                .map(|_| Mutex::new(Records::default()))
                .collect(),
        }
    }

    fn slot(&self, worker: u16) -> MutexGuard<'_, Records> {
        let i = (worker as usize).min(self.workers.len() - 1);
        // A panic while holding the lock cannot leave a map half-updated; keep serving.
        self.workers[i]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Worker `worker` started call number `call` (unique per relay).
    pub fn started(&self, worker: u16, call: u64, info: NewCall) {
        self.slot(worker).insert(
            call,
            Record {
                call: info,
                target_trunk: None,
                state: CallState::Trying,
            },
        );
    }

    /// A call changed state or target trunk.
    pub fn update(&self, worker: u16, call: u64, state: CallState, target_trunk: Option<String>) {
        if let Some(c) = self.slot(worker).get_mut(&call) {
            c.state = state;
            if let Some(t) = target_trunk {
                c.target_trunk = Some(t);
            }
        }
    }

    /// A call ended.
    pub fn ended(&self, worker: u16, call: u64) {
        self.slot(worker).remove(&call);
    }

    /// Number of calls held.
    pub fn len(&self) -> usize {
        (0..self.workers.len())
            .map(|i| self.slot(i as u16).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CallRegistry for CallTable {
    fn calls(&self) -> Vec<CallInfo> {
        let mut all: Vec<CallInfo> = Vec::new();
        for w in 0..self.workers.len() {
            let worker = w as u16;
            let map = self.slot(worker);
            all.extend(map.iter().map(|(call, r)| CallInfo {
                call_id: format!("{worker}-{call}"),
                source_trunk: r.call.source_trunk.clone(),
                target_trunk: r.target_trunk.clone(),
                called: r.call.called.clone(),
                calling: r.call.calling.clone(),
                state: r.state.as_str().to_string(),
                worker,
                started_unix_ms: r.call.started_unix_ms,
            }));
        }
        all.sort_by(|a, b| {
            a.started_unix_ms
                .cmp(&b.started_unix_ms)
                .then_with(|| a.call_id.cmp(&b.call_id))
        });
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(t: u64) -> NewCall {
        NewCall {
            source_trunk: "PstnGateway:gw1".into(),
            called: "+12065550100".into(),
            calling: "+14255550123".into(),
            started_unix_ms: t,
        }
    }

    #[test]
    fn start_update_end() {
        let t = CallTable::new(2);
        t.started(1, 7, call(20));
        t.started(0, 9, call(10));
        t.update(1, 7, CallState::Ringing, Some("PstnGateway:pbx1".into()));
        t.update(1, 7, CallState::Confirmed, None);
        t.update(0, 12345, CallState::Confirmed, None);
        let calls = t.calls();
        assert_eq!(
            calls.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(),
            ["0-9", "1-7"]
        );
        assert_eq!(calls[1].state, "confirmed");
        assert_eq!(calls[1].target_trunk.as_deref(), Some("PstnGateway:pbx1"));
        assert_eq!(calls[1].worker, 1);
        assert_eq!(calls[0].state, "trying");
        assert_eq!(calls[0].target_trunk, None);
        assert_eq!(calls[0].called, "+12065550100");
        t.ended(0, 9);
        assert_eq!(t.len(), 1);
        t.ended(1, 7);
        assert!(t.is_empty());
    }
}
