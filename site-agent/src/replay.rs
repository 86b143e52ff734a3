//! Recomputation: this site answers a LASSO point, a classifier fit's point, a tree round or
//! an encoder round (and embeds) only if the study's own solver, fed the sums of every site's
//! signed answers to the run so far, asks for it (`fedrad_shared::algorithms::lasso::LassoReplica`,
//! `classifiers::FitReplica`, `trees::TreeReplica`, `fedavg::EncoderReplica`; issue 17,
//! property 2).
//!
//! A run is a sequence of tasks over one set of inputs: a LASSO run (its `lasso_round` tasks
//! and its `cv_loss` task, on one feature table), a classifier fit (its `classifier_round`
//! tasks on one design, objective family, penalty and population; an SVM fit's Platt rounds
//! belong to it), a tree ensemble (its `tree_round` tasks on one design and objective), or an
//! encoder training (a sequence's `encoder_round` tasks, then its `embed` task).
//! Its first task carries no answers — except a tree ensemble's, which carries the answers to
//! the design's value-count task it opens from (its bin edges come from their sum); each later
//! task carries every participating site's answer to the run's previous task, as that site
//! sent it (masked under secure aggregation) and signed with its certificate key. The site
//! checks:
//! - the answers are from exactly the run's sites (the plan's, or this site alone for its
//!   site-alone baseline), one each;
//! - its own is the one it sent (its reply cache), the others' signatures verify against the
//!   certificate keys the approved plan pins, over the previous task's id and digest — so the
//!   coordinator can neither forge a sum nor pass off another task's answers;
//! - the task's points are what its replica asks for next from their sum.
//!
//! A study of several sites whose plan pins no keys cannot be checked: such rounds are refused
//! unless `policy.unverified_rounds` says otherwise. One LASSO run per feature table and
//! study; a run may start again from its first round (it then asks the same points).
//!
//! Each run's state is kept in `studies/<study>/<runs>/<slot>.log` (the run's key, then per
//! accepted task its id, digest and the sum the replica absorbed before it), appended and
//! synced before the answer leaves, so a restarted site rebuilds its replica by replaying it.
//! A task's step is recorded only once the task passed every other check of the site
//! ([`Runs::check`] gives a [`RunStep`] the engine commits): a task refused later leaves its
//! run as it was.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fedrad_shared::aggregate::SiteAggregate;
use fedrad_shared::algorithms::SiteRefusal;
use fedrad_shared::algorithms::classifiers::FitReplica;
use fedrad_shared::algorithms::fedavg::EncoderReplica;
use fedrad_shared::algorithms::lasso::{LassoReplica, sum_of_answers};
use fedrad_shared::algorithms::paired_auc::ComparisonReplica;
use fedrad_shared::algorithms::trees::TreeReplica;
use fedrad_shared::proto;
use fedrad_shared::secure_sum::{RoundBinding, SUM_OF_SITES, VerifiedSites};
use prost::Message;

use crate::audit::sha256_hex;
use crate::engine::Failure;

/// A solver a site replays: it takes the sum of the sites' answers to the round it asked last.
pub trait Replay: Clone {
    fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal>;
}

impl Replay for LassoReplica {
    fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal> {
        LassoReplica::absorb(self, sum)
    }
}

impl Replay for FitReplica {
    fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal> {
        FitReplica::absorb(self, sum)
    }
}

impl Replay for EncoderReplica {
    fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal> {
        EncoderReplica::absorb(self, sum)
    }
}

impl Replay for ComparisonReplica {
    fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal> {
        ComparisonReplica::absorb(self, sum)
    }
}

impl Replay for TreeReplica {
    fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal> {
        TreeReplica::absorb(self, sum)
    }
}

/// Who asks: the task and what the site knows of its study.
pub struct Round<'a> {
    pub site_id: &'a str,
    pub study_id: &'a str,
    pub plan_sha256: &'a str,
    pub task_id: &'a str,
    pub task_digest: &'a str,
    /// The plan's sites, sorted.
    pub plan_sites: &'a [String],
    /// The sites' pinned certificate keys (present when the plan pins them).
    pub verified: Option<&'a VerifiedSites>,
    /// The study directory.
    pub study_dir: &'a Path,
}

