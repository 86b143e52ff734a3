//! Federated averaging of the deep-feature encoder ([`super::encoder`]).
//!
//! Each round the coordinator sends the global weights; every site trains them on its own
//! training patients for the configured local epochs (mini-batch SGD with momentum,
//! optionally FedProx's proximal term μ/2‖w − w_global‖²) and returns its weights and patient
//! count; the coordinator averages the weights by count (McMahan et al. 2017):
//!
//! w ← Σₖ nₖ wₖ / Σₖ nₖ
//!
//! With one full-batch step per round (`local_epochs = 1`, `batch_size = 0`) this is FedSGD,
//! and equal to centralised full-batch gradient descent on the pooled patients: each site's
//! step is w − η ∇Lₖ with Lₖ its mean loss, and Σ nₖ ∇Lₖ / N is the pooled mean gradient.
//! With several local steps FedAvg is a different algorithm from pooled SGD (it is not
//! "federated equals pooled"); the tests check the FedSGD identity and that FedAvg's loss falls.
//!
//! Sites also report the loss of the global weights they received, over their training
//! patients with fixed masks (one per patient, the same every round), so the curve across
//! rounds is comparable; the coordinator weights it by count.
//!
//! Per-patient masks come from (seed, round, epoch, patient id), and mini-batches are the
//! patients in an order drawn from the same seed, so a patient's contribution does not depend
//! on which site holds it; per-patient gradients are computed in parallel and summed in order.
//!
//! Each site sends its weights and losses multiplied by its patient count, so that the
//! coordinator only adds answers up: Σₖ nₖwₖ and Σₖ nₖ are all FedAvg needs, and with
//! secure aggregation on ([`crate::secure_sum`]) the coordinator learns only those sums, not
//! one site's weights (nor the per-site losses it used to report). It adds them in the same
//! fixed point (2⁻⁴⁰ per unit) with secure aggregation on or off, so both give the same weights.
//!
//! Disclosure: the weights are an aggregate over the site's training patients (refused below
//! `min_count`), but a network can memorise: weights trained on few patients can leak image
//! content (gradient-inversion attacks). The encoder is small (~30 000 parameters), and the
//! report says so.

use rayon::prelude::*;

use super::encoder::{self, Architecture};
use super::{CombineError, SiteRefusal, require_min_count};
use crate::aggregate::{AggregateBuilder, SiteAggregate};
use crate::proto::Aggregate;

/// Local-training settings of one round (from the study file).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LocalTraining {
    pub epochs: u32,
    /// Patients per mini-batch; 0 = the whole site (full batch).
    pub batch_size: u32,
    pub learning_rate: f64,
    pub momentum: f64,
    /// FedProx's μ (0 = plain FedAvg).
    pub proximal_mu: f64,
    /// Fraction of 4×4 input patches masked.
    pub mask_fraction: f64,
    pub seed: u64,
}

impl LocalTraining {
    pub fn validate(&self) -> Result<(), String> {
        if self.epochs == 0 || self.epochs > 100 {
            return Err(format!("local_epochs must be from 1 to 100, not {}", self.epochs));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 10.0) {
            return Err(format!("learning_rate must be in (0, 10], not {}", self.learning_rate));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!("momentum must be in [0, 1), not {}", self.momentum));
        }
        if !(self.proximal_mu >= 0.0 && self.proximal_mu <= 100.0) {
            return Err(format!("proximal_mu must be in [0, 100], not {}", self.proximal_mu));
        }
        if !(0.0..0.95).contains(&self.mask_fraction) {
            return Err(format!("mask_fraction must be in [0, 0.95), not {}", self.mask_fraction));
        }
        Ok(())
    }
}

/// One training patient's crop.
#[derive(Debug, Clone)]
pub struct Sample {
    pub patient_id: String,
    /// `3 × crop × crop`, z-scored.
    pub crop: Vec<f64>,
}

/// What one site returns for one round.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalUpdate {
    pub weights: Vec<f64>,
    pub patients: u64,
    /// Mean loss of the received global weights over the site's patients (fixed masks).
    pub loss_at_start: f64,
    /// Mean loss over the local mini-batches of this round (before each step).
    pub mean_training_loss: f64,
}

fn stream(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    h.update(&seed.to_le_bytes());
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finish();
    u64::from_le_bytes(d.as_ref()[..8].try_into().expect("8 bytes"))
}

