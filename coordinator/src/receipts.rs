//! Receipts: one JSON line per reply the coordinator received, in
//! `<output_dir>/receipts/<site>.jsonl`. Each names the hash of the site's audit entry for
//! that reply (`TaskReply.audit_head`) and the digest of the reply, so the site's operator can
//! check later that the site's audit log still holds every answer it gave
//! (`site-agent audit verify --config site.toml --receipts <site>.jsonl`): a log whose tail was
//! deleted or which was rewritten no longer has the entries the receipts name.
//!
//! A line: `{"unix_millis":…,"study_id":…,"site":…,"task_id":…,"outcome":"aggregate"|"refusal"|"failure","audit_head":…,"reply_digest":…,"bytes":…}`.
//! `reply_digest` is the SHA-256 (hex) of the reply encoded without its `audit_head`, as the
//! site's entry records it; `bytes` is the reply's encoded size.

use std::io::Write;
use std::path::Path;

use fedrad_shared::proto::{TaskReply, task_reply};
use prost::Message;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub unix_millis: u64,
    pub study_id: String,
    pub site: String,
    pub task_id: String,
    pub outcome: String,
    pub audit_head: String,
    pub reply_digest: String,
    pub bytes: u64,
}

impl Receipt {
    pub fn of(study_id: &str, site: &str, reply: &TaskReply) -> Receipt {
        let outcome = match &reply.outcome {
            Some(task_reply::Outcome::Aggregate(_)) => "aggregate",
            Some(task_reply::Outcome::Refusal(_)) => "refusal",
            Some(task_reply::Outcome::Failure(_)) => "failure",
            None => "empty",
        };
        let bytes = reply.encoded_len() as u64;
        let mut headless = reply.clone();
        headless.audit_head.clear();
        Receipt {
            unix_millis: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            study_id: study_id.into(),
            site: site.into(),
            task_id: reply.task_id.clone(),
            outcome: outcome.into(),
            audit_head: reply.audit_head.clone(),
            reply_digest: fedrad_shared::digest::sha256_hex(&headless.encode_to_vec()),
            bytes,
        }
    }
}

/// Appends `r` to `<dir>/<site>.jsonl` (site ids are checked names, safe as file names).
pub fn append(dir: &Path, r: &Receipt) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut line = serde_json::to_string(r).expect("a receipt serialises");
    line.push('\n');
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{}.jsonl", r.site)))?;
    f.write_all(line.as_bytes())
}

/// Every receipt in a file.
pub fn read(path: &Path) -> std::io::Result<Vec<Receipt>> {
    let text = std::fs::read_to_string(path)?;
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedrad_shared::proto::Aggregate;

    #[test]
    fn the_digest_leaves_out_the_audit_head() {
        let reply = TaskReply {
            task_id: "t".into(),
            outcome: Some(task_reply::Outcome::Aggregate(Aggregate { patient_count: 9, tensors: vec![], masked: vec![] })),
            audit_head: "ab".repeat(32),
            signature: Vec::new(),
        };
        let r = Receipt::of("s", "hospital-a", &reply);
        let headless = TaskReply { audit_head: String::new(), ..reply.clone() };
        assert_eq!(r.reply_digest, fedrad_shared::digest::sha256_hex(&headless.encode_to_vec()));
        assert_eq!((r.audit_head.as_str(), r.outcome.as_str(), r.bytes), (reply.audit_head.as_str(), "aggregate", reply.encoded_len() as u64));
        let dir = std::env::temp_dir().join(format!("fedrad-receipts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        append(&dir, &r).unwrap();
        append(&dir, &r).unwrap();
        assert_eq!(read(&dir.join("hospital-a.jsonl")).unwrap(), vec![r.clone(), r]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