/// One task of a run, as the engine describes it.
pub struct RunTask<'a, R> {
    /// Where the run is kept: one run per slot (the LASSO's feature table; a fit's key).
    pub slot: String,
    /// Everything that fixes the run's points besides the answers.
    pub key: String,
    /// The sites whose answers make the totals (sorted).
    pub participants: Vec<String>,
    /// The run's replica before its first round.
    pub fresh: &'a dyn Fn() -> R,
    /// Whether the task asks what the replica asks next.
    pub expect: &'a dyn Fn(&R) -> Result<(), SiteRefusal>,
    /// The signed answers to the run's previous task.
    pub previous: &'a [proto::SignedAnswer],
    /// A run's first task that carries the answers to the task it opens from (a tree
    /// ensemble's first round: the design's value counts), by that task's id and digest.
    pub opening: Option<Opening>,
}

/// The task a run opens from, as this site answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub task_id: String,
    pub task_digest: String,
}

struct Run<R> {
    key: String,
    replica: R,
    last_task_id: String,
    last_task_digest: String,
}

/// Every run of one kind this site takes part in, by (study, plan, slot).
pub struct Runs<R> {
    /// The study subfolder of the run logs.
    folder: &'static str,
    what: &'static str,
    runs: Mutex<BTreeMap<(String, String, String), Run<R>>>,
}

/// The study subfolders that hold run logs (counted in the study's disk use).
pub const FOLDERS: [&str; 5] = ["lasso-runs", "classifier-fits", "tree-runs", "encoder-runs", "comparisons"];

/// The LASSO runs, one per feature table.
pub fn lasso_runs() -> Runs<LassoReplica> {
    Runs { folder: FOLDERS[0], what: "LASSO run", runs: Mutex::default() }
}

/// The classifier fits, one per key.
pub fn classifier_fits() -> Runs<FitReplica> {
    Runs { folder: FOLDERS[1], what: "classifier fit", runs: Mutex::default() }
}

/// The tree ensembles, one per design and objective.
pub fn tree_runs() -> Runs<TreeReplica> {
    Runs { folder: FOLDERS[2], what: "tree ensemble", runs: Mutex::default() }
}

/// The encoder trainings, one per sequence (its rounds, then the embedding).
pub fn encoder_runs() -> Runs<EncoderReplica> {
    Runs { folder: FOLDERS[3], what: "encoder training", runs: Mutex::default() }
}

pub fn comparisons() -> Runs<ComparisonReplica> {
    Runs { folder: FOLDERS[4], what: "model comparison", runs: Mutex::default() }
}

/// Where the value-count task a design's tree ensembles open from is recorded.
fn opening_path(study_dir: &Path, plan_sha256: &str, design: &str) -> PathBuf {
    study_dir.join(FOLDERS[2]).join(format!("{}.opening", &key_of(&[plan_sha256.as_bytes(), b"opening", design.as_bytes()])[..32]))
}

/// Records the value-count task this site answered for a design (the latest one counts).
/// `charge` books its bytes on the study's disk use first.
pub fn record_opening(study_dir: &Path, plan_sha256: &str, design: &str, opening: &Opening, charge: &dyn Fn(u64) -> Result<(), SiteRefusal>) -> Result<(), Failure> {
    let path = opening_path(study_dir, plan_sha256, design);
    let text = format!("{}\n{}\n", opening.task_id, opening.task_digest);
    charge(text.len() as u64).map_err(Failure::Refused)?;
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().expect("a folder"))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(tmp, &path)
    };
    write().map_err(|e| Failure::Failed(format!("cannot record the value counts in {}: {e}", path.display())))
}

/// The value-count task this site answered for a design, if any.
pub fn opening_of(study_dir: &Path, plan_sha256: &str, design: &str) -> Option<Opening> {
    let text = std::fs::read_to_string(opening_path(study_dir, plan_sha256, design)).ok()?;
    let mut lines = text.lines();
    Some(Opening { task_id: lines.next()?.to_string(), task_digest: lines.next()?.to_string() })
}

fn refuse<T>(m: String) -> Result<T, Failure> {
    Err(Failure::Refused(SiteRefusal::InvalidParameters(m)))
}