/// SHA-256 (hex) of weights as little-endian f64: how the coordinator names the final
/// encoder to the sites, which check it before embedding.
pub fn weights_sha256(weights: &[f64]) -> String {
    let bytes: Vec<u8> = weights.iter().flat_map(|w| w.to_le_bytes()).collect();
    crate::digest::sha256_hex(&bytes)
}

/// The mask seed of a patient in a training step, or (`round = None`) its fixed evaluation mask.
pub fn mask_seed(seed: u64, round: Option<u32>, epoch: u32, patient_id: &str) -> u64 {
    match round {
        Some(r) => stream(seed, &[b"train", &r.to_le_bytes(), &epoch.to_le_bytes(), patient_id.as_bytes()]),
        None => stream(seed, &[b"eval", patient_id.as_bytes()]),
    }
}

/// Mean loss of `weights` over `samples` with their fixed evaluation masks.
pub fn evaluation_loss(arch: &Architecture, weights: &[f64], samples: &[Sample], t: &LocalTraining) -> f64 {
    let losses: Vec<f64> = samples
        .par_iter()
        .map(|s| {
            let input = encoder::mask_patches(arch, &s.crop, t.mask_fraction, mask_seed(t.seed, None, 0, &s.patient_id));
            encoder::loss(arch, weights, &input, &encoder::target_of(arch, &s.crop))
        })
        .collect();
    losses.iter().sum::<f64>() / samples.len().max(1) as f64
}

// ---- site half ---------------------------------------------------------------------------

/// Trains the global weights on this site's samples for one round.
pub fn site_train(arch: &Architecture, global: &[f64], samples: &[Sample], t: &LocalTraining, round: u32) -> LocalUpdate {
    let loss_at_start = evaluation_loss(arch, global, samples, t);
    let mut w = global.to_vec();
    let mut velocity = vec![0.0; w.len()];
    let n = samples.len();
    let batch = if t.batch_size == 0 { n } else { (t.batch_size as usize).min(n) };
    let mut loss_sum = 0.0;
    let mut loss_count = 0usize;
    for epoch in 0..t.epochs {
        // Patients in an order drawn from the seed; the last batch may be smaller.
        let mut order: Vec<(u64, &Sample)> =
            samples.iter().map(|s| (stream(t.seed, &[b"order", &round.to_le_bytes(), &epoch.to_le_bytes(), s.patient_id.as_bytes()]), s)).collect();
        order.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.patient_id.cmp(&b.1.patient_id)));
        let order: Vec<&Sample> = order.into_iter().map(|(_, s)| s).collect();
        for chunk in order.chunks(batch.max(1)) {
            let (loss, mut g) = mean_gradient(arch, &w, chunk, t, round, epoch);
            loss_sum += loss * chunk.len() as f64;
            loss_count += chunk.len();
            if t.proximal_mu > 0.0 {
                for ((gi, wi), w0) in g.iter_mut().zip(&w).zip(global) {
                    *gi += t.proximal_mu * (wi - w0);
                }
            }
            for ((wi, vi), gi) in w.iter_mut().zip(velocity.iter_mut()).zip(&g) {
                *vi = t.momentum * *vi + gi;
                *wi -= t.learning_rate * *vi;
            }
        }
    }
    LocalUpdate { weights: w, patients: n as u64, loss_at_start, mean_training_loss: loss_sum / loss_count.max(1) as f64 }
}

/// Mean loss and mean gradient over a batch; per-patient work in parallel, summed in order.
fn mean_gradient(arch: &Architecture, w: &[f64], batch: &[&Sample], t: &LocalTraining, round: u32, epoch: u32) -> (f64, Vec<f64>) {
    let mut loss = 0.0;
    let mut g = vec![0.0; w.len()];
    // Bounded memory: per-patient gradients are materialised 64 at a time.
    for part in batch.chunks(64) {
        let grads: Vec<(f64, Vec<f64>)> = part
            .par_iter()
            .map(|s| {
                let input = encoder::mask_patches(arch, &s.crop, t.mask_fraction, mask_seed(t.seed, Some(round), epoch, &s.patient_id));
                encoder::loss_and_gradient(arch, w, &input, &encoder::target_of(arch, &s.crop))
            })
            .collect();
        for (l, gi) in grads {
            loss += l;
            for (a, b) in g.iter_mut().zip(&gi) {
                *a += b;
            }
        }
    }
    let k = batch.len().max(1) as f64;
    g.iter_mut().for_each(|v| *v /= k);
    (loss / k, g)
}

