//! The control plane: command line, admin HTTP API, `/metrics`, hot reload.
//!
//! [`spawn`] starts it beside the workers: the admin HTTP server on `admin_listen` and a
//! SIGHUP watcher, both feeding one [`api::Api`] that serializes every change and publishes
//! each new routing table with one swap of the [`LiveTable`].

pub mod api;
pub mod calls;
pub mod cli;
pub mod ctl;
pub mod edit;
pub mod http;
pub mod metrics;
pub mod modifier;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::route::LiveTable;
use api::Api;
use calls::CallRegistry;
use metrics::Metrics;

/// The running control plane; [`ControlHandle::shutdown`] stops it.
pub struct ControlHandle {
    api: Arc<Api>,
    server: http::Server,
    signals: signal_hook::iterator::Handle,
    signal_thread: Option<JoinHandle<()>>,
}

impl ControlHandle {
    /// Where the admin API listens (the bound port when `admin_listen` had port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The API itself (changes and reloads without HTTP).
    pub fn api(&self) -> &Arc<Api> {
        &self.api
    }

    /// Stops the admin server and the SIGHUP watcher.
    pub fn shutdown(mut self) {
        self.server.stop();
        self.signals.close();
        if let Some(t) = self.signal_thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the control plane on the configuration's `admin_listen`.
///
/// `config_path` is the file the relay was started with (None: the built-in configuration;
/// changes then apply in memory only). SIGHUP re-reads the file; a file that fails validation
/// leaves the table in force and logs every diagnostic.
pub fn spawn(
    live: LiveTable,
    config_path: Option<PathBuf>,
    metrics: Arc<Metrics>,
    calls: Arc<dyn CallRegistry>,
) -> io::Result<ControlHandle> {
    let admin = live.load().config().server.admin_listen;
    spawn_at(admin, live, config_path, metrics, calls)
}

/// [`spawn`] on an explicit admin address (tests use port 0).
pub fn spawn_at(
    admin: SocketAddr,
    live: LiveTable,
    config_path: Option<PathBuf>,
    metrics: Arc<Metrics>,
    calls: Arc<dyn CallRegistry>,
) -> io::Result<ControlHandle> {
    let api = Arc::new(Api::new(live, config_path, metrics, calls)?);
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    let signals_handle = signals.handle();
    let api2 = api.clone();
    let signal_thread = std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                tracing::info!("SIGHUP: reloading the configuration file");
                api2.reload_logged();
            }
        })?;
    let api3 = api.clone();
    let handler: http::Handler = Arc::new(move |req: &http::Request| api3.handle(req));
    let server = match http::Server::start(admin, http::Limits::default(), handler) {
        Ok(s) => s,
        Err(e) => {
            signals_handle.close();
            let _ = signal_thread.join();
            return Err(io::Error::new(
                e.kind(),
                format!("admin API cannot listen on {admin}: {e}"),
            ));
        }
    };
    tracing::info!(%admin, "admin API listening");
    Ok(ControlHandle {
        api,
        server,
        signals: signals_handle,
        signal_thread: Some(signal_thread),
    })
}