/// SHA-256 over length-prefixed parts: a run's key.
pub fn key_of(parts: &[&[u8]]) -> String {
    let mut m = Vec::new();
    for p in parts {
        m.extend_from_slice(&(p.len() as u64).to_le_bytes());
        m.extend_from_slice(p);
    }
    sha256_hex(&m)
}

fn frame(task_id: &str, digest: &str, sum: Option<&proto::Aggregate>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(task_id.len() as u32).to_le_bytes());
    out.extend_from_slice(task_id.as_bytes());
    out.extend_from_slice(digest.as_bytes());
    let agg = sum.map(|a| a.encode_to_vec()).unwrap_or_default();
    out.extend_from_slice(&(agg.len() as u64).to_le_bytes());
    out.extend_from_slice(&agg);
    out
}

impl<R: Replay> Runs<R> {
    /// A run's log, by plan and slot: a re-approved, changed plan starts its runs afresh.
    fn log_path(&self, study_dir: &Path, plan_sha256: &str, slot: &str) -> PathBuf {
        study_dir.join(self.folder).join(format!("{}.log", &key_of(&[plan_sha256.as_bytes(), slot.as_bytes()])[..32]))
    }

    /// [`check`](Self::check)s a task and records it at once (tools and tests; the engine
    /// commits only once every other check of the task passed).
    pub fn accept(
        &self,
        round: &Round,
        task: RunTask<R>,
        unverified_allowed: bool,
        disk: &dyn DiskUse,
        own_answer: impl Fn(&str) -> Option<(String, proto::Aggregate)>,
    ) -> Result<(), Failure> {
        self.check(round, task, unverified_allowed, own_answer)?.commit(disk)
    }

    /// Checks a task against the run it belongs to: if it is the run's next task, the step to
    /// record, which [`RunStep::commit`] writes once the task passed every other check too (a
    /// task refused later leaves the run as it was). `own_answer` reads this site's answer to
    /// an earlier task of the study.
    pub fn check(
        &self,
        round: &Round,
        task: RunTask<R>,
        unverified_allowed: bool,
        own_answer: impl Fn(&str) -> Option<(String, proto::Aggregate)>,
    ) -> Result<RunStep<'_, R>, Failure> {
        let alone = task.participants.len() == 1 && task.participants[0] == round.site_id;
        let path = self.log_path(round.study_dir, round.plan_sha256, &task.slot);
        let slot = (round.study_id.to_string(), round.plan_sha256.to_string(), task.slot.clone());
        let unchanged = RunStep { runs: self, slot: slot.clone(), path: path.clone(), before: None, change: None };
        if !alone && round.verified.is_none() && round.plan_sites.len() > 1 {
            if unverified_allowed {
                return Ok(unchanged);
            }
            return Err(Failure::Refused(SiteRefusal::Precondition(format!(
                "this site answers a {} only when it can recompute its points from every site's signed answers, and this study of {} sites pins no site keys; turn the study's secure aggregation on with the sites' keys ([secure_aggregation] enabled = true, site_keys from `coordinator certs pins`), or set this site's policy.unverified_rounds",
                self.what,
                round.plan_sites.len()
            ))));
        }
        let other_inputs = || refuse(format!("this site already took part in a {} of this study with other inputs; one run per {}", self.what, task.slot));
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if !self.restore(&mut runs, &slot, &path, &task)? {
            return other_inputs();
        }
        let existing = runs.get(&slot);
        let before = existing.map(|r| r.last_task_digest.clone());
        if let Some(run) = existing {
            if run.key != task.key {
                return other_inputs();
            }
            if run.last_task_digest == round.task_digest {
                // The run's latest task again (its answer was not sent): same check, no step.
                return (task.expect)(&run.replica).map(|()| unchanged).map_err(Failure::Refused);
            }
        }
        let step = |replica: R, record: Vec<u8>, new: bool| RunStep {
            runs: self,
            slot: slot.clone(),
            path: path.clone(),
            before: before.clone(),
            change: Some(Change {
                run: Run { key: task.key.clone(), replica, last_task_id: round.task_id.into(), last_task_digest: round.task_digest.into() },
                record,
                new,
            }),
        };
        if task.previous.is_empty() || task.opening.is_some() {
            // A run's first round (or the same run from its start again: the same points),
            // after the sum of the answers to the task it opens from, if it has one.
            let mut fresh = (task.fresh)();
            let opened = match &task.opening {
                Some(o) => {
                    let sum = verified_sum(round, &task.participants, (&o.task_id, &o.task_digest), task.previous, &own_answer)?;
                    fresh.absorb(&sum)?;
                    Some(sum.aggregate)
                }
                None => None,
            };
            (task.expect)(&fresh).map_err(Failure::Refused)?;
            let mut record = format!("{}\n", task.key).into_bytes();
            record.extend_from_slice(&frame(round.task_id, round.task_digest, opened.as_ref()));
            return Ok(step(fresh, record, true));
        }
        let Some(run) = existing else {
            return refuse(format!("a task with answers to a previous round, but this site has no {} of these inputs: a run starts with its first round", self.what));
        };
        let sum = verified_sum(round, &task.participants, (&run.last_task_id, &run.last_task_digest), task.previous, &own_answer)?;
        let mut replica = run.replica.clone();
        replica.absorb(&sum)?;
        (task.expect)(&replica).map_err(Failure::Refused)?;
        Ok(step(replica, frame(round.task_id, round.task_digest, Some(&sum.aggregate)), false))
    }
}