/// The site's answer: its weights and losses times its patient count (what the coordinator
/// sums); refused below `min_count` patients.
pub fn site_aggregate(update: &LocalUpdate, min_count: u64) -> Result<Aggregate, SiteRefusal> {
    require_min_count("the training cohort with crops", update.patients, min_count)?;
    let n = update.patients as f64;
    Ok(AggregateBuilder::new(update.patients)
        .vector("weights_times_patients", update.weights.iter().map(|w| n * w).collect())
        .vector("losses_times_patients", vec![n * update.loss_at_start, n * update.mean_training_loss])
        .build())
}

// ---- coordinator half --------------------------------------------------------------------

/// One round's result at the coordinator.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoundSummary {
    pub round: u32,
    pub patients: u64,
    /// Count-weighted loss of the weights sent this round (i.e. after the previous round).
    pub loss_at_start: f64,
    pub mean_training_loss: f64,
}

/// FedAvg: Σₖ nₖwₖ / Σₖ nₖ. `answers` are the sites' answers or, as the coordinator's rounds
/// give them, their one fixed-point sum ([`crate::secure_sum::combine`]).
pub fn combine(answers: &[SiteAggregate], parameter_count: usize, round: u32) -> Result<(Vec<f64>, RoundSummary), CombineError> {
    if answers.is_empty() {
        return Err(CombineError::NoSites);
    }
    let total: u64 = answers.iter().map(|a| a.patient_count()).sum();
    if total == 0 {
        return Err(CombineError::Inconsistent { site: answers[0].site_id.clone(), detail: "no training patients at any site".into() });
    }
    let mut weighted = vec![0.0; parameter_count];
    let mut losses = [0.0; 2];
    for a in answers {
        for (acc, v) in weighted.iter_mut().zip(a.vector("weights_times_patients", parameter_count)?) {
            *acc += v;
        }
        for (acc, v) in losses.iter_mut().zip(a.vector("losses_times_patients", 2)?) {
            *acc += v;
        }
    }
    let n = total as f64;
    let summary = RoundSummary { round, patients: total, loss_at_start: losses[0] / n, mean_training_loss: losses[1] / n };
    Ok((weighted.into_iter().map(|v| v / n).collect(), summary))
}

// ---- pooled reference --------------------------------------------------------------------

/// Centralised full-batch gradient descent on pooled samples: w ← w − η · (1/N) Σᵢ ∇ℓᵢ(w),
/// one step per round, with the same per-patient masks. FedSGD must equal it.
pub fn pooled_gradient_descent(arch: &Architecture, initial: &[f64], samples: &[Sample], t: &LocalTraining, rounds: u32) -> Vec<f64> {
    let mut w = initial.to_vec();
    for round in 1..=rounds {
        let mut g = vec![0.0; w.len()];
        for s in samples {
            let input = encoder::mask_patches(arch, &s.crop, t.mask_fraction, mask_seed(t.seed, Some(round), 0, &s.patient_id));
            let (_, gi) = encoder::loss_and_gradient(arch, &w, &input, &encoder::target_of(arch, &s.crop));
            for (a, b) in g.iter_mut().zip(&gi) {
                *a += b / samples.len() as f64;
            }
        }
        for (wi, gi) in w.iter_mut().zip(&g) {
            *wi -= t.learning_rate * gi;
        }
    }
    w
}

/// In-process federation of `sites` for `rounds` rounds, as the coordinator would run it
/// (for tests and method research). Returns the final weights and each round's summary.
pub fn simulate(arch: &Architecture, initial: &[f64], sites: &[Vec<Sample>], t: &LocalTraining, rounds: u32) -> (Vec<f64>, Vec<RoundSummary>) {
    let mut w = initial.to_vec();
    let mut history = Vec::new();
    for round in 1..=rounds {
        let mut answers: Vec<SiteAggregate> = sites
            .iter()
            .enumerate()
            .map(|(k, s)| SiteAggregate::new(format!("site-{k:02}"), site_aggregate(&site_train(arch, &w, s, t, round), 0).expect("no minimum")))
            .collect();
        // Two or more sites: summed in fixed point, as the coordinator's rounds do.
        if answers.len() >= 2 {
            answers = vec![crate::secure_sum::combine(&answers).expect("answers of one shape")];
        }
        let (next, summary) = combine(&answers, w.len(), round).expect("consistent answers");
        w = next;
        history.push(summary);
    }
    (w, history)
}

