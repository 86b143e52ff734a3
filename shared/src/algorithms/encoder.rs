//! The deep-feature encoder: a small convolutional network over a 2.5D tumour crop, trained
//! without outcome labels as a masked autoencoder, whose pooled last feature map is the
//! embedding FedRad calls deep features (`deep_0000` …).
//!
//! Input: the axial slice with the largest tumour area and its two neighbours, as 3 channels,
//! resampled to `crop × crop` pixels over `field_mm` millimetres around the tumour and z-scored
//! with the tumour's intensities (the site builds it; see `site-agent/src/deep.rs`).
//! Why 2.5D rather than a 3D crop: clinical head-and-neck MR has thick slices (3–5 mm, against
//! 0.5–1 mm in plane), so a 3D kernel mostly sees interpolated or absent detail across slices;
//! three slices keep the through-plane context at a fraction of the cost.
//!
//! Network (H = W = crop, Q = (crop/4)² positions):
//!
//! | layer | output | parameters |
//! |---|---|---|
//! | conv 3×3, 3 → c₁, ReLU, 2×2 average pool | c₁ × H/2 × W/2 | 27c₁ + c₁ |
//! | conv 3×3, c₁ → c₂, ReLU, 2×2 average pool | c₂ × H/4 × W/4 | 9c₁c₂ + c₂ |
//! | conv 1×1, c₂ → D, ReLU (the feature map) | D × H/4 × W/4 | c₂D + D |
//! | **embedding**: mean of the feature map over positions | D | — |
//! | decoder conv 1×1, D → 12, pixel shuffle 2×2 | 3 × H/2 × W/2 | 12D + 12 |
//!
//! Objective: with a seeded fraction of 4×4 input patches set to zero, reconstruct the
//! unmasked crop at half resolution (2×2 average of the clean input); loss = mean squared
//! error per value. The decoder reads the D-channel map directly, so every embedding unit is
//! trained to carry local image content.
//!
//! Everything is f64 and every sum runs in a fixed order, so results do not depend on the
//! number of threads; the parameters live in one flat vector (the wire form) whose layout is
//! [`Layout`].

use std::ops::Range;

/// The encoder's shape, shared by the coordinator (which initialises the weights) and the
/// sites (which train and apply them).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Architecture {
    /// Crop side in pixels (a multiple of 4).
    pub crop: usize,
    /// Side of the crop in millimetres (in-plane), centred on the tumour.
    pub field_mm: f64,
    /// Channels of the two 3×3 convolutions.
    pub channels: [usize; 2],
    /// Embedding dimension D (the number of deep features).
    pub embedding: usize,
}

impl Default for Architecture {
    fn default() -> Self {
        Architecture { crop: 32, field_mm: 64.0, channels: [8, 16], embedding: 1000 }
    }
}

/// Where each layer's parameters sit in the flat vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub w1: Range<usize>,
    pub b1: Range<usize>,
    pub w2: Range<usize>,
    pub b2: Range<usize>,
    pub w3: Range<usize>,
    pub b3: Range<usize>,
    pub w4: Range<usize>,
    pub b4: Range<usize>,
}

/// Input channels (the slice and its two neighbours) and decoder outputs per position.
pub const INPUT_CHANNELS: usize = 3;

/// Why a site has no crop for a patient, in the order of the embedding summary's
/// `failed_by_reason` tensor (the site agent's `deep::CropError::reason`).
pub const CROP_FAILURE_REASONS: [&str; 4] = ["unreadable_volume", "geometry_mismatch", "empty_mask", "non_finite_voxels"];

const DECODER_OUTPUTS: usize = INPUT_CHANNELS * 4;

