//! The FedRad coordinator: accepts site agents (which dial out to it) over mutual TLS, runs
//! a study's steps by sending aggregate tasks, and writes the results.

pub mod comparison;
pub mod config;
pub mod deep;
pub mod delay_line;
pub mod demo;
pub mod harmonisation;
pub mod held_out;
pub mod html;
pub mod hub;
pub mod journal;
pub mod model_size;
pub mod models;
pub mod receipts;
pub mod report;
pub mod selection;
pub mod study;
pub mod svg;

use std::net::SocketAddr;

use anyhow::Context;
use fedrad_shared::proto::federation_server::FederationServer;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

/// A coordinator listening for sites; dropping it (or calling `stop`) shuts the server down.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub hub: hub::Hub,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    /// Ends revoked sites' open sessions when the revocation list changes.
    revocation_watch: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Ends every site session (agents see a clean close and start reconnecting), then
    /// stops the server, waiting at most a few seconds for connections to drain.
    pub async fn stop(mut self) {
        if let Some(w) = self.revocation_watch.take() {
            w.abort();
        }
        self.hub.close_all();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(w) = self.revocation_watch.take() {
            w.abort();
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Binds `cfg.listen` (port 0 picks a free port) and serves the Federation service.
pub async fn start_server(cfg: &config::CoordinatorConfig) -> anyhow::Result<RunningServer> {
    fedrad_shared::tls::install_crypto_provider();
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)));
    let plaintext = cfg.insecure_plaintext && cfg.tls.is_none();
    if plaintext {
        tracing::warn!("INSECURE: serving plain TCP without TLS; sites are identified only by what they claim. Development only.");
    } else {
        let tls = cfg.tls.as_ref().context("[tls] is required")?;
        builder = builder.tls_config(fedrad_shared::tls::server_config(tls)?).context("TLS configuration")?;
    }
    let mut hub = hub::Hub::new(plaintext);
    if let Some(list) = &cfg.revoked {
        let revoked = fedrad_shared::identity::read_revocation_list(list).map_err(|e| anyhow::anyhow!(e))?;
        tracing::info!(list = %list.display(), revoked = revoked.len(), "site certificate revocation list");
        hub = hub.with_revocation_list(list.clone());
    }
    if let Some(list) = &cfg.issued {
        let issued = fedrad_shared::identity::read_issued_list(list).map_err(|e| anyhow::anyhow!(e))?;
        tracing::info!(list = %list.display(), keys = issued.len(), "keys issued to sites (only these are admitted)");
        hub = hub.with_issued_list(list.clone());
    }
    let service = FederationServer::new(hub.clone()).max_decoding_message_size(cfg.max_message_bytes).max_encoding_message_size(cfg.max_message_bytes);
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // Nagle's algorithm with delayed ACKs stalls every round trip of a task larger than one
    // segment by ~40 ms; tasks are request/response, so send at once.
    let incoming = tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |s| {
        s.inspect(|s| {
            if let Err(e) = s.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
        })
    });
    let task = tokio::spawn(builder.add_service(service).serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    }));
    tracing::info!(%addr, tls = !plaintext, "coordinator listening");
    let revocation_watch = hub.watch_revocations(std::time::Duration::from_secs(2));
    Ok(RunningServer { addr, hub, stop: Some(stop_tx), task, revocation_watch })
}

/// Progress bars on the terminal (hidden automatically when stderr is not a terminal).
pub struct TerminalProgress {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
}

impl Default for TerminalProgress {
    fn default() -> Self {
        TerminalProgress { multi: indicatif::MultiProgress::new(), bars: Default::default() }
    }
}

impl study::Progress for TerminalProgress {
    fn waiting(&self, connected: &[String], expected: &[String]) {
        let mut bars = self.bars.lock().unwrap();
        let bar = bars.entry("__wait".into()).or_insert_with(|| {
            let b = self.multi.add(indicatif::ProgressBar::new(expected.len() as u64));
            b.set_style(indicatif::ProgressStyle::with_template("{spinner} waiting for sites [{bar:20}] {pos}/{len} {msg}").unwrap());
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        let present = expected.iter().filter(|s| connected.contains(s)).count();
        bar.set_position(present as u64);
        let missing: Vec<&str> = expected.iter().filter(|s| !connected.contains(s)).map(|s| s.as_str()).collect();
        if missing.is_empty() {
            bar.finish_with_message("all connected");
        } else {
            bar.set_message(format!("missing: {}", missing.join(", ")));
        }
    }
    fn step_started(&self, step: &str, sites: usize) {
        let b = self.multi.add(indicatif::ProgressBar::new(sites as u64));
        b.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg:<16} [{bar:20}] {pos}/{len} sites answered ({elapsed})").unwrap());
        b.set_message(step.to_string());
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        self.bars.lock().unwrap().insert(step.into(), b);
    }
    fn site_answered(&self, step: &str, _site: &str) {
        if let Some(b) = self.bars.lock().unwrap().get(step) {
            b.inc(1);
        }
    }
    fn step_finished(&self, step: &str) {
        if let Some(b) = self.bars.lock().unwrap().get(step) {
            b.finish();
        }
    }
}