// ---- what a site accepts ------------------------------------------------------------------

/// How far the global weights of one round may move from the previous round's, as a multiple
/// of this site's own move in that round. The global move is a patient-weighted average of
/// every site's move, so it exceeds this site's only where other sites moved further (more
/// local steps on more patients), never by orders of magnitude.
pub const STEP_FACTOR: f64 = 10.0;

/// What a site records of one sequence's encoder training: the last round it answered, the
/// global weights it received then, and how far its own training moved them (largest absolute
/// change of a weight).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoundRecord {
    pub round: u32,
    pub input: Vec<f64>,
    pub own_change: f64,
}

/// The largest absolute difference of two weight vectors (∞ when their lengths differ).
pub fn max_abs_difference(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, |m, d| if d.is_nan() || m.is_nan() { f64::NAN } else { m.max(d) })
}

fn too_far(what: &str, moved: f64, own: f64) -> SiteRefusal {
    SiteRefusal::InvalidParameters(format!(
        "{what} moved {moved:.3e} from the last round's weights; this site moved them {own:.3e}, and accepts at most {STEP_FACTOR}× that"
    ))
}

/// A site trains on weights only along the study's own federated averaging: round 1 from the
/// plan's initial weights, round r + 1 right after the round r it answered and by a step of
/// averaging size, a round already answered only again with the same weights. A coordinator
/// can then not have a site train weights of its choosing (e.g. weights made elsewhere to
/// memorise, with a learning rate that copies one patient's crop into them).
pub fn site_accepts_round(last: Option<&RoundRecord>, round: u32, weights: &[f64], initial: &[f64]) -> Result<(), SiteRefusal> {
    let invalid = |m: String| Err(SiteRefusal::InvalidParameters(m));
    match last {
        _ if round == 1 => {
            if weights != initial {
                return invalid("encoder round 1 must start from the study plan's initial weights".into());
            }
            if last.is_some_and(|l| l.round > 1) {
                return invalid("the encoder's training cannot start again once past round 1".into());
            }
            Ok(())
        }
        Some(l) if round == l.round + 1 => {
            let moved = max_abs_difference(weights, &l.input);
            if moved.is_nan() || moved > STEP_FACTOR * l.own_change || !l.own_change.is_finite() {
                return Err(too_far(&format!("the global weights of round {round}"), moved, l.own_change));
            }
            Ok(())
        }
        Some(l) if round == l.round && weights == &l.input[..] => Ok(()),
        Some(l) => invalid(format!("encoder round {round} does not follow the last round this site answered ({})", l.round)),
        None => invalid(format!("encoder round {round} before this site answered round 1")),
    }
}

/// A site embeds its patients only with weights one averaging step from the last round it
/// trained, once that round is the plan's last: the deep features are the study's encoder's,
/// not a network of the coordinator's choosing.
pub fn site_accepts_final(last: Option<&RoundRecord>, weights: &[f64], rounds: u32) -> Result<(), SiteRefusal> {
    match last {
        Some(l) if l.round == rounds => {
            let moved = max_abs_difference(weights, &l.input);
            if moved.is_nan() || moved > STEP_FACTOR * l.own_change || !l.own_change.is_finite() {
                return Err(too_far("the weights to embed with", moved, l.own_change));
            }
            Ok(())
        }
        _ => Err(SiteRefusal::Precondition(format!("embedding needs the encoder trained here through the study plan's {rounds} rounds first"))),
    }
}

// ---- site: recomputation -------------------------------------------------------------------

/// A site's copy of one sequence's federated averaging (issue 17, property 2). It starts at
/// the plan's initial weights; each round's task carries every site's signed answer to the
/// round before, and their sum gives, by [`combine`], the global weights the next round must
/// carry — so a site trains, and finally embeds, only with the study's own averaged weights,
/// never with weights of the coordinator's choosing (which the step bound of
/// [`site_accepts_round`] alone allowed within 10× the site's own step per round).
#[derive(Debug, Clone)]
pub struct EncoderReplica {
    /// The round the replica asks next; `rounds + 1` once every round is averaged.
    round: u32,
    rounds: u32,
    global: Vec<f64>,
}

