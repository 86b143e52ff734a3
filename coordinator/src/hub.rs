//! The coordinator's end of the wire: accepts site sessions, checks who they are, and routes
//! tasks and replies. Transport only — what to ask and how to combine lives in the study
//! steps and in `fedrad_shared::algorithms`.
//!
//! Delivery: a task is sent on the site's current session. If that session drops before
//! the reply arrives, the same task (same id) is sent again as soon as the site reconnects,
//! until the task's deadline; the site answers a repeated id from its cache.
//!
//! Receipts: for a study whose receipts folder was set ([`Hub::journal_receipts`]), every reply
//! received is journaled there ([`crate::receipts`]) before it is handed to the study.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fedrad_shared::proto;
use fedrad_shared::proto::federation_server::Federation;
use fedrad_shared::proto::{CoordinatorMessage, SiteMessage, Task, TaskReply, Welcome, coordinator_message, site_message};
use prost::Message;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

type Outbound = mpsc::Sender<Result<CoordinatorMessage, Status>>;

struct Connection {
    id: u64,
    tx: Outbound,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<TaskReply>>>>,
    /// The disclosure policy the site published in its hello (what it will accept; it
    /// enforces it regardless).
    policy: proto::SitePolicy,
    /// SHA-256 of the site's certificate, to end the session if it is revoked.
    fingerprint: Option<String>,
}

/// Bytes and messages exchanged with one site, for the report's protocol accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    pub tasks: u64,
    pub bytes_to_site: u64,
    pub bytes_from_site: u64,
}

#[derive(Default)]
struct State {
    sites: HashMap<String, Connection>,
    traffic: HashMap<String, Traffic>,
    /// Each site's signed secure-sum key with its certificate key, from its latest hello
    /// (kept across disconnects: a round's tasks name every site's key).
    masking_keys: HashMap<String, proto::SiteMaskingKey>,
}

#[derive(Clone)]
pub struct Hub {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    next_id: Arc<AtomicU64>,
    /// Plaintext development mode: no certificates, so the hello's site id is trusted.
    trust_claimed_identity: bool,
    /// Revoked site certificates' fingerprints are read from here at each session start.
    revocation_list: Option<std::path::PathBuf>,
    /// The keys issued to each site; when set, no other key is admitted.
    issued_list: Option<std::path::PathBuf>,
    /// Where each study's receipts go, by study id.
    receipts: Arc<Mutex<HashMap<String, std::path::PathBuf>>>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TaskError {
    #[error("site {site} did not answer task {task} within {seconds} s")]
    Timeout { site: String, task: String, seconds: u64 },
}

impl Hub {
    /// Refuse sites whose certificate is on the list at `path` (checked at each session start).
    pub fn with_revocation_list(mut self, path: std::path::PathBuf) -> Self {
        self.revocation_list = Some(path);
        self
    }

    /// Admit only sites whose certificate key is listed for them at `path` (`pki/issued.txt`).
    pub fn with_issued_list(mut self, path: std::path::PathBuf) -> Self {
        self.issued_list = Some(path);
        self
    }

    pub fn new(trust_claimed_identity: bool) -> Self {
        Hub {
            issued_list: None,
            state: Default::default(),
            changed: Arc::new(Notify::new()),
            next_id: Arc::new(AtomicU64::new(1)),
            trust_claimed_identity,
            revocation_list: None,
            receipts: Default::default(),
        }
    }

    /// From now on, every reply to a task of `study_id` is journaled as a receipt in
    /// `dir/<site>.jsonl` (see [`crate::receipts`]).
    pub fn journal_receipts(&self, study_id: &str, dir: std::path::PathBuf) {
        self.receipts.lock().unwrap().insert(study_id.to_string(), dir);
    }

    fn write_receipt(&self, site: &str, study_id: &str, reply: &TaskReply) {
        let Some(dir) = self.receipts.lock().unwrap().get(study_id).cloned() else { return };
        let receipt = crate::receipts::Receipt::of(study_id, site, reply);
        if let Err(e) = crate::receipts::append(&dir, &receipt) {
            tracing::warn!(%site, task = %reply.task_id, error = %e, "could not journal the receipt of a reply");
        }
    }