impl Architecture {
    /// Checks the shape; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.crop < 8 || self.crop > 128 || !self.crop.is_multiple_of(4) {
            return Err(format!("crop must be a multiple of 4 from 8 to 128 pixels, not {}", self.crop));
        }
        if !(self.field_mm.is_finite() && self.field_mm >= 4.0 && self.field_mm <= 500.0) {
            return Err(format!("field_mm must be from 4 to 500 mm, not {}", self.field_mm));
        }
        if self.channels.iter().any(|&c| c == 0 || c > 128) {
            return Err(format!("channels must be from 1 to 128, not {:?}", self.channels));
        }
        if self.embedding == 0 || self.embedding > 4096 {
            return Err(format!("embedding must be from 1 to 4096, not {}", self.embedding));
        }
        Ok(())
    }

    pub fn input_len(&self) -> usize {
        INPUT_CHANNELS * self.crop * self.crop
    }

    pub fn layout(&self) -> Layout {
        let [c1, c2] = self.channels;
        let d = self.embedding;
        let mut at = 0;
        let mut take = |n: usize| {
            let r = at..at + n;
            at += n;
            r
        };
        Layout {
            w1: take(c1 * INPUT_CHANNELS * 9),
            b1: take(c1),
            w2: take(c2 * c1 * 9),
            b2: take(c2),
            w3: take(d * c2),
            b3: take(d),
            w4: take(DECODER_OUTPUTS * d),
            b4: take(DECODER_OUTPUTS),
        }
    }

    pub fn parameter_count(&self) -> usize {
        self.layout().b4.end
    }

    /// Standard-normal weights and zero biases from the study seed: every party that knows
    /// the seed gets the same start.
    pub fn initial_weights(&self, seed: u64) -> Vec<f64> {
        let l = self.layout();
        let mut w = vec![0.0; self.parameter_count()];
        let mut rng = SplitMix::new(seed ^ 0xe4c0_de5e_ed00_0001);
        for range in [l.w1, l.w2, l.w3, l.w4] {
            for v in &mut w[range] {
                *v = rng.normal();
            }
        }
        w
    }

    /// Per-parameter multipliers from the stored weights to the ones the layers use: He's
    /// constant √(gain / fan-in) for weights (gain 2 before a ReLU, 1 for the linear decoder),
    /// 1 for biases. With this "equalised learning rate" parameterisation one SGD learning
    /// rate suits every layer: the decoder reads 1000 channels, and without the scaling its
    /// curvature is ~1000 times the first layer's, so a rate that trains the convolutions
    /// makes the decoder diverge.
    pub fn parameter_scale(&self) -> Vec<f64> {
        let l = self.layout();
        let [c1, c2] = self.channels;
        let mut s = vec![1.0; self.parameter_count()];
        for (range, fan_in, gain) in [(l.w1, INPUT_CHANNELS * 9, 2.0), (l.w2, c1 * 9, 2.0), (l.w3, c2, 2.0), (l.w4, self.embedding, 1.0)] {
            s[range].fill((gain / fan_in as f64).sqrt());
        }
        s
    }
}

/// SplitMix64: a tiny, well-mixed generator for seeded initialisation and masks.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Sets a seeded fraction of the 4×4 patches of `input` to zero (the masked-autoencoder
/// corruption). The mask depends only on `mask_seed`, so a patient's mask is the same at
/// whichever site holds it.
pub fn mask_patches(arch: &Architecture, input: &[f64], fraction: f64, mask_seed: u64) -> Vec<f64> {
    let mut out = input.to_vec();
    if fraction <= 0.0 {
        return out;
    }
    let n = arch.crop;
    let patches = n / 4;
    let mut rng = SplitMix::new(mask_seed);
    for py in 0..patches {
        for px in 0..patches {
            if rng.uniform() < fraction {
                for c in 0..INPUT_CHANNELS {
                    for y in 4 * py..4 * py + 4 {
                        out[(c * n + y) * n + 4 * px..(c * n + y) * n + 4 * px + 4].fill(0.0);
                    }
                }
            }
        }
    }
    out
}

/// The reconstruction target: the clean crop averaged over 2×2 pixels.
pub fn target_of(arch: &Architecture, clean: &[f64]) -> Vec<f64> {
    avg_pool2(clean, INPUT_CHANNELS, arch.crop)
}

// ---- layers ------------------------------------------------------------------------------

/// 3×3 convolution with zero padding ("same"), `cin × n × n` → `cout × n × n`.
fn conv3x3(input: &[f64], cin: usize, n: usize, w: &[f64], b: &[f64], cout: usize) -> Vec<f64> {
    let mut out = vec![0.0; cout * n * n];
    for o in 0..cout {
        let plane = &mut out[o * n * n..(o + 1) * n * n];
        plane.fill(b[o]);
        for c in 0..cin {
            let src = &input[c * n * n..(c + 1) * n * n];
            for ky in 0..3 {
                for kx in 0..3 {
                    let wv = w[((o * cin + c) * 3 + ky) * 3 + kx];
                    let (x0, x1) = (1usize.saturating_sub(kx), (n + 1 - kx).min(n));
                    for y in 1usize.saturating_sub(ky)..(n + 1 - ky).min(n) {
                        let sy = y + ky - 1;
                        let dst = &mut plane[y * n + x0..y * n + x1];
                        let s = &src[sy * n + x0 + kx - 1..sy * n + x1 + kx - 1];
                        for (d, v) in dst.iter_mut().zip(s) {
                            *d += wv * v;
                        }
                    }
                }
            }
        }
    }
    out
}