impl EncoderReplica {
    pub fn new(initial: Vec<f64>, rounds: u32) -> Self {
        EncoderReplica { round: 1, rounds, global: initial }
    }

    /// Takes the sum of the sites' answers to the round asked last.
    pub fn absorb(&mut self, sum: &SiteAggregate) -> Result<(), SiteRefusal> {
        let bad = |m: String| SiteRefusal::InvalidParameters(format!("encoder recomputation: {m}"));
        if self.round > self.rounds {
            return Err(bad(format!("the study's {} rounds are averaged; no further round", self.rounds)));
        }
        let (next, _) = combine(std::slice::from_ref(sum), self.global.len(), self.round).map_err(|e| bad(e.to_string()))?;
        if next.iter().any(|v| !v.is_finite()) {
            return Err(bad(format!("the average of round {} is not finite", self.round)));
        }
        self.global = next;
        self.round += 1;
        Ok(())
    }

    /// Whether an encoder round is the one the replica asks next, with its weights.
    pub fn expect_round(&self, round: u32, weights: &[f64]) -> Result<(), SiteRefusal> {
        let bad = |m: String| Err(SiteRefusal::InvalidParameters(format!("encoder recomputation: {m}")));
        if round > self.rounds {
            return bad(format!("round {round}; the study plan trains {} rounds", self.rounds));
        }
        if round != self.round {
            return bad(format!("round {round}; the study's averaging, from the sums of the sites' signed answers so far, is at round {}", self.round));
        }
        if weights != self.global {
            return bad(format!(
                "the weights of round {round} are not {}",
                if round == 1 { "the study plan's initial weights".to_string() } else { format!("the average of the sites' signed answers to round {}", round - 1) }
            ));
        }
        Ok(())
    }

    /// Whether `weights` are the study's final averaged weights (to embed with).
    pub fn expect_final(&self, weights: &[f64]) -> Result<(), SiteRefusal> {
        if self.round != self.rounds + 1 {
            return Err(SiteRefusal::InvalidParameters(format!(
                "encoder recomputation: embedding needs the study's {} rounds averaged first (at round {})",
                self.rounds, self.round
            )));
        }
        if weights != self.global {
            return Err(SiteRefusal::InvalidParameters(
                "encoder recomputation: the weights to embed with are not the average of the sites' signed answers to the last round".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_trains_only_along_the_studys_own_rounds() {
        let initial = vec![0.0, 1.0, 2.0];
        assert!(site_accepts_round(None, 1, &initial, &initial).is_ok());
        assert!(site_accepts_round(None, 1, &[0.0, 1.0, 2.5], &initial).is_err(), "round 1 from chosen weights");
        assert!(site_accepts_round(None, 2, &initial, &initial).is_err(), "round 2 before round 1");
        let last = RoundRecord { round: 1, input: initial.clone(), own_change: 0.01 };
        assert!(site_accepts_round(Some(&last), 2, &[0.05, 1.0, 2.0], &initial).is_ok(), "a step of 5x this site's own");
        assert!(site_accepts_round(Some(&last), 2, &[0.5, 1.0, 2.0], &initial).is_err(), "a step of 50x");
        assert!(site_accepts_round(Some(&last), 3, &initial, &initial).is_err(), "a skipped round");
        assert!(site_accepts_round(Some(&last), 1, &initial, &initial).is_ok(), "a resend of round 1");
        let later = RoundRecord { round: 2, ..last.clone() };
        assert!(site_accepts_round(Some(&later), 1, &initial, &initial).is_err(), "training started again");
        assert!(site_accepts_round(Some(&last), 2, &[f64::NAN, 1.0, 2.0], &initial).is_err(), "NaN weights");
        assert!(site_accepts_final(Some(&last), &[0.05, 1.0, 2.0], 1).is_ok());
        assert!(site_accepts_final(Some(&last), &[0.05, 1.0, 2.0], 20).is_err(), "before the plan's last round");
        assert!(site_accepts_final(Some(&last), &[9.0, 1.0, 2.0], 1).is_err(), "weights far from the last round");
    }
    use crate::algorithms::encoder::SplitMix;
    use crate::algorithms::testdata::site_ranges;

    fn arch() -> Architecture {
        Architecture { crop: 16, field_mm: 48.0, channels: [4, 6], embedding: 24 }
    }

    /// Image-like crops: a bright blob of varying size and place on a smooth background,
    /// slightly different in each of the three slices, plus noise.
    fn cohort(arch: &Architecture, n: usize) -> Vec<Sample> {
        let mut r = SplitMix::new(42);
        let c = arch.crop;
        (0..n)
            .map(|i| {
                let (cx, cy) = (c as f64 * (0.35 + 0.3 * r.uniform()), c as f64 * (0.35 + 0.3 * r.uniform()));
                let rad = c as f64 * (0.12 + 0.15 * r.uniform());
                let tilt = r.normal();
                let mut crop = Vec::with_capacity(arch.input_len());
                for ch in 0..3 {
                    let shrink = 1.0 - 0.15 * (ch as f64 - 1.0).abs();
                    for y in 0..c {
                        for x in 0..c {
                            let d2 = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)) / (rad * shrink).powi(2);
                            crop.push(2.0 * (-d2).exp() + 0.05 * tilt * (x as f64 - c as f64 / 2.0) + 0.1 * r.normal());
                        }
                    }
                }
                Sample { patient_id: format!("P{i:04}"), crop }
            })
            .collect()
    }

    fn fedsgd(seed: u64) -> LocalTraining {
        LocalTraining { epochs: 1, batch_size: 0, learning_rate: 0.05, momentum: 0.9, proximal_mu: 0.0, mask_fraction: 0.25, seed }
    }

    fn split(samples: &[Sample], sizes: &[usize]) -> Vec<Vec<Sample>> {
        site_ranges(sizes).into_iter().map(|r| samples[r].to_vec()).collect()
    }

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, |m, d| if d.is_nan() || m.is_nan() { f64::NAN } else { m.max(d) })
    }

