//! The site's audit log: one JSON line per task answered, refused or failed — what left the
//! building, for whom and how much — and the tasks themselves, so a data-protection officer
//! can see afterwards exactly what the site was asked.
//!
//! Files, in the work directory:
//! - `audit.jsonl`: the entries. Each carries the SHA-256 of the previous entry (`prev_hash`)
//!   and of itself (`hash`), so an edited, inserted or deleted line breaks the chain. The first
//!   entry of a log chains to a random 32-byte nonce recorded in it (`genesis`), so two logs
//!   never share a chain; logs written by older agents start at an all-zero `prev_hash` and
//!   still verify.
//! - `audit/tasks/<task_digest>.pb`: the task as received (its prost encoding, a
//!   `fedrad.v1.Task`), written once and named by the SHA-256 the entry records
//!   (`task_digest`); entries whose task bytes are kept say so (`task_kept`).
//!
//! Every reply the site sends carries the hash of its entry (`TaskReply.audit_head`) and the
//! coordinator journals it as a receipt (`<output_dir>/receipts/<site>.jsonl`). A log whose
//! tail was deleted, or which was rewritten from some point on, still chains, but no longer
//! holds the entries the receipts name: `site-agent audit verify --receipts FILE` finds them
//! ([`check_receipts`]).
//!
//! Appends lock the file (`flock`, exclusive) and chain to the last entry in the file, read
//! from its tail, so several processes (the running agent and another) never fork the chain.

use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub unix_millis: u64,
    pub study_id: String,
    pub task_id: String,
    pub kind: String,
    /// SHA-256 of the task's encoded bytes (prost); with `task_kept`, those bytes are in
    /// `audit/tasks/<task_digest>.pb`.
    pub task_digest: String,
    /// The task's bytes are kept in `audit/tasks/<task_digest>.pb`. They are kept for every
    /// task of an approved study while the study is within its disk bound
    /// (`policy.max_study_disk_bytes`); not for tasks of other study ids (which are refused
    /// unread), nor for entries written by agents older than this field.
    #[serde(default, skip_serializing_if = "is_false")]
    pub task_kept: bool,
    /// "sent", "sent_from_cache", "refused" or "failed".
    pub outcome: String,
    /// The reply was masked for a secure sum (`fedrad_shared::secure_sum`): the coordinator
    /// can read only its sum with every other site's. Its patient count is the one the site
    /// computed (a masked reply carries it only inside the masked words; 0 when resent from the
    /// cache).
    #[serde(default, skip_serializing_if = "is_false")]
    pub secure_sum: bool,
    pub patient_count: u64,
    /// Size of the encoded reply as sent (its `audit_head` included).
    pub bytes_sent: u64,
    /// SHA-256 of the encoded reply as sent, but with its `audit_head` left empty: the head is
    /// this entry's own hash, so it cannot be part of what the entry hashes. The coordinator's
    /// receipts record the same digest.
    pub reply_digest: String,
    pub detail: String,
    /// In the first entry of a log: the random nonce (64 hex digits) its `prev_hash` chains to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub genesis: String,
    pub prev_hash: String,
    pub hash: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

pub use fedrad_shared::digest::{hex, sha256_hex};

fn entry_hash(e: &AuditEntry) -> String {
    let mut unhashed = e.clone();
    unhashed.hash = String::new();
    sha256_hex(serde_json::to_string(&unhashed).expect("serialisable").as_bytes())
}

/// Where logs written before `genesis` existed start.
const LEGACY_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The folder of the kept task bytes beside the log at `log`: `<work_dir>/audit/tasks`.
pub fn tasks_dir(log: &Path) -> PathBuf {
    log.with_file_name("audit").join("tasks")
}

/// The file the bytes of the task with this digest are kept in.
pub fn task_file(log: &Path, task_digest: &str) -> PathBuf {
    tasks_dir(log).join(format!("{task_digest}.pb"))
}

