//! The admin API: Lync's cmdlets as HTTP resources, hot reload, `/calls`, `/metrics`.
//!
//! | resource | Lync |
//! | --- | --- |
//! | `/trunk-configurations[/ID]` | `Get/New/Set/Remove-CsTrunkConfiguration` |
//! | `/voice-routes[/ID]` | `Get/New/Set/Remove-CsVoiceRoute` |
//! | `/pstn-usages` | `Get/Set-CsPstnUsage` (the global list) |
//! | `/dial-plans[/ID]` | `Get/New/Set/Remove-CsDialPlan` |
//! | `/translation-rules[/ID]` | `Get/New/Set/Remove-CsOutboundTranslationRule` |
//! | `/response-code-translation-rules[/ID]` | response code remapping |
//! | `POST /test-intertrunk-routing` | `Test-CsInterTrunkRouting`-style trace |
//! | `POST /reload`, `GET /calls`, `GET /metrics`, `GET /config` | |
//!
//! `GET` the collection to list, `GET .../ID` for one, `POST` the collection to create
//! (`identity` in the body), `PATCH .../ID` to change some fields (list fields take
//! `{"add"|"remove"|"replace": [..]}`), `DELETE .../ID`. Identities are percent-encoded in the
//! path (`:` may stay as is).
//!
//! Every change, one at a time (one mutex: the control plane is not the hot path): the edit is
//! made on a copy of the configuration *text* (comments kept, see [`super::edit`]), the text is
//! parsed and validated exactly as at start, a complete new [`RouteTable`] is built, the file is
//! replaced atomically (temp file in the same directory, fsync, rename, fsync of the
//! directory), and only then is the table published with one swap. Any failure before the swap
//! changes nothing, in memory or on disk. If the file was changed by hand since it was loaded,
//! a change is refused with 409 (reload first) rather than silently overwrite the edit.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};
use toml_edit::DocumentMut;

use super::calls::CallRegistry;
use super::edit::{self, EditError};
use super::http::{percent_decode, Request, Response};
use super::metrics::{ControlCounter, Metrics};
use super::modifier::ListModifier;
use crate::config::{Config, Diagnostic};
use crate::route::{LiveTable, Outcome, RouteTable};

/// A collection of `[[array]]` objects.
struct Kind {
    collection: &'static str,
    array: &'static str,
    noun: &'static str,
}

const KINDS: &[Kind] = &[
    Kind {
        collection: "trunk-configurations",
        array: "trunk",
        noun: "trunk configuration",
    },
    Kind {
        collection: "voice-routes",
        array: "voice_route",
        noun: "voice route",
    },
    Kind {
        collection: "dial-plans",
        array: "dial_plan",
        noun: "dial plan",
    },
    Kind {
        collection: "translation-rules",
        array: "translation_rule",
        noun: "translation rule",
    },
    Kind {
        collection: "response-code-translation-rules",
        array: "response_code_translation_rule",
        noun: "response code translation rule",
    },
];

const IN_MEMORY: &str = "applied in memory only: the relay runs on its built-in configuration \
     (no --config file), so a restart will not keep this change";

/// What the control plane holds under its one lock.
struct State {
    /// The configuration file, or None on the built-in configuration.
    path: Option<PathBuf>,
    /// The configuration text in force.
    doc: DocumentMut,
    /// The file's content as last read or written, to notice edits made by hand.
    disk: Option<String>,
}

/// The admin API; [`Api::handle`] answers one request.
pub struct Api {
    state: Mutex<State>,
    live: LiveTable,
    metrics: Arc<Metrics>,
    calls: Arc<dyn CallRegistry>,
}

/// Why a change or reload was refused.
#[derive(Debug)]
pub enum ChangeError {
    Edit(EditError),
    Invalid(Vec<Diagnostic>),
    Conflict(String),
    Io(String),
}

impl ChangeError {
    fn response(&self) -> Response {
        match self {
            ChangeError::Edit(e) => Response::error(e.status(), e.to_string()),
            ChangeError::Invalid(d) => Response::json(
                400,
                &json!({
                    "error": format!("the change makes the configuration invalid ({} problem{}; lines are those of the changed file); nothing was changed",
                        d.len(), if d.len() == 1 { "" } else { "s" }),
                    "diagnostics": diagnostics_json(d),
                }),
            ),
            ChangeError::Conflict(m) => Response::error(409, m.clone()),
            ChangeError::Io(m) => Response::error(500, m.clone()),
        }
    }
}

pub fn diagnostics_json(d: &[Diagnostic]) -> Value {
    Value::Array(
        d.iter()
            .map(|d| json!({"line": d.line, "identity": d.identity, "message": d.message}))
            .collect(),
    )
}

