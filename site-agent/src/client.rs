//! The site's side of the connection: dial out to the coordinator over mutual TLS, hold one
//! bidirectional stream, answer tasks, and reconnect with exponential backoff when the
//! stream or the network fails.

use std::sync::Arc;
use std::time::Duration;

use fedrad_shared::proto::federation_client::FederationClient;
use fedrad_shared::proto::{Heartbeat, SiteHello, SiteMessage, SitePolicy, coordinator_message, site_message};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::engine::SiteEngine;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("invalid coordinator address: {0}")]
    Address(String),
    #[error(transparent)]
    Tls(#[from] fedrad_shared::tls::TlsError),
    #[error("cannot connect to the coordinator: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("the coordinator refused or ended the session: {0}")]
    Status(#[from] tonic::Status),
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl SessionError {
    /// Errors that retrying cannot fix (bad config or certificate), as opposed to a
    /// coordinator that is down or restarting.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SessionError::Address(_) | SessionError::Tls(_))
            || matches!(self, SessionError::Status(s) if s.code() == tonic::Code::PermissionDenied)
    }
}

pub async fn channel(cfg: &crate::config::SiteConfig) -> Result<Channel, SessionError> {
    let mut endpoint = Endpoint::from_shared(cfg.coordinator.clone())
        .map_err(|e| SessionError::Address(format!("{}: {e}", cfg.coordinator)))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if let Some(tls) = &cfg.tls {
        if !cfg.insecure_plaintext {
            endpoint = endpoint
                .tls_config(fedrad_shared::tls::client_config(tls, &cfg.server_name())?)
                .map_err(|e| SessionError::Address(e.to_string()))?;
        }
    }
    endpoint.connect().await.map_err(SessionError::Connect)
}

/// One session: returns when the coordinator closes the stream or the connection fails.
pub async fn session(engine: Arc<SiteEngine>) -> Result<(), SessionError> {
    let cfg = &engine.config;
    let ch = channel(cfg).await?;
    let mut client = FederationClient::new(ch)
        .max_decoding_message_size(cfg.max_message_bytes)
        .max_encoding_message_size(cfg.max_message_bytes);
    let (tx, rx) = mpsc::channel::<SiteMessage>(64);
    let hello = SiteHello {
        protocol: fedrad_shared::PROTOCOL.into(),
        site_id: cfg.site_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        policy: Some(SitePolicy { min_count: cfg.policy.min_count, max_parameter_ratio: cfg.policy.max_parameter_ratio, min_sites: cfg.policy.min_sites }),
    };
    tx.send(SiteMessage { body: Some(site_message::Body::Hello(hello)) }).await.map_err(|_| SessionError::Protocol("stream closed".into()))?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    match inbound.message().await? {
        Some(m) if matches!(m.body, Some(coordinator_message::Body::Welcome(_))) => {
            tracing::info!(coordinator = %cfg.coordinator, "session established");
        }
        _ => return Err(SessionError::Protocol("the coordinator did not welcome this site".into())),
    }
    let heartbeat_tx = tx.clone();
    let heartbeat = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tick.tick().await;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            if heartbeat_tx.send(SiteMessage { body: Some(site_message::Body::Heartbeat(Heartbeat { unix_millis: now })) }).await.is_err() {
                break;
            }
        }
    });
    let result = loop {
        match inbound.message().await {
            Ok(Some(msg)) => {
                if let Some(coordinator_message::Body::Task(task)) = msg.body {
                    let engine = engine.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let reply = match tokio::task::spawn_blocking(move || engine.handle(&task)).await {
                            Ok(r) => r,
                            Err(e) => {
                                tracing::error!(error = %e, "task handler panicked");
                                return;
                            }
                        };
                        let _ = tx.send(SiteMessage { body: Some(site_message::Body::Reply(reply)) }).await;
                    });
                }
            }
            Ok(None) => break Ok(()),
            Err(status) => break Err(SessionError::Status(status)),
        }
    };
    heartbeat.abort();
    result
}

/// Keeps a session up until `shutdown` resolves: reconnects after any failure, waiting
/// 0.5 s, 1 s, 2 s … up to 30 s between attempts (reset after a session that worked).
pub async fn run(engine: Arc<SiteEngine>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = std::time::Instant::now();
        tokio::select! {
            _ = &mut shutdown => return,
            r = session(engine.clone()) => match r {
                Ok(()) => tracing::info!("the coordinator closed the session"),
                Err(e) if e.is_permanent() => tracing::error!(error = %e, "cannot take part until this is fixed; retrying"),
                Err(e) => tracing::warn!(error = %e, "session ended"),
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
