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

/// The calls of every worker, one map per worker so that workers never contend with each other
/// (only with the rare admin read).
pub struct CallTable {
    workers: Box<[Mutex<HashMap<String, CallInfo>>]>,
}

impl CallTable {
    pub fn new(workers: usize) -> Self {
        CallTable {
            workers: (0..workers.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    fn slot(&self, worker: u16) -> MutexGuard<'_, HashMap<String, CallInfo>> {
        let i = (worker as usize).min(self.workers.len() - 1);
        // A panic while holding the lock cannot leave a map half-updated; keep serving.
        self.workers[i]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A call started (its `worker` field says which map holds it).
    pub fn started(&self, info: CallInfo) {
        self.slot(info.worker).insert(info.call_id.clone(), info);
    }

    /// A call changed state or target trunk.
    pub fn update(&self, worker: u16, call_id: &str, state: &str, target_trunk: Option<&str>) {
        if let Some(c) = self.slot(worker).get_mut(call_id) {
            c.state = state.to_string();
            if let Some(t) = target_trunk {
                c.target_trunk = Some(t.to_string());
            }
        }
    }

    /// A call ended.
    pub fn ended(&self, worker: u16, call_id: &str) {
        self.slot(worker).remove(call_id);
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
        let mut all: Vec<CallInfo> = (0..self.workers.len())
            .flat_map(|i| self.slot(i as u16).values().cloned().collect::<Vec<_>>())
            .collect();
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

    fn call(id: &str, worker: u16, t: u64) -> CallInfo {
        CallInfo {
            call_id: id.into(),
            source_trunk: "PstnGateway:gw1".into(),
            target_trunk: None,
            called: "+12065550100".into(),
            calling: "+14255550123".into(),
            state: "trying".into(),
            worker,
            started_unix_ms: t,
        }
    }

    #[test]
    fn start_update_end() {
        let t = CallTable::new(2);
        t.started(call("b", 1, 20));
        t.started(call("a", 0, 10));
        t.update(1, "b", "confirmed", Some("PstnGateway:pbx2"));
        t.update(0, "missing", "confirmed", None);
        let calls = t.calls();
        assert_eq!(
            calls.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(calls[1].state, "confirmed");
        assert_eq!(calls[1].target_trunk.as_deref(), Some("PstnGateway:pbx2"));
        t.ended(0, "a");
        assert_eq!(t.len(), 1);
        t.ended(1, "b");
        assert!(t.is_empty());
    }
}