    #[test]
    fn fedavg_one_site_full_batch_equals_centralised_gradient_descent() {
        let arch = arch();
        let samples = cohort(&arch, 30);
        let w0 = arch.initial_weights(5);
        let t = fedsgd(5);
        let (fed, history) = simulate(&arch, &w0, std::slice::from_ref(&samples), &t, 6);
        let pooled = pooled_gradient_descent(&arch, &w0, &samples, &t, 6);
        assert!(max_diff(&fed, &w0) > 1e-3, "training must move the weights");
        assert!(max_diff(&fed, &pooled) < 1e-12, "FedAvg(1 site) vs centralised: {}", max_diff(&fed, &pooled));
        assert_eq!(history.len(), 6);
    }

    #[test]
    fn fedavg_sgd_over_four_and_seven_uneven_sites_equals_one_site() {
        let arch = arch();
        let samples = cohort(&arch, 41);
        let w0 = arch.initial_weights(9);
        let t = fedsgd(9);
        let (one, h1) = simulate(&arch, &w0, &split(&samples, &[41]), &t, 5);
        for sizes in [&[10, 11, 9, 11][..], &[2, 9, 5, 1, 12, 4, 8]] {
            let (many, hk) = simulate(&arch, &w0, &split(&samples, sizes), &t, 5);
            assert!(max_diff(&one, &many) < 1e-12, "{} sites: {}", sizes.len(), max_diff(&one, &many));
            for (a, b) in h1.iter().zip(&hk) {
                assert!((a.loss_at_start - b.loss_at_start).abs() < 1e-12);
            }
        }
    }

    /// A site's replica averages what the coordinator averages, from the sums alone, over 1, 4
    /// and 7 uneven sites: every round's weights are the replica's bit for bit, and weights
    /// moved by 1e-12, a round out of turn, or embedding before the last round or with other
    /// weights are refused.
    #[test]
    fn replica_follows_the_honest_averaging_and_refuses_other_weights() {
        use crate::algorithms::lasso::sum_of_answers;
        let arch = arch();
        let samples = cohort(&arch, 41);
        let w0 = arch.initial_weights(9);
        let t = fedsgd(9);
        let rounds = 4;
        for sizes in [&[41][..], &[10, 11, 9, 11], &[2, 9, 5, 1, 12, 4, 8]] {
            let sites = split(&samples, sizes);
            let mut replica = EncoderReplica::new(w0.clone(), rounds);
            assert!(replica.expect_final(&w0).is_err(), "embedding before any round");
            let mut w = w0.clone();
            for round in 1..=rounds {
                replica.expect_round(round, &w).unwrap_or_else(|e| panic!("round {round}, sites {sizes:?}: {e}"));
                let mut moved = w.clone();
                moved[7] += 1e-12;
                assert!(replica.expect_round(round, &moved).is_err(), "weights moved by 1e-12");
                assert!(replica.expect_round(round + 1, &w).is_err(), "a round out of turn");
                let answers: Vec<SiteAggregate> = sites
                    .iter()
                    .enumerate()
                    .map(|(k, s)| SiteAggregate::new(format!("site-{k:02}"), site_aggregate(&site_train(&arch, &w, s, &t, round), 0).unwrap()))
                    .collect();
                let sum = sum_of_answers(&answers).unwrap();
                w = combine(std::slice::from_ref(&sum), w.len(), round).unwrap().0;
                replica.absorb(&sum).unwrap();
            }
            assert!(replica.expect_round(rounds + 1, &w).is_err(), "a round past the plan's");
            replica.expect_final(&w).unwrap();
            let mut other = w.clone();
            other[0] += 1e-9;
            assert!(replica.expect_final(&other).is_err(), "embedding with other weights");
            let (simulated, _) = simulate(&arch, &w0, &sites, &t, rounds);
            assert_eq!(simulated, w, "sites {sizes:?}");
        }
    }