    pub fn connected_sites(&self) -> Vec<String> {
        let mut v: Vec<String> = self.state.lock().unwrap().sites.keys().cloned().collect();
        v.sort();
        v
    }

    /// The disclosure policy `site` published in its hello (a missing policy reads as
    /// `min_count` 1, ratio 1 and `min_sites` 1: the site still enforces its own).
    pub fn policy(&self, site: &str) -> Option<proto::SitePolicy> {
        self.state.lock().unwrap().sites.get(site).map(|c| c.policy)
    }

    /// The fewest sites a study must have for `site` to take part, from its hello.
    pub fn min_sites(&self, site: &str) -> Option<u32> {
        self.policy(site).map(|p| p.min_sites)
    }

    /// Every site's secure-sum key for a round over `sites`, or the sites that sent none.
    pub fn secure_sum_directory(&self, sites: &[String]) -> Result<proto::SecureSum, Vec<String>> {
        let st = self.state.lock().unwrap();
        let missing: Vec<String> = sites.iter().filter(|s| !st.masking_keys.contains_key(*s)).cloned().collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        Ok(proto::SecureSum { sites: sites.iter().map(|s| st.masking_keys[s].clone()).collect() })
    }

    pub fn traffic(&self) -> HashMap<String, Traffic> {
        self.state.lock().unwrap().traffic.clone()
    }