pub struct AuditLog {
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("audit log {path}, line {line}: {detail}")]
    Broken { path: PathBuf, line: usize, detail: String },
    #[error("audit log {path}: {detail}")]
    Tail { path: PathBuf, detail: String },
    #[error("kept task {path}: {detail}")]
    TaskFile { path: PathBuf, detail: String },
    #[error("receipts {path}, line {line}: {detail}")]
    Receipt { path: PathBuf, line: usize, detail: String },
}

/// Reads and checks the whole chain; returns the entries.
pub fn verify(path: &Path) -> Result<Vec<AuditEntry>, AuditError> {
    let io = |source| AuditError::Io { path: path.into(), source };
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    // A shared lock: an append in progress (which holds the exclusive one) is never read half-written.
    lock(&f, libc::LOCK_SH).map_err(io)?;
    let mut prev = String::new();
    let mut entries = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io)?;
        let broken = |detail: String| AuditError::Broken { path: path.into(), line: i + 1, detail };
        let e: AuditEntry = serde_json::from_str(&line).map_err(|e| broken(format!("not an audit entry: {e}")))?;
        if e.seq != i as u64 {
            return Err(broken(format!("sequence number {} where {} was expected (a line was removed or inserted)", e.seq, i)));
        }
        if i == 0 {
            prev = match e.genesis.as_str() {
                "" => LEGACY_GENESIS.to_string(),
                g if is_hex64(g) => g.to_string(),
                _ => return Err(broken("the genesis nonce is not 64 hexadecimal digits".into())),
            };
        } else if !e.genesis.is_empty() {
            return Err(broken("a second genesis inside the log (another log was appended or the start was removed)".into()));
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

/// What [`verify_task_files`] found in `audit/tasks/`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFiles {
    /// Files that hash to their names.
    pub checked: usize,
    /// Digests of tasks whose entries say they were kept, with no file (a warning: the log's
    /// chain is intact, but what was asked can no longer be shown).
    pub missing: Vec<String>,
    /// Entries whose task bytes were not kept (see [`AuditEntry::task_kept`]).
    pub not_kept: usize,
}

/// Checks that every kept task file hashes to its name (an error otherwise) and counts the
/// entries whose kept task is missing.
pub fn verify_task_files(log: &Path, entries: &[AuditEntry]) -> Result<TaskFiles, AuditError> {
    let dir = tasks_dir(log);
    let mut out = TaskFiles::default();
    match std::fs::read_dir(&dir) {
        Ok(list) => {
            let mut paths: Vec<PathBuf> = list.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "pb")).collect();
            paths.sort();
            for p in paths {
                let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
                let bytes = std::fs::read(&p).map_err(|source| AuditError::Io { path: p.clone(), source })?;
                let actual = sha256_hex(&bytes);
                if actual != name {
                    return Err(AuditError::TaskFile { path: p, detail: format!("its bytes hash to {actual}, not to its name (the file was edited or replaced)") });
                }
                out.checked += 1;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(AuditError::Io { path: dir, source }),
    }
    let mut missing = std::collections::BTreeSet::new();
    for e in entries {
        if !e.task_kept {
            out.not_kept += 1;
        } else if !dir.join(format!("{}.pb", e.task_digest)).exists() {
            missing.insert(e.task_digest.clone());
        }
    }
    out.missing = missing.into_iter().collect();
    Ok(out)
}

/// One reply as the coordinator received it (a line of `<output_dir>/receipts/<site>.jsonl`;
/// other fields of the line are ignored here).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub task_id: String,
    /// The hash of the site's audit entry for this reply (`TaskReply.audit_head`).
    pub audit_head: String,
    /// SHA-256 of the reply without its `audit_head`, as [`AuditEntry::reply_digest`].
    #[serde(default)]
    pub reply_digest: String,
}

/// Reads a receipts file: one JSON object per line.
pub fn read_receipts(path: &Path) -> Result<Vec<Receipt>, AuditError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io { path: path.into(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| AuditError::Receipt { path: path.into(), line: i + 1, detail: format!("not a receipt: {e}") }))
        .collect()
}