/// Gradients of [`conv3x3`]: adds dL/dw and dL/db into `dw`, `db` and returns dL/dinput
/// (when asked).
#[allow(clippy::too_many_arguments)]
fn conv3x3_backward(input: &[f64], cin: usize, n: usize, w: &[f64], cout: usize, dout: &[f64], dw: &mut [f64], db: &mut [f64], want_input: bool) -> Vec<f64> {
    let mut din = if want_input { vec![0.0; cin * n * n] } else { Vec::new() };
    for o in 0..cout {
        let g = &dout[o * n * n..(o + 1) * n * n];
        db[o] += g.iter().sum::<f64>();
        for c in 0..cin {
            let src = &input[c * n * n..(c + 1) * n * n];
            for ky in 0..3 {
                for kx in 0..3 {
                    let wi = ((o * cin + c) * 3 + ky) * 3 + kx;
                    let (x0, x1) = (1usize.saturating_sub(kx), (n + 1 - kx).min(n));
                    let mut acc = 0.0;
                    for y in 1usize.saturating_sub(ky)..(n + 1 - ky).min(n) {
                        let sy = y + ky - 1;
                        let gr = &g[y * n + x0..y * n + x1];
                        let s = &src[sy * n + x0 + kx - 1..sy * n + x1 + kx - 1];
                        acc += gr.iter().zip(s).map(|(a, b)| a * b).sum::<f64>();
                        if want_input {
                            let wv = w[wi];
                            let d = &mut din[c * n * n + sy * n + x0 + kx - 1..c * n * n + sy * n + x1 + kx - 1];
                            for (dv, gv) in d.iter_mut().zip(gr) {
                                *dv += wv * gv;
                            }
                        }
                    }
                    dw[wi] += acc;
                }
            }
        }
    }
    din
}

/// 2×2 average pooling, `c × n × n` → `c × n/2 × n/2`.
fn avg_pool2(input: &[f64], c: usize, n: usize) -> Vec<f64> {
    let h = n / 2;
    let mut out = vec![0.0; c * h * h];
    for ch in 0..c {
        for y in 0..h {
            for x in 0..h {
                let i = |yy: usize, xx: usize| input[(ch * n + yy) * n + xx];
                out[(ch * h + y) * h + x] = 0.25 * (i(2 * y, 2 * x) + i(2 * y, 2 * x + 1) + i(2 * y + 1, 2 * x) + i(2 * y + 1, 2 * x + 1));
            }
        }
    }
    out
}

fn avg_pool2_backward(dout: &[f64], c: usize, n: usize) -> Vec<f64> {
    let h = n / 2;
    let mut din = vec![0.0; c * n * n];
    for ch in 0..c {
        for y in 0..n {
            for x in 0..n {
                din[(ch * n + y) * n + x] = 0.25 * dout[(ch * h + y / 2) * h + x / 2];
            }
        }
    }
    din
}

