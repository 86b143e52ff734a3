//! The round journal: every completed round's answers, written atomically to
//! `<output_dir>/journal/` as the round finishes. A coordinator restarted with `--resume`
//! replays the rounds it finds there instead of asking the sites again, and asks the sites
//! from the first round it has no answers for. The study is a deterministic function of the
//! answers, so a resumed run reaches exactly the state (and `results.json`) of an
//! undisturbed one.
//!
//! An entry is used only if the tasks of its round are byte-identical to the ones the
//! resumed run would send (SHA-256 over study, task id and every site's encoded task): a study
//! file changed between runs makes the rounds differ and they are asked again. The journal
//! holds aggregates only — what already left the sites — in the coordinator's output folder.

use std::collections::BTreeMap;
use std::path::PathBuf;

use fedrad_shared::aggregate::SiteAggregate;
use fedrad_shared::proto::{self, Aggregate, task};
use prost::Message;

pub struct Journal {
    dir: PathBuf,
    resume: bool,
}

impl Journal {
    /// Opens the journal; without `resume` an earlier run's entries are removed first.
    pub fn open(dir: PathBuf, resume: bool) -> std::io::Result<Self> {
        if !resume && dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Journal { dir, resume })
    }

    /// Identifies a round by everything that is sent in it: the study, its plan (which names
    /// the sites), the round and each site's task. A changed, re-approved plan thus replays
    /// nothing and never reuses a task id the sites answered under the earlier plan: each site
    /// keeps its ledgers per approved plan (`site-agent`'s `ledger`), so it must see every round
    /// of the new plan itself.
    pub fn round_digest(study_id: &str, plan_sha256: &str, task_id: &str, kinds: &BTreeMap<String, task::Kind>) -> String {
        let mut msg = Vec::new();
        for part in [study_id.as_bytes(), plan_sha256.as_bytes(), task_id.as_bytes()] {
            msg.extend_from_slice(&(part.len() as u64).to_le_bytes());
            msg.extend_from_slice(part);
        }
        for (site, kind) in kinds {
            let encoded = fedrad_shared::proto::Task { kind: Some(kind.clone()), ..Default::default() }.encode_to_vec();
            for part in [site.as_bytes(), encoded.as_slice()] {
                msg.extend_from_slice(&(part.len() as u64).to_le_bytes());
                msg.extend_from_slice(part);
            }
        }
        fedrad_shared::digest::sha256_hex(&msg)
    }

    fn path(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{task_id}.round"))
    }

    /// The recorded answers of a round, if resuming and recorded for exactly these tasks.
    pub fn replay(&self, task_id: &str, round_digest: &str) -> Option<Vec<SiteAggregate>> {
        if !self.resume {
            return None;
        }
        let bytes = std::fs::read(self.path(task_id)).ok()?;
        let (head, mut rest) = bytes.split_at_checked(65)?;
        if &head[..64] != round_digest.as_bytes() || head[64] != b'\n' {
            tracing::warn!(round = %task_id, "the journal holds this round for different tasks (settings or inputs changed); asking the sites again");
            return None;
        }
        let mut answers = Vec::new();
        let mut take = |n: usize| -> Option<&[u8]> {
            let (a, b) = rest.split_at_checked(n)?;
            rest = b;
            Some(a)
        };
        while let Some(len) = take(4) {
            let site = String::from_utf8(take(u32::from_le_bytes(len.try_into().ok()?) as usize)?.to_vec()).ok()?;
            let len = u64::from_le_bytes(take(8)?.try_into().ok()?) as usize;
            answers.push(SiteAggregate::new(site, Aggregate::decode(take(len)?).ok()?));
        }
        Some(answers)
    }

    fn signed_path(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{task_id}.signed"))
    }

    /// The recorded signed answers of a round (what [`Self::record_signed`] kept), if resuming
    /// and recorded for exactly these tasks.
    pub fn replay_signed(&self, task_id: &str, round_digest: &str) -> Option<Vec<proto::SignedAnswer>> {
        if !self.resume {
            return None;
        }
        let bytes = std::fs::read(self.signed_path(task_id)).ok()?;
        let (head, rest) = bytes.split_at_checked(65)?;
        if &head[..64] != round_digest.as_bytes() || head[64] != b'\n' {
            return None;
        }
        Some(proto::LassoRoundTask::decode(rest).ok()?.previous)
    }

    /// Records every site's signed answer to a round, for the next task to forward.
    pub fn record_signed(&self, task_id: &str, round_digest: &str, signed: &[proto::SignedAnswer]) -> std::io::Result<()> {
        let mut out = format!("{round_digest}\n").into_bytes();
        // Kept in the one message that holds a list of them.
        out.extend_from_slice(&proto::LassoRoundTask { previous: signed.to_vec(), ..Default::default() }.encode_to_vec());
        let path = self.signed_path(task_id);
        let tmp = path.with_extension("signed-tmp");
        std::fs::write(&tmp, &out)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(tmp, path)
    }

    /// Records a completed round (atomically: a crash leaves the old entry or none).
    pub fn record(&self, task_id: &str, round_digest: &str, answers: &[SiteAggregate]) -> std::io::Result<()> {
        let mut out = format!("{round_digest}\n").into_bytes();
        for a in answers {
            out.extend_from_slice(&(a.site_id.len() as u32).to_le_bytes());
            out.extend_from_slice(a.site_id.as_bytes());
            let agg = a.aggregate.encode_to_vec();
            out.extend_from_slice(&(agg.len() as u64).to_le_bytes());
            out.extend_from_slice(&agg);
        }
        let path = self.path(task_id);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &out)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(tmp, path)
    }
}