/// Every receipt that does not name an entry of `entries` (the verified chain) for the same
/// task and reply, described. Empty when the log holds everything the coordinator received.
pub fn check_receipts(entries: &[AuditEntry], receipts: &[Receipt]) -> Vec<String> {
    let by_hash: std::collections::HashMap<&str, &AuditEntry> = entries.iter().map(|e| (e.hash.as_str(), e)).collect();
    let mut problems = Vec::new();
    for r in receipts {
        if r.audit_head.is_empty() {
            problems.push(format!("task {}: the reply carried no audit head (an agent older than receipts)", r.task_id));
            continue;
        }
        match by_hash.get(r.audit_head.as_str()) {
            None => problems.push(format!("task {}: entry {} is not in the log (the log was truncated or rewritten after it)", r.task_id, r.audit_head)),
            Some(e) if e.task_id != r.task_id => problems.push(format!("task {}: entry {} (#{}) is for task {}", r.task_id, r.audit_head, e.seq, e.task_id)),
            Some(e) if !r.reply_digest.is_empty() && e.reply_digest != r.reply_digest => problems
                .push(format!("task {}: entry {} (#{}) records reply {}, the coordinator received {}", r.task_id, r.audit_head, e.seq, e.reply_digest, r.reply_digest)),
            Some(_) => {}
        }
    }
    problems
}

/// Takes a `flock` (`LOCK_EX` or `LOCK_SH`) on `f` until it is closed.
fn lock(f: &std::fs::File, how: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a file descriptor the caller keeps open.
        if unsafe { libc::flock(f.as_raw_fd(), how) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The last entry of the log open in `f`, read from the file's tail only.
fn last_entry(f: &mut std::fs::File, path: &Path) -> Result<Option<AuditEntry>, AuditError> {
    let io = |source| AuditError::Io { path: path.into(), source };
    let len = f.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut chunk = 4096u64;
    loop {
        let start = len.saturating_sub(chunk);
        f.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut buf = vec![0; (len - start) as usize];
        f.read_exact(&mut buf).map_err(io)?;
        if buf.last() != Some(&b'\n') {
            return Err(AuditError::Tail {
                path: path.into(),
                detail: "the last line is incomplete (a write was interrupted); `site-agent audit verify` shows where".into(),
            });
        }
        let body = &buf[..buf.len() - 1];
        let line = match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => &body[i + 1..],
            None if start == 0 => body,
            None => {
                chunk *= 4;
                continue;
            }
        };
        let e: AuditEntry =
            serde_json::from_slice(line).map_err(|e| AuditError::Tail { path: path.into(), detail: format!("the last line is not an audit entry: {e}") })?;
        return Ok(Some(e));
    }
}

fn random_nonce() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("the system's random number generator");
    hex(&bytes)
}