/// 1×1 convolution: `cin × q` → `cout × q`.
fn pointwise(input: &[f64], cin: usize, q: usize, w: &[f64], b: &[f64], cout: usize) -> Vec<f64> {
    let mut out = vec![0.0; cout * q];
    for o in 0..cout {
        let row = &mut out[o * q..(o + 1) * q];
        row.fill(b[o]);
        for c in 0..cin {
            let wv = w[o * cin + c];
            for (r, v) in row.iter_mut().zip(&input[c * q..(c + 1) * q]) {
                *r += wv * v;
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn pointwise_backward(input: &[f64], cin: usize, q: usize, w: &[f64], cout: usize, dout: &[f64], dw: &mut [f64], db: &mut [f64]) -> Vec<f64> {
    let mut din = vec![0.0; cin * q];
    for o in 0..cout {
        let g = &dout[o * q..(o + 1) * q];
        db[o] += g.iter().sum::<f64>();
        for c in 0..cin {
            let x = &input[c * q..(c + 1) * q];
            dw[o * cin + c] += g.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
            let wv = w[o * cin + c];
            for (d, gv) in din[c * q..(c + 1) * q].iter_mut().zip(g) {
                *d += wv * gv;
            }
        }
    }
    din
}

fn relu(z: &[f64]) -> Vec<f64> {
    z.iter().map(|v| v.max(0.0)).collect()
}

fn relu_backward(z: &[f64], d: &mut [f64]) {
    for (g, v) in d.iter_mut().zip(z) {
        if *v <= 0.0 {
            *g = 0.0;
        }
    }
}

// ---- the network -------------------------------------------------------------------------

/// The forward pass's intermediate values, kept for the backward pass.
struct Trace {
    p1: Vec<f64>,
    z1: Vec<f64>,
    z2: Vec<f64>,
    p2: Vec<f64>,
    z3: Vec<f64>,
    h3: Vec<f64>,
    r: Vec<f64>,
}

/// The weights the layers use: stored weights times [`Architecture::parameter_scale`].
fn effective(arch: &Architecture, w: &[f64]) -> Vec<f64> {
    w.iter().zip(arch.parameter_scale()).map(|(a, b)| a * b).collect()
}

fn forward(arch: &Architecture, stored: &[f64], x: &[f64]) -> Trace {
    let w = &effective(arch, stored);
    let l = arch.layout();
    let [c1, c2] = arch.channels;
    let (n, d) = (arch.crop, arch.embedding);
    let q = (n / 4) * (n / 4);
    let z1 = conv3x3(x, INPUT_CHANNELS, n, &w[l.w1], &w[l.b1], c1);
    let p1 = avg_pool2(&relu(&z1), c1, n);
    let z2 = conv3x3(&p1, c1, n / 2, &w[l.w2], &w[l.b2], c2);
    let p2 = avg_pool2(&relu(&z2), c2, n / 2);
    let z3 = pointwise(&p2, c2, q, &w[l.w3], &w[l.b3], d);
    let h3 = relu(&z3);
    let r = pointwise(&h3, d, q, &w[l.w4], &w[l.b4], DECODER_OUTPUTS);
    Trace { p1, z1, z2, p2, z3, h3, r }
}

/// Decoder output in image order: (channel, sub-pixel dy, dx) at position (i, j) is the
/// half-resolution pixel (channel, 2i + dy, 2j + dx).
fn reconstruction_index(n: usize, o: usize, pos: usize) -> usize {
    let (c, dy, dx) = (o / 4, (o / 2) % 2, o % 2);
    let m = n / 4;
    let (i, j) = (pos / m, pos % m);
    let h = n / 2;
    (c * h + 2 * i + dy) * h + 2 * j + dx
}

/// The embedding of one crop (no masking): the feature map averaged over positions.
pub fn embed(arch: &Architecture, w: &[f64], x: &[f64]) -> Vec<f64> {
    let t = forward(arch, w, x);
    let q = (arch.crop / 4) * (arch.crop / 4);
    t.h3.chunks(q).map(|row| row.iter().sum::<f64>() / q as f64).collect()
}

/// Reconstruction loss of one (corrupted input, target) pair.
pub fn loss(arch: &Architecture, w: &[f64], input: &[f64], target: &[f64]) -> f64 {
    let t = forward(arch, w, input);
    let (n, q) = (arch.crop, (arch.crop / 4) * (arch.crop / 4));
    let mut s = 0.0;
    for o in 0..DECODER_OUTPUTS {
        for pos in 0..q {
            let e = t.r[o * q + pos] - target[reconstruction_index(n, o, pos)];
            s += e * e;
        }
    }
    s / target.len() as f64
}

/// Loss and its gradient with respect to every parameter, for one sample.
pub fn loss_and_gradient(arch: &Architecture, stored: &[f64], input: &[f64], target: &[f64]) -> (f64, Vec<f64>) {
    let scale = arch.parameter_scale();
    let w = &stored.iter().zip(&scale).map(|(a, b)| a * b).collect::<Vec<f64>>();
    let l = arch.layout();
    let [c1, c2] = arch.channels;
    let (n, d) = (arch.crop, arch.embedding);
    let q = (n / 4) * (n / 4);
    let t = forward(arch, stored, input);
    let m = target.len() as f64;
    let mut dr = vec![0.0; DECODER_OUTPUTS * q];
    let mut loss = 0.0;
    for o in 0..DECODER_OUTPUTS {
        for pos in 0..q {
            let e = t.r[o * q + pos] - target[reconstruction_index(n, o, pos)];
            loss += e * e;
            dr[o * q + pos] = 2.0 * e / m;
        }
    }
    let mut g = vec![0.0; w.len()];
    let (gw4, rest) = g.split_at_mut(l.b4.start);
    let mut dh3 = {
        let (gw4, gb4) = (&mut gw4[l.w4.clone()], &mut rest[..DECODER_OUTPUTS]);
        pointwise_backward(&t.h3, d, q, &w[l.w4.clone()], DECODER_OUTPUTS, &dr, gw4, gb4)
    };
    relu_backward(&t.z3, &mut dh3);
    let dp2 = {
        let (a, b) = g.split_at_mut(l.b3.start);
        pointwise_backward(&t.p2, c2, q, &w[l.w3.clone()], d, &dh3, &mut a[l.w3.clone()], &mut b[..d])
    };
    let mut dz2 = avg_pool2_backward(&dp2, c2, n / 2);
    relu_backward(&t.z2, &mut dz2);
    let dp1 = {
        let (a, b) = g.split_at_mut(l.b2.start);
        conv3x3_backward(&t.p1, c1, n / 2, &w[l.w2.clone()], c2, &dz2, &mut a[l.w2.clone()], &mut b[..c2], true)
    };
    let mut dz1 = avg_pool2_backward(&dp1, c1, n);
    relu_backward(&t.z1, &mut dz1);
    {
        let (a, b) = g.split_at_mut(l.b1.start);
        conv3x3_backward(input, INPUT_CHANNELS, n, &w[l.w1.clone()], c1, &dz1, &mut a[l.w1.clone()], &mut b[..c1], false);
    }
    // Chain rule through the scaling: dL/dstored = dL/deffective × scale.
    for (gi, s) in g.iter_mut().zip(&scale) {
        *gi *= s;
    }
    (loss / m, g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Architecture {
        Architecture { crop: 8, field_mm: 32.0, channels: [2, 3], embedding: 5 }
    }

    fn sample(arch: &Architecture, seed: u64) -> Vec<f64> {
        let mut r = SplitMix::new(seed);
        (0..arch.input_len()).map(|_| r.normal()).collect()
    }

    /// Backpropagation against central differences, every parameter of a small network.
    #[test]
    fn gradient_matches_finite_differences() {
        let arch = small();
        let mut w = arch.initial_weights(7);
        // Non-zero biases so that ReLU kinks are away from the evaluation point.
        for v in w.iter_mut() {
            *v += 0.01;
        }
        let clean = sample(&arch, 3);
        let input = mask_patches(&arch, &clean, 0.3, 11);
        let target = target_of(&arch, &clean);
        let (_, g) = loss_and_gradient(&arch, &w, &input, &target);
        let h = 1e-6;
        let mut worst: f64 = 0.0;
        for k in 0..w.len() {
            let mut wp = w.clone();
            wp[k] += h;
            let mut wm = w.clone();
            wm[k] -= h;
            let fd = (loss(&arch, &wp, &input, &target) - loss(&arch, &wm, &input, &target)) / (2.0 * h);
            worst = worst.max((fd - g[k]).abs() / (1e-6 + fd.abs().max(g[k].abs())));
        }
        assert!(worst < 1e-5, "largest relative gradient error {worst}");
    }

    #[test]
    fn layout_covers_every_parameter_once() {
        let arch = Architecture::default();
        let l = arch.layout();
        let ranges = [l.w1, l.b1, l.w2, l.b2, l.w3, l.b3, l.w4, l.b4];
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert_eq!(arch.parameter_count(), 8 * 27 + 8 + 16 * 72 + 16 + 1000 * 16 + 1000 + 12 * 1000 + 12);
        assert!(arch.validate().is_ok());
        assert!(Architecture { crop: 30, ..arch }.validate().unwrap_err().contains("crop"));
    }

    #[test]
    fn embedding_has_the_configured_dimension_and_is_deterministic() {
        let arch = small();
        let w = arch.initial_weights(1);
        let x = sample(&arch, 2);
        let e = embed(&arch, &w, &x);
        assert_eq!(e.len(), 5);
        assert_eq!(e, embed(&arch, &w, &x));
        assert!(e.iter().all(|v| v.is_finite() && *v >= 0.0));
    }

    #[test]
    fn masking_zeroes_whole_patches_at_the_given_rate() {
        let arch = Architecture { crop: 64, ..small() };
        let x = vec![1.0; arch.input_len()];
        let m = mask_patches(&arch, &x, 0.5, 99);
        let zeros = m.iter().filter(|v| **v == 0.0).count() as f64 / m.len() as f64;
        assert!((zeros - 0.5).abs() < 0.15, "masked fraction {zeros}");
        assert_eq!(m, mask_patches(&arch, &x, 0.5, 99));
        assert_ne!(m, mask_patches(&arch, &x, 0.5, 100));
    }
}