    /// Waits until every site in `expected` is connected or `timeout` passes; returns the
    /// sites still missing. `on_change` sees the connected set whenever it changes.
    pub async fn wait_for_sites(&self, expected: &[String], timeout: Duration, on_change: &dyn Fn(&[String])) -> Result<(), Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let connected = self.connected_sites();
            on_change(&connected);
            let missing: Vec<String> = expected.iter().filter(|s| !connected.contains(s)).cloned().collect();
            if missing.is_empty() {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return Err(missing);
            }
        }
    }

    /// Sends `task` to `site` and waits for its reply, resending on reconnect, until `timeout`.
    pub async fn run_task(&self, site: &str, task: Task, timeout: Duration) -> Result<TaskReply, TaskError> {
        let deadline = Instant::now() + timeout;
        let task_bytes = task.encoded_len() as u64;
        let timed_out = || TaskError::Timeout { site: site.to_string(), task: task.task_id.clone(), seconds: timeout.as_secs() };
        loop {
            let notified = self.changed.notified();
            let attempt = {
                let mut st = self.state.lock().unwrap();
                st.sites
                    .get(site)
                    .map(|c| {
                        let (tx, rx) = oneshot::channel();
                        c.pending.lock().unwrap().insert(task.task_id.clone(), tx);
                        (c.tx.clone(), rx)
                    })
                    .inspect(|_| {
                        let t = st.traffic.entry(site.to_string()).or_default();
                        t.tasks += 1;
                        t.bytes_to_site += task_bytes;
                    })
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            match attempt {
                None => {
                    // Not connected: wait for a (re)connection.
                    if tokio::time::timeout(left, notified).await.is_err() {
                        return Err(timed_out());
                    }
                }
                Some((tx, rx)) => {
                    let msg = CoordinatorMessage { body: Some(coordinator_message::Body::Task(task.clone())) };
                    if tx.send(Ok(msg)).await.is_err() {
                        continue;
                    }
                    match tokio::time::timeout(left, rx).await {
                        Ok(Ok(reply)) => {
                            self.state.lock().unwrap().traffic.entry(site.to_string()).or_default().bytes_from_site += reply.encoded_len() as u64;
                            self.write_receipt(site, &task.study_id, &reply);
                            return Ok(reply);
                        }
                        // Session dropped with the task in flight: resend after reconnect.
                        Ok(Err(_)) => tracing::warn!(%site, task = %task.task_id, "session lost with a task in flight; will resend"),
                        Err(_) => return Err(timed_out()),
                    }
                }
            }
        }
    }

    /// Drops every session's sender, which ends the response streams cleanly.
    pub fn close_all(&self) {
        self.state.lock().unwrap().sites.clear();
        self.changed.notify_waiters();
    }

    /// Ends the open session of every site whose certificate is now on the revocation list,
    /// telling it why; returns those sites. A list that cannot be read ends nothing (new
    /// sessions are refused while it stays unreadable): a half-written line must not stop a
    /// running study.
    pub fn end_revoked_sessions(&self) -> Vec<String> {
        let Some(list) = &self.revocation_list else { return Vec::new() };
        let revoked = match fedrad_shared::identity::read_revocation_list(list) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "revocation list unreadable; open sessions kept, new ones refused");
                return Vec::new();
            }
        };
        let mut st = self.state.lock().unwrap();
        let ended: Vec<String> = st.sites.iter().filter(|(_, c)| c.fingerprint.as_ref().is_some_and(|f| revoked.contains(f))).map(|(s, _)| s.clone()).collect();
        for site in &ended {
            if let Some(c) = st.sites.remove(site) {
                // Replies still in flight from the revoked site are no longer awaited.
                c.pending.lock().unwrap().clear();
                let _ = c.tx.try_send(Err(Status::permission_denied(format!("the certificate of site {site} has been revoked"))));
                tracing::warn!(%site, "revoked site certificate: session ended");
            }
        }
        drop(st);
        if !ended.is_empty() {
            self.changed.notify_waiters();
        }
        ended
    }

    /// Watches the revocation list (every `every`) and ends revoked sessions when it changes.
    pub fn watch_revocations(&self, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let list = self.revocation_list.clone()?;
        let hub = self.clone();
        Some(tokio::spawn(async move {
            let stamp = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len()));
            let mut seen = stamp(&list);
            loop {
                tokio::time::sleep(every).await;
                let now = stamp(&list);
                if now != seen {
                    seen = now;
                    hub.end_revoked_sessions();
                }
            }
        }))
    }

    fn register(
        &self,
        site: &str,
        tx: Outbound,
        policy: proto::SitePolicy,
        fingerprint: Option<String>,
    ) -> (u64, Arc<Mutex<HashMap<String, oneshot::Sender<TaskReply>>>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let old = self.state.lock().unwrap().sites.insert(site.to_string(), Connection { id, tx, pending: pending.clone(), policy, fingerprint });
        if old.is_some() {
            tracing::info!(%site, "site reconnected; the previous session is replaced");
        } else {
            tracing::info!(%site, "site connected");
        }
        self.changed.notify_waiters();
        (id, pending)
    }

    fn unregister(&self, site: &str, id: u64) {
        let mut st = self.state.lock().unwrap();
        if st.sites.get(site).is_some_and(|c| c.id == id) {
            st.sites.remove(site);
            tracing::warn!(%site, "site disconnected");
        }
        drop(st);
        self.changed.notify_waiters();
    }
}

#[tonic::async_trait]
impl Federation for Hub {
    type SessionStream = ReceiverStream<Result<CoordinatorMessage, Status>>;