    #[test]
    fn fedavg_loss_falls_round_over_round() {
        let arch = arch();
        let samples = cohort(&arch, 48);
        let w0 = arch.initial_weights(3);
        let t = LocalTraining { epochs: 2, batch_size: 8, learning_rate: 0.02, momentum: 0.9, proximal_mu: 0.0, mask_fraction: 0.25, seed: 3 };
        let (_, history) = simulate(&arch, &w0, &split(&samples, &[20, 16, 12]), &t, 8);
        let losses: Vec<f64> = history.iter().map(|h| h.loss_at_start).collect();
        assert!(losses[7] < 0.7 * losses[0], "loss {losses:?}");
        assert!(losses.windows(2).filter(|w| w[1] < w[0]).count() >= 6, "loss {losses:?}");
    }

    #[test]
    fn fedavg_local_training_does_not_depend_on_the_thread_count() {
        let arch = arch();
        let samples = cohort(&arch, 20);
        let w0 = arch.initial_weights(1);
        let t = LocalTraining { epochs: 2, batch_size: 6, learning_rate: 0.02, momentum: 0.9, proximal_mu: 0.1, mask_fraction: 0.3, seed: 1 };
        let run = |threads| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| site_train(&arch, &w0, &samples, &t, 3));
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn fedavg_proximal_term_keeps_local_weights_near_the_global_ones() {
        let arch = arch();
        let samples = cohort(&arch, 24);
        let w0 = arch.initial_weights(2);
        let t = LocalTraining { epochs: 3, batch_size: 4, learning_rate: 0.02, momentum: 0.9, proximal_mu: 0.0, mask_fraction: 0.25, seed: 2 };
        let drift = |mu| {
            let u = site_train(&arch, &w0, &samples, &LocalTraining { proximal_mu: mu, ..t }, 1);
            u.weights.iter().zip(&w0).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt()
        };
        assert!(drift(5.0) < 0.8 * drift(0.0), "{} vs {}", drift(5.0), drift(0.0));
    }

    #[test]
    fn fedavg_combine_weights_by_patient_count_and_refuses_small_sites() {
        let update = |w: f64, n| LocalUpdate { weights: vec![w, 2.0 * w], patients: n, loss_at_start: w, mean_training_loss: w };
        let answers = vec![SiteAggregate::new("b", site_aggregate(&update(1.0, 30), 5).unwrap()), SiteAggregate::new("a", site_aggregate(&update(4.0, 10), 5).unwrap())];
        let (w, s) = combine(&answers, 2, 1).unwrap();
        assert_eq!(w, vec![1.75, 3.5]);
        assert_eq!(s.patients, 40);
        assert!((s.loss_at_start - 1.75).abs() < 1e-15);
        // The same through the fixed-point sum the coordinator's rounds use.
        let (summed, s2) = combine(&[crate::secure_sum::combine(&answers).unwrap()], 2, 1).unwrap();
        assert!(summed.iter().zip(&w).all(|(a, b)| (a - b).abs() < 1e-12) && s2.patients == 40);
        assert!(matches!(site_aggregate(&update(1.0, 4), 5), Err(SiteRefusal::BelowMinCount { .. })));
        assert!(combine(&answers, 3, 1).is_err(), "wrong parameter count is refused");
    }
}