impl AuditLog {
    /// Opens (verifying the whole chain) or creates the log.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        verify(path)?;
        Ok(AuditLog { path: path.into() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the bytes of a task in `audit/tasks/<sha256>.pb` (written once); returns whether
    /// the file was written now (false: it was already there).
    pub fn keep_task(&self, task_digest: &str, bytes: &[u8]) -> Result<bool, AuditError> {
        let p = task_file(&self.path, task_digest);
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64) {
            return Ok(false);
        }
        crate::engine::write_atomic(&p, bytes).map_err(|source| AuditError::Io { path: p, source })?;
        Ok(true)
    }

    /// Appends `e` (its `seq`, `genesis`, `prev_hash` and `hash` are set here) after the last
    /// entry in the file, holding an exclusive lock on it, and syncs it to disk.
    pub fn append(&self, mut e: AuditEntry) -> Result<AuditEntry, AuditError> {
        let io = |source| AuditError::Io { path: self.path.clone(), source };
        let mut f = std::fs::OpenOptions::new().read(true).append(true).create(true).open(&self.path).map_err(io)?;
        lock(&f, libc::LOCK_EX).map_err(io)?;
        match last_entry(&mut f, &self.path)? {
            Some(last) => {
                e.seq = last.seq + 1;
                e.genesis = String::new();
                e.prev_hash = last.hash;
            }
            None => {
                e.seq = 0;
                e.genesis = random_nonce();
                e.prev_hash = e.genesis.clone();
            }
        }
        e.hash = entry_hash(&e);
        let mut line = serde_json::to_string(&e).expect("serialisable");
        line.push('\n');
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        Ok(e)
    }
}

/// `unix_millis` as `YYYY-MM-DD hh:mm:ss UTC`.
pub fn utc(unix_millis: u64) -> String {
    let secs = unix_millis / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The report `site-agent audit report --study S` prints for the site's IT and its
/// data-protection officer: per task kind, in order, every aggregate released (over how many
/// patients, how many bytes, when), every refusal and failure with its reason, totals, and
/// where the tasks' bytes are.
///
/// `min_count` is this agent's policy, which sets the smallest group its histograms release.
pub fn report(site_id: &str, log: &Path, entries: &[AuditEntry], study_id: &str, min_count: u64) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    let mine: Vec<&AuditEntry> = entries.iter().filter(|e| e.study_id == study_id).collect();
    let mut o = String::new();
    let _ = writeln!(o, "Audit report: study {study_id} at site {site_id}");
    let _ = writeln!(o, "Audit log: {} ({} entries in all, {} for this study; chain verified)", log.display(), entries.len(), mine.len());
    if mine.is_empty() {
        let _ = writeln!(o, "\nThis site has no entry for study {study_id}: nothing was sent or refused for it.");
        return o;
    }
    let (first, last) = (mine[0], mine[mine.len() - 1]);
    let _ = writeln!(o, "Period: {} to {} (entries #{} to #{})", utc(first.unix_millis), utc(last.unix_millis), first.seq, last.seq);
    let kept = mine.iter().filter(|e| e.task_kept).count();
    let _ = writeln!(
        o,
        "Tasks as received: {}/<task digest>.pb, prost-encoded fedrad.v1.Task ({kept} of {} entries have their task kept)",
        tasks_dir(log).display(),
        mine.len()
    );
    let _ = writeln!(
        o,
        "Histograms (score, paired_scores, table1, value_histogram, rank_histogram): on the study plan's grids, with small cells merged per population into groups of at least {min_count} patients (this agent's min_count), each released as its count, mean and SD (no Brier or calibration sums: the coordinator computes them from the histograms); tree_round bins are not merged (a node or its sibling with 1 to {} patients is withheld instead). Per-aggregate resolution: the task's bytes.",
        min_count.saturating_sub(1)
    );

    let mut kinds: Vec<&str> = Vec::new();
    for e in &mine {
        if !kinds.contains(&e.kind.as_str()) {
            kinds.push(&e.kind);
        }
    }
    let _ = writeln!(o, "\nAggregates released, by task kind in order of first use:");
    let mut totals: BTreeMap<&str, (u64, u64, u64, u64)> = BTreeMap::new(); // sent, from cache, bytes, refused+failed
    let mut any = false;
    for kind in &kinds {
        let sent: Vec<&&AuditEntry> = mine.iter().filter(|e| e.kind == *kind && e.outcome.starts_with("sent")).collect();
        if sent.is_empty() {
            continue;
        }
        any = true;
        let bytes: u64 = sent.iter().map(|e| e.bytes_sent).sum();
        let masked = sent.iter().filter(|e| e.secure_sum).count();
        let how = match masked {
            0 => String::new(),
            m if m == sent.len() => ", all masked for a secure sum: the coordinator read only their sums with the other sites'".to_string(),
            m => format!(", {m} masked for a secure sum"),
        };
        let _ = writeln!(o, "  {kind} ({} released, {bytes} bytes{how})", sent.len());
        for e in &sent {
            let again = if e.outcome == "sent_from_cache" { "  (resent from the cache)" } else { "" };
            let again = if e.secure_sum { format!("{again}  (masked)") } else { again.to_string() };
            let _ = writeln!(
                o,
                "    #{:<6} {}  task {}  over {} patients  {} bytes  task bytes {}{again}",
                e.seq,
                utc(e.unix_millis),
                e.task_id,
                e.patient_count,
                e.bytes_sent,
                if e.task_kept { format!("{}.pb", e.task_digest) } else { "not kept".into() },
            );
        }
    }
    if !any {
        let _ = writeln!(o, "  none");
    }
    for e in &mine {
        let t = totals.entry(&e.kind).or_default();
        match e.outcome.as_str() {
            "sent" => {
                t.0 += 1;
                t.2 += e.bytes_sent;
            }
            "sent_from_cache" => {
                t.1 += 1;
                t.2 += e.bytes_sent;
            }
            _ => t.3 += 1,
        }
    }
    for (title, outcome) in [("Refusals", "refused"), ("Failures", "failed")] {
        let these: Vec<&&AuditEntry> = mine.iter().filter(|e| e.outcome == outcome).collect();
        let _ = writeln!(o, "\n{title} ({}):", these.len());
        if these.is_empty() {
            let _ = writeln!(o, "  none");
        }
        for e in these {
            let _ = writeln!(o, "  #{:<6} {}  {}  task {}  {} bytes sent  reason: {}", e.seq, utc(e.unix_millis), e.kind, e.task_id, e.bytes_sent, e.detail);
        }
    }
    let _ = writeln!(o, "\nTotals by task kind:");
    let _ = writeln!(o, "  {:<18} {:>8} {:>10} {:>14} {:>16}", "kind", "released", "from cache", "bytes sent", "refused/failed");
    for kind in &kinds {
        let t = totals[kind];
        let _ = writeln!(o, "  {:<18} {:>8} {:>10} {:>14} {:>16}", kind, t.0, t.1, t.2, t.3);
    }
    let sum = totals.values().fold((0, 0, 0, 0), |a, t| (a.0 + t.0, a.1 + t.1, a.2 + t.2, a.3 + t.3));
    let refused = mine.iter().filter(|e| e.outcome == "refused").count();
    let failed = mine.iter().filter(|e| e.outcome == "failed").count();
    let _ = writeln!(o, "  {:<18} {:>8} {:>10} {:>14} {:>16}", "all", sum.0, sum.1, sum.2, sum.3);
    let _ = writeln!(
        o,
        "\n{} aggregates released ({} of them resent from the cache), {} bytes sent in all (refusals and failures included); {refused} refused, {failed} failed.",
        sum.0 + sum.1,
        sum.1,
        sum.2
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fedrad-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn entry(task: &str) -> AuditEntry {
        AuditEntry { study_id: "s".into(), task_id: task.into(), kind: "cohort_summary".into(), outcome: "sent".into(), ..Default::default() }
    }

    #[test]
    fn a_new_log_chains_to_a_random_genesis_recorded_in_its_first_entry() {
        let d = temp("genesis");
        let (a, b) = (AuditLog::open(&d.join("a.jsonl")).unwrap(), AuditLog::open(&d.join("b.jsonl")).unwrap());
        let a0 = a.append(entry("t1")).unwrap();
        let b0 = b.append(entry("t1")).unwrap();
        assert!(is_hex64(&a0.genesis) && a0.genesis != LEGACY_GENESIS);
        assert_eq!(a0.prev_hash, a0.genesis);
        assert_ne!(a0.genesis, b0.genesis, "two logs never share a chain");
        let a1 = a.append(entry("t2")).unwrap();
        assert_eq!((a1.seq, a1.prev_hash.as_str(), a1.genesis.as_str()), (1, a0.hash.as_str(), ""));
        assert_eq!(verify(&d.join("a.jsonl")).unwrap(), vec![a0.clone(), a1]);
        // The genesis is part of the first entry's hash: another nonce does not verify.
        let text = std::fs::read_to_string(d.join("a.jsonl")).unwrap();
        std::fs::write(d.join("a.jsonl"), text.replace(&a0.genesis, &"1".repeat(64))).unwrap();
        assert!(verify(&d.join("a.jsonl")).is_err());
        // Removing the first entry breaks the chain too.
        let text = std::fs::read_to_string(d.join("b.jsonl")).unwrap();
        b.append(entry("t2")).unwrap();
        let full = std::fs::read_to_string(d.join("b.jsonl")).unwrap();
        std::fs::write(d.join("b.jsonl"), &full[text.len()..]).unwrap();
        assert!(verify(&d.join("b.jsonl")).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn logs_of_older_agents_with_the_all_zero_genesis_still_verify_and_grow() {
        let d = temp("legacy");
        let path = d.join("audit.jsonl");
        // An entry exactly as the previous agent version wrote it (no genesis, no task_kept).
        let mut old = entry("t1");
        old.prev_hash = LEGACY_GENESIS.into();
        old.task_digest = "ab".repeat(32);
        old.hash = entry_hash(&old);
        let line = serde_json::to_string(&old).unwrap();
        assert!(!line.contains("genesis") && !line.contains("task_kept"), "{line}");
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let log = AuditLog::open(&path).unwrap();
        let next = log.append(entry("t2")).unwrap();
        assert_eq!((next.seq, next.prev_hash.as_str()), (1, old.hash.as_str()));
        assert_eq!(verify(&path).unwrap().len(), 2);
        let tasks = verify_task_files(&path, &verify(&path).unwrap()).unwrap();
        assert_eq!((tasks.checked, tasks.missing.len(), tasks.not_kept), (0, 0, 2));
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Several writers that share nothing but the file (as a running agent and another
    /// process do) append to one chain: each takes the file lock and chains to the last
    /// entry in the file, not to what it remembers.
    #[test]
    fn writers_in_separate_handles_never_fork_the_chain() {
        let d = temp("writers");
        let path = d.join("audit.jsonl");
        std::thread::scope(|s| {
            for w in 0..4 {
                let path = path.clone();
                s.spawn(move || {
                    let log = AuditLog { path };
                    for i in 0..40 {
                        log.append(entry(&format!("w{w}-{i}"))).unwrap();
                    }
                });
            }
        });
        let entries = verify(&path).unwrap();
        assert_eq!(entries.len(), 160);
        assert_eq!(entries.iter().filter(|e| !e.genesis.is_empty()).count(), 1);
        // A stale handle (opened at the start) still appends to the end of the chain.
        let stale = AuditLog { path: path.clone() };
        let e = stale.append(entry("late")).unwrap();
        assert_eq!((e.seq, e.prev_hash.as_str()), (160, entries[159].hash.as_str()));
        // The tail is read in chunks: a last line longer than one chunk is found whole.
        let mut long = entry("long");
        long.detail = "x".repeat(20_000);
        stale.append(long).unwrap();
        assert_eq!(stale.append(entry("after-long")).unwrap().seq, 162);
        assert_eq!(verify(&path).unwrap().len(), 163);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_interrupted_last_line_stops_appends() {
        let d = temp("partial");
        let path = d.join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.append(entry("t1")).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":1,").unwrap();
        assert!(matches!(log.append(entry("t2")), Err(AuditError::Tail { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn kept_tasks_must_hash_to_their_names_and_missing_ones_are_counted() {
        let d = temp("tasks");
        let path = d.join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let (t1, t2) = (b"first task".to_vec(), b"second task".to_vec());
        for t in [&t1, &t2] {
            assert!(log.keep_task(&sha256_hex(t), t).unwrap());
            assert!(!log.keep_task(&sha256_hex(t), t).unwrap(), "written once");
            log.append(AuditEntry { task_digest: sha256_hex(t), task_kept: true, ..entry("t") }).unwrap();
        }
        log.append(entry("unkept")).unwrap();
        let entries = verify(&path).unwrap();
        assert_eq!(verify_task_files(&path, &entries).unwrap(), TaskFiles { checked: 2, missing: vec![], not_kept: 1 });
        std::fs::remove_file(task_file(&path, &sha256_hex(&t1))).unwrap();
        assert_eq!(verify_task_files(&path, &entries).unwrap().missing, vec![sha256_hex(&t1)]);
        std::fs::write(task_file(&path, &sha256_hex(&t2)), b"edited task").unwrap();
        assert!(matches!(verify_task_files(&path, &entries), Err(AuditError::TaskFile { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_798_761_599_000), "2026-12-31 23:59:59 UTC");
    }
}