/// The outcome of a change that went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Written to the configuration file (false on the built-in configuration).
    pub persisted: bool,
    /// Generation of the table now in force.
    pub generation: u64,
}

impl Api {
    /// The API over `live`. With a configuration file, its current text is the base of every
    /// change; without, the configuration in force is.
    pub fn new(
        live: LiveTable,
        config_path: Option<PathBuf>,
        metrics: Arc<Metrics>,
        calls: Arc<dyn CallRegistry>,
    ) -> io::Result<Api> {
        let (text, disk) = match &config_path {
            Some(p) => {
                let t = fs::read_to_string(p)?;
                (t.clone(), Some(t))
            }
            None => (live.load().config().to_toml(), None),
        };
        let doc = text
            .parse::<DocumentMut>()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(Api {
            state: Mutex::new(State {
                path: config_path,
                doc,
                disk,
            }),
            live,
            metrics,
            calls,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a change happens before the swap and leaves State as it was.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The table in force.
    pub fn live(&self) -> &LiveTable {
        &self.live
    }

    /// Applies `edit` to the configuration text, validates, persists and publishes.
    pub fn change(
        &self,
        edit: impl FnOnce(&mut DocumentMut) -> Result<(), EditError>,
    ) -> Result<Applied, ChangeError> {
        let mut st = self.lock();
        let result = self.change_locked(&mut st, edit);
        self.metrics.control_inc(match result {
            Ok(_) => ControlCounter::ConfigChanges,
            Err(_) => ControlCounter::ConfigChangesRejected,
        });
        result
    }

    fn change_locked(
        &self,
        st: &mut State,
        edit: impl FnOnce(&mut DocumentMut) -> Result<(), EditError>,
    ) -> Result<Applied, ChangeError> {
        if let Some(path) = &st.path {
            let now = fs::read_to_string(path)
                .map_err(|e| ChangeError::Io(format!("cannot read {}: {e}", path.display())))?;
            if st.disk.as_deref() != Some(now.as_str()) {
                return Err(ChangeError::Conflict(format!(
                    "{} was edited since it was loaded; reload it first (intertrunk ctl reload) \
                     so that the change is made on what is in the file",
                    path.display()
                )));
            }
        }
        let mut doc = st.doc.clone();
        edit(&mut doc).map_err(ChangeError::Edit)?;
        let text = doc.to_string();
        let table = build(&text).map_err(ChangeError::Invalid)?;
        if let Some(path) = &st.path {
            write_atomic(path, &text).map_err(|e| {
                ChangeError::Io(format!(
                    "cannot write {}: {e}; nothing was changed",
                    path.display()
                ))
            })?;
        }
        let generation = table.generation();
        self.live.publish(Arc::new(table));
        self.metrics.table_published();
        let persisted = st.path.is_some();
        st.disk = persisted.then(|| text.clone());
        st.doc = doc;
        Ok(Applied {
            persisted,
            generation,
        })
    }

    /// Re-reads the configuration file (SIGHUP, `POST /reload`). On any problem the table in
    /// force stays and every diagnostic is returned.
    pub fn reload(&self) -> Result<Applied, ChangeError> {
        let mut st = self.lock();
        let result = self.reload_locked(&mut st);
        self.metrics.control_inc(match result {
            Ok(_) => ControlCounter::Reloads,
            Err(_) => ControlCounter::ReloadsFailed,
        });
        result
    }

    fn reload_locked(&self, st: &mut State) -> Result<Applied, ChangeError> {
        let Some(path) = st.path.clone() else {
            return Err(ChangeError::Edit(EditError::Invalid(
                "no configuration file to reload: the relay runs on its built-in configuration"
                    .into(),
            )));
        };
        let text = fs::read_to_string(&path)
            .map_err(|e| ChangeError::Io(format!("cannot read {}: {e}", path.display())))?;
        let table = build(&text).map_err(ChangeError::Invalid)?;
        let doc = text
            .parse::<DocumentMut>()
            .map_err(|e| ChangeError::Invalid(vec![Diagnostic::new(None, None, e.to_string())]))?;
        let generation = table.generation();
        self.live.publish(Arc::new(table));
        self.metrics.table_published();
        st.doc = doc;
        st.disk = Some(text);
        Ok(Applied {
            persisted: true,
            generation,
        })
    }

    /// Reloads and logs the outcome (for SIGHUP, where nobody reads a response).
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(a) => tracing::info!(generation = a.generation, "configuration reloaded"),
            Err(ChangeError::Invalid(diags)) => {
                tracing::error!(
                    problems = diags.len(),
                    "configuration reload refused; the running table is kept"
                );
                for d in &diags {
                    tracing::error!("{d}");
                }
            }
            Err(e) => tracing::error!(
                "configuration reload refused; the running table is kept: {}",
                String::from_utf8_lossy(&e.response().body).trim()
            ),
        }
    }

    /// The configuration text in force.
    pub fn config_text(&self) -> String {
        self.lock().doc.to_string()
    }

    /// Answers one admin request.
    pub fn handle(&self, req: &Request) -> Response {
        self.metrics.control_inc(ControlCounter::AdminRequests);
        let segments: Option<Vec<String>> = req
            .path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let Some(segments) = segments else {
            return Response::error(400, "bad percent-encoding in the path");
        };
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let m = req.method.as_str();
        match (m, segs.as_slice()) {
            ("GET", []) => Response::json(
                200,
                &json!({
                    "resources": KINDS.iter().map(|k| format!("/{}", k.collection))
                        .chain(["/pstn-usages", "/test-intertrunk-routing", "/reload", "/calls",
                                "/metrics", "/config"].iter().map(|s| s.to_string()))
                        .collect::<Vec<_>>()
                }),
            ),
            ("GET", ["metrics"]) => Response::text(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            ("GET", ["calls"]) => {
                let calls = self.calls.calls();
                Response::json(200, &json!({"count": calls.len(), "calls": calls}))
            }
            ("GET", ["config"]) => {
                Response::text(200, "application/toml; charset=utf-8", self.config_text())
            }
            ("POST", ["reload"]) => match self.reload() {
                Ok(a) => Response::json(
                    200,
                    &json!({"message": "configuration reloaded and in force", "generation": a.generation}),
                ),
                Err(e) => e.response(),
            },
            ("POST", ["test-intertrunk-routing"]) => self.test_routing(&req.body),
            ("GET", ["pstn-usages"]) => Response::json(200, &self.usages()),
            ("PATCH" | "PUT", ["pstn-usages"]) => self.set_usages(&req.body),
            (_, ["metrics" | "calls" | "config" | "pstn-usages"])
            | (_, ["reload" | "test-intertrunk-routing"]) => {
                Response::error(405, format!("{m} is not allowed on {}", req.path))
            }
            (_, [collection, rest @ ..]) if rest.len() <= 1 => {
                match KINDS.iter().find(|k| k.collection == *collection) {
                    Some(kind) => self.object(kind, m, rest.first().copied(), &req.body),
                    None => Response::error(404, format!("no resource {}", req.path)),
                }
            }
            _ => Response::error(404, format!("no resource {}", req.path)),
        }
    }

    /// The objects of `array` in the configuration in force, as JSON with every default.
    fn items(&self, array: &str) -> Vec<Value> {
        let cfg = self.live.load().config().clone();
        match serde_json::to_value(&*cfg) {
            Ok(Value::Object(mut o)) => match o.remove(array) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn find(&self, kind: &Kind, identity: &str) -> Option<Value> {
        self.items(kind.array)
            .into_iter()
            .find(|v| v.get("identity").and_then(Value::as_str) == Some(identity))
    }

    fn object(&self, kind: &Kind, method: &str, identity: Option<&str>, body: &[u8]) -> Response {
        match (method, identity) {
            ("GET", None) => Response::json(200, &Value::Array(self.items(kind.array))),
            ("GET", Some(id)) => match self.find(kind, id) {
                Some(v) => Response::json(200, &v),
                None => Response::error(404, format!("{} '{id}' not found", kind.noun)),
            },
            ("POST", None) => {
                let fields = match body_object(body) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let mut created = String::new();
                let r = self.change(|doc| {
                    created = edit::create(doc, kind.array, kind.noun, &fields)?;
                    Ok(())
                });
                self.changed(kind, r, 201, &created, "created")
            }
            ("PATCH" | "PUT", Some(id)) => {
                let fields = match body_object(body) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let r = self.change(|doc| edit::set(doc, kind.array, kind.noun, id, &fields));
                self.changed(kind, r, 200, id, "changed")
            }
            ("DELETE", Some(id)) => {
                let r = self.change(|doc| edit::delete(doc, kind.array, kind.noun, id));
                self.changed(kind, r, 200, id, "removed")
            }
            _ => Response::error(
                405,
                format!(
                    "{method} is not allowed here: GET/POST /{c}, GET/PATCH/DELETE /{c}/IDENTITY",
                    c = kind.collection
                ),
            ),
        }
    }

    fn changed(
        &self,
        kind: &Kind,
        r: Result<Applied, ChangeError>,
        status: u16,
        identity: &str,
        verb: &str,
    ) -> Response {
        match r {
            Ok(a) => {
                let mut body = Map::new();
                if verb != "removed" {
                    if let Some(v) = self.find(kind, identity) {
                        body.insert("object".into(), v);
                    }
                }
                body.insert("persisted".into(), Value::Bool(a.persisted));
                body.insert("generation".into(), Value::from(a.generation));
                let message = if a.persisted {
                    format!(
                        "{} '{identity}' {verb}; in force and saved to the configuration file",
                        kind.noun
                    )
                } else {
                    format!("{} '{identity}' {verb}; {IN_MEMORY}", kind.noun)
                };
                body.insert("message".into(), Value::String(message));
                Response::json(status, &Value::Object(body))
            }
            Err(e) => e.response(),
        }
    }

    fn usages(&self) -> Value {
        let t = self.live.load();
        json!({"identity": "Global", "usage": t.config().voice.pstn_usages})
    }

    /// `{"usage": <modifier>}` (also `pstn_usages`), or a bare modifier object/array.
    fn set_usages(&self, body: &[u8]) -> Response {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Response::error(400, format!("the body is not JSON: {e}")),
        };
        let m = match &v {
            Value::Object(o)
                if o.len() == 1 && (o.contains_key("usage") || o.contains_key("pstn_usages")) =>
            {
                o.values().next().cloned().unwrap_or(Value::Null)
            }
            other => other.clone(),
        };
        let modifier = match ListModifier::from_json(&m) {
            Ok(modifier) => modifier,
            Err(e) => return Response::error(400, format!("usage: {e}")),
        };
        let mut fields = Map::new();
        fields.insert("pstn_usages".into(), modifier.to_json());
        match self.change(|doc| edit::set_table(doc, "voice", &fields)) {
            Ok(a) => {
                let mut body = self.usages();
                body["persisted"] = Value::Bool(a.persisted);
                body["generation"] = Value::from(a.generation);
                body["message"] = Value::String(if a.persisted {
                    "PSTN usages changed; in force and saved to the configuration file".into()
                } else {
                    format!("PSTN usages changed; {IN_MEMORY}")
                });
                Response::json(200, &body)
            }
            Err(e) => e.response(),
        }
    }

    fn test_routing(&self, body: &[u8]) -> Response {
        let fields = match body_object(body) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let get = |k: &str| fields.get(k).and_then(Value::as_str);
        let (Some(trunk), Some(number)) = (get("trunk"), get("target_number")) else {
            return Response::error(400, "give \"trunk\" and \"target_number\"");
        };
        // Visual separators, as a phone number is often written (the SIP path drops them too).
        let number: String = number
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        if number.is_empty() {
            return Response::error(400, "\"target_number\" is empty");
        }
        let calling = get("calling_number").unwrap_or("");
        let table = self.live.load();
        let Some(id) = table.trunk_by_identity(trunk) else {
            return Response::error(404, format!("trunk configuration '{trunk}' not found"));
        };
        let trace = table.explain(id, &number, calling);
        let result = match trace.outcome {
            Outcome::Route => match trace.candidates.first() {
                Some(c) => format!(
                    "routed: {} gateway{}, first {}",
                    trace.candidates.len(),
                    if trace.candidates.len() == 1 { "" } else { "s" },
                    c.gateway
                ),
                None => "routed".to_string(),
            },
            Outcome::NoRoute => format!(
                "{} Forbidden (Lync {}: none of the routes have a valid gateway)",
                trace.sip_status,
                trace.lync_diagnostic.unwrap_or(12004)
            ),
            Outcome::NoMatchingRule => format!(
                "{} Not Found (Lync {}: No matching rule)",
                trace.sip_status,
                trace.lync_diagnostic.unwrap_or(14010)
            ),
        };
        let mut v = serde_json::to_value(&trace).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut v {
            o.insert("result".into(), Value::String(result));
            o.insert("generation".into(), Value::from(table.generation()));
        }
        Response::json(200, &v)
    }
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Response::error(400, "the body must be a JSON object")),
        Err(e) => Err(Response::error(400, format!("the body is not JSON: {e}"))),
    }
}

/// Parses, validates and compiles a configuration text.
pub fn build(text: &str) -> Result<RouteTable, Vec<Diagnostic>> {
    let cfg = Config::from_toml(text)?;
    RouteTable::build(Arc::new(cfg))
}

/// Replaces `path` with `text` so that a crash leaves either the old or the new file: write a
/// temp file in the same directory, fsync it, rename it over, fsync the directory. The file's
/// permissions are kept; a symlink is followed so the link stays a link.
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        if let Ok(meta) = fs::metadata(&target) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