    async fn session(&self, request: Request<Streaming<SiteMessage>>) -> Result<Response<Self::SessionStream>, Status> {
        let peer_cert = request.peer_certs().and_then(|c| c.first().map(|c| c.as_ref().to_vec()));
        let remote = request.remote_addr();
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(Duration::from_secs(30), inbound.message()).await.map_err(|_| Status::deadline_exceeded("no hello within 30 s"))??;
        let hello = match first.and_then(|m| m.body) {
            Some(site_message::Body::Hello(h)) => h,
            _ => return Err(Status::invalid_argument("the first message of a session must be SiteHello")),
        };
        if hello.protocol != fedrad_shared::PROTOCOL {
            return Err(Status::failed_precondition(format!("protocol {:?} not supported; this coordinator speaks {}", hello.protocol, fedrad_shared::PROTOCOL)));
        }
        match (&peer_cert, self.trust_claimed_identity) {
            (Some(der), _) => fedrad_shared::identity::verify_site_certificate(der, &hello.site_id).map_err(|e| {
                tracing::warn!(?remote, claimed = %hello.site_id, error = %e, "site identity rejected");
                Status::permission_denied(e.to_string())
            })?,
            (None, true) => fedrad_shared::identity::validate_site_id(&hello.site_id).map_err(|e| Status::invalid_argument(e.to_string()))?,
            (None, false) => return Err(Status::unauthenticated("a client certificate from the study CA is required")),
        }
        if let (Some(der), Some(list)) = (&peer_cert, &self.revocation_list) {
            // A list that cannot be read refuses everyone: failing open would readmit the revoked.
            let revoked = fedrad_shared::identity::read_revocation_list(list).map_err(|e| {
                tracing::error!(error = %e, "revocation list unreadable; refusing sessions");
                Status::unavailable(e)
            })?;
            let key = fedrad_shared::identity::public_key_fingerprint(der).map_err(|e| Status::permission_denied(e.to_string()))?;
            if revoked.contains(&key) {
                tracing::warn!(?remote, site = %hello.site_id, "revoked site certificate refused");
                return Err(Status::permission_denied(format!("the certificate of site {} has been revoked", hello.site_id)));
            }
        }
        if let (Some(der), Some(list)) = (&peer_cert, &self.issued_list) {
            // Unreadable: refuse (failing open would admit any certificate the CA key signs).
            let issued = fedrad_shared::identity::read_issued_list(list).map_err(|e| {
                tracing::error!(error = %e, "list of issued keys unreadable; refusing sessions");
                Status::unavailable(e)
            })?;
            let key = fedrad_shared::identity::public_key_fingerprint(der).map_err(|e| Status::permission_denied(e.to_string()))?;
            if !issued.contains(&(key, hello.site_id.clone())) {
                tracing::warn!(?remote, site = %hello.site_id, "site certificate for a key this coordinator did not issue");
                return Err(Status::permission_denied(format!(
                    "the certificate of site {} is for a key this coordinator did not issue to it (not in {}); enrol and have the request signed with `coordinator certs sign`",
                    hello.site_id,
                    list.display()
                )));
            }
        }
        let site = hello.site_id.clone();
        let policy = hello.policy.map_or(proto::SitePolicy { min_count: 1, max_parameter_ratio: 1.0, min_sites: 1 }, |p| proto::SitePolicy {
            min_sites: p.min_sites.max(1),
            max_parameter_ratio: if p.max_parameter_ratio > 0.0 { p.max_parameter_ratio } else { 1.0 },
            ..p
        });
        let (tx, rx) = mpsc::channel(64);
        let welcome = Welcome { protocol: fedrad_shared::PROTOCOL.into(), coordinator_version: env!("CARGO_PKG_VERSION").into() };
        tx.send(Ok(CoordinatorMessage { body: Some(coordinator_message::Body::Welcome(welcome)) })).await.map_err(|_| Status::internal("stream closed"))?;
        let fingerprint = peer_cert.as_deref().and_then(|der| fedrad_shared::identity::public_key_fingerprint(der).ok());
        if let (Some(der), Some(key)) = (&peer_cert, hello.masking_key) {
            // Checked here so a bad key is found at connection, not at the first secure round;
            // every site checks it again against the key its plan pins.
            let spki = fedrad_shared::secure_sum::certificate_spki(der).map_err(|e| Status::permission_denied(e.to_string()))?;
            fedrad_shared::secure_sum::verify_signed_key(&site, &spki, &key).map_err(|e| Status::permission_denied(e.to_string()))?;
            let entry = proto::SiteMaskingKey { site_id: site.clone(), subject_public_key_info: spki, key: Some(key) };
            self.state.lock().unwrap().masking_keys.insert(site.clone(), entry);
        }
        let (id, pending) = self.register(&site, tx, policy, fingerprint);
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(SiteMessage { body: Some(site_message::Body::Reply(reply)) })) => {
                        let waiter = pending.lock().unwrap().remove(&reply.task_id);
                        match waiter {
                            Some(w) => {
                                let _ = w.send(reply);
                            }
                            None => tracing::debug!(%site, task = %reply.task_id, "reply to a task no longer awaited"),
                        }
                    }
                    Ok(Some(_)) => {} // heartbeats keep the stream alive
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%site, %status, "session stream error");
                        break;
                    }
                }
            }
            hub.unregister(&site, id);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
