//! The site's audit log: one JSON line per task answered, refused or failed — what left the
//! building, for whom and how much. Each entry carries the SHA-256 of the previous entry, so
//! an edited, inserted or deleted line breaks the chain (`site-agent audit verify`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use ring::digest::{SHA256, digest};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub unix_millis: u64,
    pub study_id: String,
    pub task_id: String,
    pub kind: String,
    /// SHA-256 of the task's encoded parameters.
    pub task_digest: String,
    /// "sent", "sent_from_cache", "refused" or "failed".
    pub outcome: String,
    pub patient_count: u64,
    pub bytes_sent: u64,
    /// SHA-256 of the reply as sent.
    pub reply_digest: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest(&SHA256, bytes).as_ref())
}

fn entry_hash(e: &AuditEntry) -> String {
    let mut unhashed = e.clone();
    unhashed.hash = String::new();
    sha256_hex(serde_json::to_string(&unhashed).expect("serialisable").as_bytes())
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub struct AuditLog {
    path: PathBuf,
    next_seq: u64,
    prev_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("audit log {path}, line {line}: {detail}")]
    Broken { path: PathBuf, line: usize, detail: String },
}

/// Reads and checks the whole chain; returns the entries.
pub fn verify(path: &Path) -> Result<Vec<AuditEntry>, AuditError> {
    let io = |source| AuditError::Io { path: path.into(), source };
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut prev = GENESIS.to_string();
    let mut entries = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io)?;
        let broken = |detail: String| AuditError::Broken { path: path.into(), line: i + 1, detail };
        let e: AuditEntry = serde_json::from_str(&line).map_err(|e| broken(format!("not an audit entry: {e}")))?;
        if e.seq != i as u64 {
            return Err(broken(format!("sequence number {} where {} was expected (a line was removed or inserted)", e.seq, i)));
        }
        if e.prev_hash != prev {
            return Err(broken("does not chain to the previous entry (a line was removed, inserted or edited)".into()));
        }
        if entry_hash(&e) != e.hash {
            return Err(broken("content does not match its hash (the line was edited)".into()));
        }
        prev = e.hash.clone();
        entries.push(e);
    }
    Ok(entries)
}

impl AuditLog {
    /// Opens (verifying) or creates the log.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let entries = verify(path)?;
        let (next_seq, prev_hash) = entries.last().map_or((0, GENESIS.to_string()), |e| (e.seq + 1, e.hash.clone()));
        Ok(AuditLog { path: path.into(), next_seq, prev_hash })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, mut e: AuditEntry) -> Result<AuditEntry, AuditError> {
        e.seq = self.next_seq;
        e.prev_hash = self.prev_hash.clone();
        e.hash = entry_hash(&e);
        let line = serde_json::to_string(&e).expect("serialisable");
        let io = |source| AuditError::Io { path: self.path.clone(), source };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
        writeln!(f, "{line}").map_err(io)?;
        f.sync_data().map_err(io)?;
        self.next_seq += 1;
        self.prev_hash = e.hash.clone();
        Ok(e)
    }
}