impl<R: Replay> Runs<R> {
    /// A restarted site's run, rebuilt from its log (if it has one and the run is not held
    /// already): `false` when the log holds a run begun with other inputs, which is then not
    /// replayed.
    fn restore(&self, runs: &mut BTreeMap<(String, String, String), Run<R>>, slot: &(String, String, String), path: &Path, task: &RunTask<R>) -> Result<bool, Failure> {
        if runs.contains_key(slot) {
            return Ok(true);
        }
        if logged_key(path).is_some_and(|k| k != task.key) {
            return Ok(false);
        }
        if let Some(run) = load(path, task.fresh).map_err(|e| Failure::Failed(format!("the {} record {}: {e}", self.what, path.display())))? {
            runs.insert(slot.clone(), run);
        }
        Ok(true)
    }

    /// Checks what a run made, for a task that uses it (a score task scores a tree ensemble
    /// only as this site's replica grew it): `task.expect` on the run's replica after the sum
    /// of every participating site's signed answers to the run's last task, checked as a next
    /// task's would be. Nothing is recorded, so the same end can be checked again; a task
    /// refused here changes nothing.
    pub fn check_end(&self, round: &Round, task: RunTask<R>, own_answer: impl Fn(&str) -> Option<(String, proto::Aggregate)>) -> Result<(), Failure> {
        let path = self.log_path(round.study_dir, round.plan_sha256, &task.slot);
        let slot = (round.study_id.to_string(), round.plan_sha256.to_string(), task.slot.clone());
        let other_inputs = || refuse(format!("this site took part in no {} with these inputs", self.what));
        let (replica, last_task_id, last_task_digest) = {
            let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
            if !self.restore(&mut runs, &slot, &path, &task)? {
                return other_inputs();
            }
            match runs.get(&slot) {
                Some(run) if run.key == task.key => (run.replica.clone(), run.last_task_id.clone(), run.last_task_digest.clone()),
                _ => return other_inputs(),
            }
        };
        let sum = verified_sum(round, &task.participants, (&last_task_id, &last_task_digest), task.previous, &own_answer)?;
        let mut replica = replica;
        replica.absorb(&sum)?;
        (task.expect)(&replica).map_err(Failure::Refused)
    }
}

/// The study's disk use that run logs are booked on (`policy.max_study_disk_bytes`).
pub trait DiskUse {
    /// Books `bytes` more, or refuses past the bound.
    fn charge(&self, bytes: u64) -> Result<(), SiteRefusal>;
    /// Gives back `bytes` no longer on disk.
    fn release(&self, bytes: u64);
}

/// No disk bound (tools and tests).
pub struct NoDiskBound;

impl DiskUse for NoDiskBound {
    fn charge(&self, _: u64) -> Result<(), SiteRefusal> {
        Ok(())
    }

    fn release(&self, _: u64) {}
}

