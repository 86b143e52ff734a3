//! The site's side of the connection: dial out to the coordinator over mutual TLS, hold one
//! bidirectional stream, answer tasks, and reconnect with exponential backoff when the
//! stream or the network fails.

use std::sync::Arc;
use std::time::Duration;

use fedrad_shared::proto::federation_client::FederationClient;
use fedrad_shared::proto::{Heartbeat, SiteHello, SiteMessage, SitePolicy, TaskReply, coordinator_message, site_message};
use tokio::sync::{Semaphore, mpsc};
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
        matches!(self, SessionError::Address(_) | SessionError::Tls(_)) || matches!(self, SessionError::Status(s) if s.code() == tonic::Code::PermissionDenied)
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
    if let Some(tls) = &cfg.tls
        && !cfg.insecure_plaintext
    {
        endpoint = endpoint.tls_config(fedrad_shared::tls::client_config(tls, &cfg.server_name())?).map_err(|e| SessionError::Address(e.to_string()))?;
    }
    endpoint.connect().await.map_err(SessionError::Connect)
}

/// One session: returns when the coordinator closes the stream or the connection fails.
pub async fn session(engine: Arc<SiteEngine>) -> Result<(), SessionError> {
    let cfg = &engine.config;
    let ch = channel(cfg).await?;
    let mut client = FederationClient::new(ch).max_decoding_message_size(cfg.max_message_bytes).max_encoding_message_size(cfg.max_message_bytes);
    let (tx, rx) = mpsc::channel::<SiteMessage>(64);
    let hello = SiteHello {
        protocol: fedrad_shared::PROTOCOL.into(),
        site_id: cfg.site_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        policy: Some(SitePolicy { min_count: cfg.policy.min_count, max_parameter_ratio: cfg.policy.max_parameter_ratio, min_sites: cfg.policy.min_sites }),
        masking_key: engine.masking_key(),
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
                    let slots = engine.task_slots();
                    let engine = engine.clone();
                    spawn_bounded(slots, move || engine.handle(&task), tx.clone());
                }
            }
            Ok(None) => break Ok(()),
            Err(status) => break Err(SessionError::Status(status)),
        }
    };
    heartbeat.abort();
    result
}

/// Runs one task's `work` on a blocking thread once one of `slots` is free (the engine's
/// `policy.max_concurrent_tasks`; tasks beyond it wait here, holding no thread) and sends its
/// reply. The permit is the engine's, not the session's: tasks still running from a session
/// that dropped keep theirs.
pub(crate) fn spawn_bounded(slots: Arc<Semaphore>, work: impl FnOnce() -> TaskReply + Send + 'static, tx: mpsc::Sender<SiteMessage>) {
    tokio::spawn(async move {
        let Ok(_permit) = slots.acquire_owned().await else { return };
        let reply = match tokio::task::spawn_blocking(work).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "task handler panicked");
                return;
            }
        };
        let _ = tx.send(SiteMessage { body: Some(site_message::Body::Reply(reply)) }).await;
    });
}

/// Keeps a session up until `shutdown` resolves: reconnects after any failure, waiting
/// 0.5 s, 1 s, 2 s … up to 30 s between attempts (reset after a session that worked).
/// Days before a site certificate's end from which the agent warns at every start.
pub const CERTIFICATE_WARNING_DAYS: i64 = 30;

/// What a certificate that ends at `not_after` means at `now` (both Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateLifetime {
    Valid {
        days_left: i64,
    },
    /// Fewer than [`CERTIFICATE_WARNING_DAYS`] left: time to enrol again.
    EndsSoon {
        days_left: i64,
    },
    /// At or past its end: the agent does not start.
    Expired {
        days_ago: i64,
    },
}

pub fn certificate_lifetime(not_after: i64, now: i64) -> CertificateLifetime {
    if not_after <= now {
        return CertificateLifetime::Expired { days_ago: (now - not_after).div_euclid(86_400) };
    }
    let days_left = (not_after - now).div_euclid(86_400);
    if days_left < CERTIFICATE_WARNING_DAYS { CertificateLifetime::EndsSoon { days_left } } else { CertificateLifetime::Valid { days_left } }
}

/// Refuses to start on an expired site certificate (naming the date and what to do), and warns
/// when it ends within [`CERTIFICATE_WARNING_DAYS`]: a study must not stop mid-way because a
/// certificate ran out unnoticed. Returns the days left. Plaintext development setups have none.
pub fn check_certificate_lifetime(cfg: &crate::config::SiteConfig) -> Result<Option<i64>, CertificateLifetimeError> {
    let Some(tls) = &cfg.tls else { return Ok(None) };
    let pem = std::fs::read_to_string(&tls.cert).map_err(|e| CertificateLifetimeError(format!("cannot read {}: {e}", tls.cert.display())))?;
    let not_after = fedrad_shared::pki::certificate_not_after(&pem).map_err(|e| CertificateLifetimeError(format!("{}: {e}", tls.cert.display())))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    match certificate_lifetime(not_after, now) {
        CertificateLifetime::Expired { days_ago } => Err(CertificateLifetimeError(format!(
            "the site certificate {} expired {days_ago} day(s) ago; enrol again (`site-agent enroll`) and have the coordinator sign the new request",
            tls.cert.display()
        ))),
        CertificateLifetime::EndsSoon { days_left } => {
            tracing::warn!(days_left, cert = %tls.cert.display(), "the site certificate ends soon; enrol again and have the coordinator sign the new request");
            Ok(Some(days_left))
        }
        CertificateLifetime::Valid { days_left } => Ok(Some(days_left)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CertificateLifetimeError(String);

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Tasks beyond the bound wait for a slot: never more than `max_concurrent_tasks` run at
    /// once, and every task is still answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn tasks_beyond_the_bound_wait_for_a_slot() {
        for bound in [1usize, 2] {
            let slots = Arc::new(Semaphore::new(bound));
            let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let (tx, mut rx) = mpsc::channel(16);
            for i in 0..6 {
                let (running, most) = (running.clone(), most.clone());
                let work = move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(40));
                    running.fetch_sub(1, Ordering::SeqCst);
                    TaskReply { task_id: format!("t{i}"), ..Default::default() }
                };
                spawn_bounded(slots.clone(), work, tx.clone());
            }
            let mut answered = Vec::new();
            for _ in 0..6 {
                match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap().body {
                    Some(site_message::Body::Reply(r)) => answered.push(r.task_id),
                    other => panic!("{other:?}"),
                }
            }
            answered.sort();
            assert_eq!(answered, ["t0", "t1", "t2", "t3", "t4", "t5"]);
            assert_eq!(most.load(Ordering::SeqCst), bound, "at most {bound} tasks at once");
        }
    }
}

#[cfg(test)]
mod lifetime_tests {
    use super::*;

    #[test]
    fn an_expired_certificate_stops_the_agent_and_one_ending_within_30_days_warns() {
        let (now, day) = (1_800_000_000i64, 86_400i64);
        assert_eq!(certificate_lifetime(now - 3 * day - 5, now), CertificateLifetime::Expired { days_ago: 3 });
        assert_eq!(certificate_lifetime(now, now), CertificateLifetime::Expired { days_ago: 0 });
        assert_eq!(certificate_lifetime(now + 1, now), CertificateLifetime::EndsSoon { days_left: 0 });
        assert_eq!(certificate_lifetime(now + 29 * day + 10, now), CertificateLifetime::EndsSoon { days_left: 29 });
        assert_eq!(certificate_lifetime(now + 30 * day, now), CertificateLifetime::Valid { days_left: 30 });
    }
}