/// A run's next step, checked but not yet recorded.
struct Change<R> {
    run: Run<R>,
    /// The bytes to write: a new log (key and first record), or a record to append.
    record: Vec<u8>,
    new: bool,
}

/// A task a run accepted ([`Runs::check`]): [`commit`](Self::commit) records it, once the task
/// passed every other check and just before its answer leaves.
#[must_use = "a run's step is recorded only by commit"]
pub struct RunStep<'a, R> {
    runs: &'a Runs<R>,
    slot: (String, String, String),
    path: PathBuf,
    /// The run's last task when the step was checked (none: no run yet).
    before: Option<String>,
    /// `None`: nothing to record (a resend of the run's latest task, or an unverified study).
    change: Option<Change<R>>,
}

impl<R> RunStep<'_, R> {
    /// Records the step: books its bytes on the study's disk use (refusing past its bound),
    /// writes and syncs them, and makes it the run's state; a run started again replaces its
    /// log, whose bytes go back to the study's disk use (else a coordinator restarting a run
    /// over and over would use up the bound with bytes no longer on disk). A step of a run
    /// that moved on since it was checked (another task of the run answered meanwhile) is
    /// refused.
    pub fn commit(self, disk: &dyn DiskUse) -> Result<(), Failure> {
        let Some(change) = self.change else { return Ok(()) };
        let what = self.runs.what;
        let mut runs = self.runs.runs.lock().unwrap_or_else(|e| e.into_inner());
        if runs.get(&self.slot).map(|r| &r.last_task_digest) != self.before.as_ref() {
            return refuse(format!("another task of this {what} was answered while this one was computed; ask again"));
        }
        // Booked net of the log a restarted run replaces, so that a study at its bound can
        // still start a run afresh when that does not grow its use.
        let bytes = change.record.len() as u64;
        let replaced = if change.new { std::fs::metadata(&self.path).map_or(0, |m| m.len()) } else { 0 };
        let grows = bytes.saturating_sub(replaced);
        disk.charge(grows).map_err(Failure::Refused)?;
        let written = if change.new { write_new(&self.path, &change.record) } else { append(&self.path, &change.record) };
        if let Err(e) = written {
            disk.release(grows);
            return Err(Failure::Failed(format!("cannot record the {what} in {}: {e}", self.path.display())));
        }
        disk.release(replaced.saturating_sub(bytes));
        runs.insert(self.slot, change.run);
        Ok(())
    }
}

/// The sum of every participating site's answer to the run's previous task (`last`: its id
/// and digest), after checking that each is that site's, for that task.
fn verified_sum(
    round: &Round,
    participants: &[String],
    (last_task_id, last_task_digest): (&str, &str),
    previous: &[proto::SignedAnswer],
    own_answer: &impl Fn(&str) -> Option<(String, proto::Aggregate)>,
) -> Result<SiteAggregate, Failure> {
    let mut ids: Vec<&str> = previous.iter().map(|a| a.site_id.as_str()).collect();
    ids.sort_unstable();
    if ids.len() != participants.len() || ids.iter().zip(participants).any(|(a, b)| *a != b) {
        return refuse(format!("recomputation: the previous round's answers come from ({}), the run's sites are ({})", ids.join(", "), participants.join(", ")));
    }
    let binding = RoundBinding { study_id: round.study_id, plan_sha256: round.plan_sha256, task_id: last_task_id, task_sha256: last_task_digest };
    let mut answers = Vec::with_capacity(previous.len());
    for a in previous {
        let aggregate = a.aggregate.clone().unwrap_or_default();
        // Its reply cache's answer to exactly the run's last task (the cache file names the
        // task's digest): a task id reused for another task after a refusal does not pass.
        let own = (a.site_id == round.site_id).then(|| own_answer(last_task_id)).flatten().filter(|(digest, _)| digest == last_task_digest).map(|(_, answer)| answer);
        match (own, round.verified) {
            (Some(sent), _) => {
                if sent != aggregate {
                    return refuse(format!("recomputation: this site's own answer to task {last_task_id} is not the one it sent"));
                }
            }
            (None, Some(v)) => v
                .verify_answer(&a.site_id, binding, &aggregate, &a.signature)
                .map_err(|e| Failure::Refused(SiteRefusal::InvalidParameters(format!("recomputation: the previous round's answer of {}: {e}", a.site_id))))?,
            (None, None) => {
                return refuse(format!("recomputation: no record of this site's answer to task {last_task_id} to check it against"));
            }
        }
        answers.push(SiteAggregate::new(a.site_id.clone(), aggregate));
    }
    sum_of_answers(&answers).map_err(|e| Failure::Refused(SiteRefusal::InvalidParameters(format!("recomputation: the previous round's answers do not sum: {e}"))))
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().expect("a run log has a folder"))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(tmp, path)
}

fn append(path: &Path, record: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(record)?;
    f.sync_data()
}

/// One record of a run log: task id, task digest, the sum absorbed before it, and the rest.
fn next_frame(bytes: &[u8]) -> Option<(String, String, Option<&[u8]>, &[u8])> {
    let (len, rest) = bytes.split_at_checked(4)?;
    let (task_id, rest) = rest.split_at_checked(u32::from_le_bytes(len.try_into().ok()?) as usize)?;
    let (digest, rest) = rest.split_at_checked(64)?;
    let (n, rest) = rest.split_at_checked(8)?;
    let (sum, rest) = rest.split_at_checked(u64::from_le_bytes(n.try_into().ok()?) as usize)?;
    Some((String::from_utf8(task_id.to_vec()).ok()?, String::from_utf8(digest.to_vec()).ok()?, (!sum.is_empty()).then_some(sum), rest))
}

/// The key a run's log was begun with, if there is a log.
fn logged_key(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    String::from_utf8(bytes.get(..64)?.to_vec()).ok()
}

/// Rebuilds a run from its log (a site restarted mid-run): `None` if there is none.
fn load<R: Replay>(path: &Path, fresh: &dyn Fn() -> R) -> std::io::Result<Option<Run<R>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let (head, mut rest) = bytes.split_at_checked(65).ok_or_else(|| bad("too short"))?;
    let key = String::from_utf8(head[..64].to_vec()).map_err(|_| bad("not a run key"))?;
    let mut replica = fresh();
    let mut last = None;
    // A record cut short by a crash while it was appended is left out: its task's answer was
    // never sent (the answer leaves only after the record is synced).
    while let Some((task_id, digest, sum, after)) = next_frame(rest) {
        rest = after;
        if let Some(sum) = sum {
            let sum = proto::Aggregate::decode(sum).map_err(|_| bad("a sum"))?;
            replica.absorb(&SiteAggregate::new(SUM_OF_SITES, sum)).map_err(|e| bad(&e.to_string()))?;
        }
        last = Some((task_id, digest));
    }
    let (last_task_id, last_task_digest) = last.ok_or_else(|| bad("no task"))?;
    if !rest.is_empty() {
        // Cut the torn record off, so that the next record is appended after a whole one.
        std::fs::OpenOptions::new().write(true).open(path)?.set_len((bytes.len() - rest.len()) as u64)?;
    }
    Ok(Some(Run { key, replica, last_task_id, last_task_digest }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedrad_shared::algorithms::glm::{GlmFamily, TrainingView};
    use fedrad_shared::algorithms::lasso::{LassoPathSolver, LassoRequest, LassoSettings, combine_round, site_round};
    use fedrad_shared::algorithms::testdata::{cohort, standardiser};

    /// One site's run through [`LassoRuns`]: the coordinator's solver asks, the site answers
    /// with its site half, and the next task forwards the answer. Midway the site restarts
    /// (a fresh `LassoRuns` rebuilds the run from its log, even with a torn record at its end);
    /// a run on the same table with other inputs is refused; the whole path is answered.
    #[test]
    fn a_restarted_site_rebuilds_its_run_from_the_log() {
        let (x, y, fold) = cohort(7);
        let std = standardiser(&x);
        let p = std.center.len();
        let dir = std::env::temp_dir().join(format!("fedrad-replay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = LassoSettings { path_length: 12, ..LassoSettings::default() };
        let sites = vec!["s".to_string()];
        let view = TrainingView { x: &x, y: &y, fold: &fold };
        let mut solver = LassoPathSolver::new(settings.clone(), p);
        let mut runs = lasso_runs();
        let mut sent: BTreeMap<String, proto::Aggregate> = BTreeMap::new();
        let mut previous: Vec<proto::SignedAnswer> = Vec::new();
        let mut round = 0;
        let key = key_of(&[b"inputs"]);
        while let Some(request) = solver.request() {
            round += 1;
            let task_id = format!("r{round}");
            let digest = sha256_hex(task_id.as_bytes());
            let r = Round {
                site_id: "s",
                study_id: "study",
                plan_sha256: "plan",
                task_id: &task_id,
                task_digest: &digest,
                plan_sites: &sites,
                verified: None,
                study_dir: &dir,
            };
            let asked: Vec<proto::GlmPoint> = match &request {
                LassoRequest::Round(points) | LassoRequest::CvLoss(points) => points.iter().map(|q| q.to_proto()).collect(),
            };
            let end = solver.path_end() as u32;
            let expect = |rep: &LassoReplica| match &request {
                LassoRequest::Round(_) => rep.expect_round(&asked),
                LassoRequest::CvLoss(_) => rep.expect_cv(&asked, end),
            };
            let fresh = || LassoReplica::new(settings.clone(), p, usize::MAX);
            let task = |key: &str, previous| RunTask {
                slot: "t2".into(),
                key: key.into(),
                participants: sites.clone(),
                fresh: &fresh,
                expect: &expect,
                previous,
                opening: None,
            };
            if round == 4 {
                // Another run on the same table (other inputs): refused.
                let Err(Failure::Refused(r2)) = runs.accept(&r, task(&key_of(&[b"other inputs"]), &[]), false, &NoDiskBound, |_| None) else {
                    panic!("a second run on one table was accepted")
                };
                assert!(r2.to_string().contains("one run per t2"), "{r2}");
            }
            if round == 9 {
                // And restarts again: the torn record was cut off, the log reads whole.
                runs = lasso_runs();
            }
            if round == 6 {
                // The site restarts; its log's last record was torn by a crash.
                let log = runs.log_path(&dir, "plan", "t2");
                let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
                f.write_all(&[7, 0, 0, 0, b'r']).unwrap();
                runs = lasso_runs();
            }
            if round == 6 {
                // After the restart, another run's inputs do not replay this run's log.
                let Err(Failure::Refused(r2)) = runs.accept(&r, task(&key_of(&[b"other inputs"]), &previous), false, &NoDiskBound, |_| None) else {
                    panic!("other inputs replayed the log")
                };
                assert!(r2.to_string().contains("one run per t2"), "{r2}");
            }
            if round == 7 {
                // The cache holds an answer under the last task's id, but to another task (an
                // id reused after a refusal): it is not this site's answer to that task.
                let reused = |id: &str| sent.get(id).map(|a| (sha256_hex(b"another task"), a.clone()));
                let Err(Failure::Refused(r2)) = runs.accept(&r, task(&key, &previous), false, &NoDiskBound, reused) else { panic!("an answer to another task passed") };
                assert!(r2.to_string().contains("no record of this site's answer"), "{r2}");
            }
            let own = |id: &str| sent.get(id).map(|a| (sha256_hex(id.as_bytes()), a.clone()));
            runs.accept(&r, task(&key, &previous), false, &NoDiskBound, own).unwrap_or_else(|e| panic!("round {round} refused: {e:?}"));
            match request {
                LassoRequest::Round(points) => {
                    let answer = site_round(view, &std, GlmFamily::Binomial, &points, 0, f64::INFINITY).unwrap();
                    sent.insert(task_id.clone(), answer.clone());
                    previous = vec![proto::SignedAnswer { site_id: "s".into(), aggregate: Some(answer.clone()), signature: Vec::new() }];
                    let totals = combine_round(&[SiteAggregate::new("s", answer)], &points, p).unwrap();
                    solver.absorb_round(&totals).unwrap();
                }
                LassoRequest::CvLoss(_) => break,
            }
        }
        assert!(round > 12, "{round} rounds");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A study's disk use with a bound, as the engine keeps it.
    struct Booked {
        bound: u64,
        used: std::cell::Cell<u64>,
    }
    impl DiskUse for Booked {
        fn charge(&self, bytes: u64) -> Result<(), SiteRefusal> {
            if self.used.get() + bytes > self.bound {
                return Err(SiteRefusal::Precondition("disk bound".into()));
            }
            self.used.set(self.used.get() + bytes);
            Ok(())
        }
        fn release(&self, bytes: u64) {
            self.used.set(self.used.get().saturating_sub(bytes));
        }
    }

    /// The first round of a LASSO run on a fixed cohort, for the disk-bound tests: the
    /// settings, the design's width and the points asked.
    fn first_round() -> (LassoSettings, usize, Vec<proto::GlmPoint>) {
        let (x, _, _) = cohort(7);
        let p = standardiser(&x).center.len();
        let settings = LassoSettings::default();
        let Some(LassoRequest::Round(points)) = LassoPathSolver::new(settings.clone(), p).request() else { unreachable!() };
        (settings, p, points.iter().map(|q| q.to_proto()).collect())
    }

    /// A run started again and again replaces its log: the study's booked disk use stays the
    /// size of what is on disk, so restarts cannot use up the bound (found by a red-team
    /// review: before, each restart booked a new log and kept the old one's bytes).
    #[test]
    fn a_restarted_run_gives_its_old_log_back_to_the_disk_bound() {
        let dir = std::env::temp_dir().join(format!("fedrad-replay-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (settings, p, asked) = first_round();
        let sites = vec!["s".to_string()];
        let digest = sha256_hex(b"r1");
        let r = Round { site_id: "s", study_id: "study", plan_sha256: "plan", task_id: "r1", task_digest: &digest, plan_sites: &sites, verified: None, study_dir: &dir };
        let fresh = || LassoReplica::new(settings.clone(), p, usize::MAX);
        let expect = |rep: &LassoReplica| rep.expect_round(&asked);
        let task = || RunTask { slot: "t2".into(), key: key_of(&[b"inputs"]), participants: sites.clone(), fresh: &fresh, expect: &expect, previous: &[], opening: None };
        let runs = lasso_runs();
        let log = runs.log_path(&dir, "plan", "t2");
        let first = {
            let disk = Booked { bound: u64::MAX, used: Default::default() };
            runs.accept(&r, task(), false, &disk, |_| None).unwrap();
            disk.used.get()
        };
        assert_eq!(first, std::fs::metadata(&log).unwrap().len());
        // The run's first round asked again, 50 times, with room for one log and the byte a
        // task id of two digits adds.
        let disk = Booked { bound: first + 16, used: std::cell::Cell::new(first) };
        for k in 2..=50 {
            let id = format!("r{k}");
            let digest = sha256_hex(id.as_bytes());
            let again = Round { task_id: &id, task_digest: &digest, ..r };
            runs.accept(&again, task(), false, &disk, |_| None).unwrap_or_else(|e| panic!("restart {k} refused: {e:?}"));
            assert_eq!(disk.used.get(), std::fs::metadata(&log).unwrap().len(), "restart {k}: booked = on disk");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A run's log counts towards the study's disk use: past the bound the task is refused
    /// and nothing is written.
    #[test]
    fn a_run_log_past_the_studys_disk_bound_is_refused_unwritten() {
        let dir = std::env::temp_dir().join(format!("fedrad-replay-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (settings, p, asked) = first_round();
        let sites = vec!["s".to_string()];
        let r = Round {
            site_id: "s",
            study_id: "study",
            plan_sha256: "plan",
            task_id: "r1",
            task_digest: &sha256_hex(b"r1"),
            plan_sites: &sites,
            verified: None,
            study_dir: &dir,
        };
        let fresh = || LassoReplica::new(settings.clone(), p, usize::MAX);
        let expect = |rep: &LassoReplica| rep.expect_round(&asked);
        let task = RunTask { slot: "t2".into(), key: key_of(&[b"inputs"]), participants: sites.clone(), fresh: &fresh, expect: &expect, previous: &[], opening: None };
        let full = Booked { bound: 0, used: Default::default() };
        let runs = lasso_runs();
        let Err(Failure::Refused(SiteRefusal::Precondition(d))) = runs.accept(&r, task, false, &full, |_| None) else { panic!("a run past the disk bound was accepted") };
        assert_eq!(d, "disk bound");
        assert!(!runs.log_path(&dir, "plan", "t2").exists(), "nothing written");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
