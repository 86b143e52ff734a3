//! The `LoG` image type: the Laplacian of Gaussian, scale-normalised, as PyRadiomics computes
//! it with ITK's `LaplacianRecursiveGaussianImageFilter` (`SetNormalizeAcrossScale(True)`).
//!
//! ```text
//! LoG_σ(x) = σ² Σ_d ∂²/∂x_d² (G_σ * x)        σ in mm
//! ```
//!
//! ITK approximates the Gaussian and its second derivative by 4th-order recursive (IIR)
//! filters, Deriche's causal + anti-causal pair with the coefficients of Farnebäck and
//! Westin, normalised so that the response to a constant (order 0) or a parabola (order 2)
//! is exact; a line is extended beyond its ends by its end values. For each axis d the
//! second-derivative filter runs along d and the smoothing filter along the other two axes,
//! and the results are summed with weight 1/spacing_d². ITK keeps the intermediate images in
//! single precision (`InternalRealType = float`) while computing each line in double; this
//! port rounds at the same places so its values are ITK's, not a better approximation of
//! the true LoG — the point is that a model trained on PyRadiomics LoG features means the
//! same here.
//!
//! The recursion forgets a voxel at distance k at rate exp(−1.37 k·spacing/σ), so
//! [`log_filter`] runs on a box around the ROI with a margin of 22 σ/spacing + 8 voxels
//! (≤ 1e−12 of the input's scale) and uses the image's own ends where the margin reaches
//! them.
//!
//! Within that box nothing is computed that the output does not need, and nothing needed is
//! computed differently: each 1-D pass keeps only the output box's samples along its axis,
//! so its causal recursion stops at the box's far end and its anti-causal recursion at the
//! box's near end, and the next pass reads just the lines that remain. For σ ≥ 3 mm on a
//! 256×256 slice this is about half the arithmetic and a fraction of the memory traffic of
//! filtering whole lines and cutting the box out afterwards, with the same bits.
//!
//! PyRadiomics skips a σ for which an image axis is shorter than ⌈σ/spacing⌉ + 1 voxels,
//! and the whole image type when an axis has fewer than 4 voxels; [`sigma_fits`] says so.

/// Name prefix, as PyRadiomics writes it from the σ given: `log-sigma-1-0-mm-3D` for 1.0.
pub fn prefix(sigma_text: &str) -> String {
    format!("log-sigma-{}-mm-3D", sigma_text.replace('.', "-"))
}

/// Whether PyRadiomics computes this σ on an image of these dims and spacing.
pub fn sigma_fits(sigma: f64, dims: [usize; 3], spacing: [f64; 3]) -> bool {
    sigma > 0.0 && dims.iter().all(|n| *n >= 4) && (0..3).all(|a| dims[a] as f64 >= (sigma / spacing[a]).ceil() + 1.0)
}

/// Coefficients of one recursive filter (ITK `RecursiveSeparableImageFilter`).
#[derive(Debug, Clone, Copy)]
struct Recursive {
    n: [f64; 4],
    d: [f64; 4],
    m: [f64; 4],
    bn: [f64; 4],
    bm: [f64; 4],
}

/// Deriche/Farnebäck–Westin constants: (A1, B1) and (A2, B2) per order; W1, L1, W2, L2.
const A1: [f64; 3] = [1.3530, -0.6724, -1.3563];
const B1: [f64; 3] = [1.8151, -3.4327, 5.2318];
const A2: [f64; 3] = [-0.3531, 0.6724, 0.3446];
const B2: [f64; 3] = [0.0902, 0.6100, -2.2355];
const W1: f64 = 0.6681;
const L1: f64 = -1.3932;
const W2: f64 = 2.0787;
const L2: f64 = -1.3732;

/// (N0..N3, SN, DN, EN) for one order's constants.
fn n_coefficients(sigmad: f64, a1: f64, b1: f64, a2: f64, b2: f64) -> ([f64; 4], f64, f64, f64) {
    let (sin1, sin2) = ((W1 / sigmad).sin(), (W2 / sigmad).sin());
    let (cos1, cos2) = ((W1 / sigmad).cos(), (W2 / sigmad).cos());
    let (exp1, exp2) = ((L1 / sigmad).exp(), (L2 / sigmad).exp());
    let n0 = a1 + a2;
    let mut n1 = exp2 * (b2 * sin2 - (a2 + 2.0 * a1) * cos2);
    n1 += exp1 * (b1 * sin1 - (a1 + 2.0 * a2) * cos1);
    let mut n2 = (a1 + a2) * cos2 * cos1;
    n2 -= b1 * cos2 * sin1 + b2 * cos1 * sin2;
    n2 *= 2.0 * exp1 * exp2;
    n2 += a2 * exp1 * exp1 + a1 * exp2 * exp2;
    let mut n3 = exp2 * exp1 * exp1 * (b2 * sin2 - a2 * cos2);
    n3 += exp1 * exp2 * exp2 * (b1 * sin1 - a1 * cos1);
    let sn = n0 + n1 + n2 + n3;
    let dn = n1 + 2.0 * n2 + 3.0 * n3;
    let en = n1 + 4.0 * n2 + 9.0 * n3;
    ([n0, n1, n2, n3], sn, dn, en)
}

impl Recursive {
    /// ITK `RecursiveGaussianImageFilter::SetUp` for order 0 or 2, normalised across scale.
    fn gaussian(sigma: f64, spacing: f64, second_order: bool) -> Recursive {
        let sigmad = sigma / spacing;
        let (cos1, cos2) = ((W1 / sigmad).cos(), (W2 / sigmad).cos());
        let (exp1, exp2) = ((L1 / sigmad).exp(), (L2 / sigmad).exp());
        let d4 = exp1 * exp1 * exp2 * exp2;
        let mut d3 = -2.0 * cos1 * exp1 * exp2 * exp2;
        d3 += -2.0 * cos2 * exp2 * exp1 * exp1;
        let mut d2 = 4.0 * cos2 * cos1 * exp1 * exp2;
        d2 += exp1 * exp1 + exp2 * exp2;
        let d1 = -2.0 * (exp2 * cos2 + exp1 * cos1);
        let sd = 1.0 + d1 + d2 + d3 + d4;
        let dd = d1 + 2.0 * d2 + 3.0 * d3 + 4.0 * d4;
        let ed = d1 + 4.0 * d2 + 9.0 * d3 + 16.0 * d4;
        let n = if !second_order {
            let (n, sn, _, _) = n_coefficients(sigmad, A1[0], B1[0], A2[0], B2[0]);
            let alpha0 = 2.0 * sn / sd - n[0];
            n.map(|v| v * (1.0 / alpha0))
        } else {
            let normalisation = sigma * sigma;
            let (n0c, sn0, dn0, en0) = n_coefficients(sigmad, A1[0], B1[0], A2[0], B2[0]);
            let (n2c, sn2, dn2, en2) = n_coefficients(sigmad, A1[2], B1[2], A2[2], B2[2]);
            let beta = -(2.0 * sn2 - sd * n2c[0]) / (2.0 * sn0 - sd * n0c[0]);
            let n = [0, 1, 2, 3].map(|i| n2c[i] + beta * n0c[i]);
            let sn = sn2 + beta * sn0;
            let dn = dn2 + beta * dn0;
            let en = en2 + beta * en0;
            let mut alpha2 = en * sd * sd - ed * sn * sd - 2.0 * dn * dd * sd + 2.0 * dd * dd * sn;
            alpha2 /= sd * sd * sd;
            n.map(|v| v * (normalisation / alpha2))
        };
        // Symmetric kernels (orders 0 and 2).
        let d = [d1, d2, d3, d4];
        let m = [n[1] - d1 * n[0], n[2] - d2 * n[0], n[3] - d3 * n[0], -d4 * n[0]];
        let sn = n[0] + n[1] + n[2] + n[3];
        let sm = m[0] + m[1] + m[2] + m[3];
        let sd = 1.0 + d1 + d2 + d3 + d4;
        Recursive { n, d, m, bn: d.map(|v| v * sn / sd), bm: d.map(|v| v * sm / sd) }
    }

    /// ITK `FilterDataArray` on `inner` lines at once: `data` holds `n` rows, row i starting
    /// at `i * stride` and holding sample i of each of the `inner` lines (so lines along y or
    /// z are filtered with contiguous, vectorisable row operations instead of large strides);
    /// `out` receives rows `keep.0..=keep.1` only, `out_stride` apart. Per line the arithmetic
    /// is ITK's, step for step: the causal pass, the anti-causal pass, their sum, stored in
    /// single precision. The input is widened to double on reading, as ITK copies each line
    /// into a double buffer.
    fn filter_rows<T: Copy + Into<f64>>(
        &self,
        data: &[T],
        stride: usize,
        n: usize,
        inner: usize,
        keep: (usize, usize),
        scratch: &mut LineScratch,
        out: &mut [f32],
        out_stride: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, which is all the function is compiled for.
            return unsafe { self.filter_rows_avx2(data, stride, n, inner, keep, scratch, out, out_stride) };
        }
        self.filter_rows_body(data, stride, n, inner, keep, scratch, out, out_stride)
    }

    /// [`Self::filter_rows`] compiled with 256-bit vectors (4 lines per instruction instead
    /// of 2). AVX2 only, not FMA: Rust never fuses a multiply and an add on its own, so the
    /// arithmetic — and ITK's values — stay bit for bit the same.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn filter_rows_avx2<T: Copy + Into<f64>>(
        &self,
        data: &[T],
        stride: usize,
        n: usize,
        inner: usize,
        keep: (usize, usize),
        scratch: &mut LineScratch,
        out: &mut [f32],
        out_stride: usize,
    ) {
        self.filter_rows_body(data, stride, n, inner, keep, scratch, out, out_stride)
    }

    /// Only the rows kept are computed in full: the causal pass runs from the line's start to
    /// the last row kept, the anti-causal pass from the line's end back to the first row kept
    /// (each value is the one the whole line would give, computed the same way). The causal
    /// rows are stored; the anti-causal pass keeps only its last four rows, and each of its
    /// rows is added to the causal one and stored as soon as it is known.
    #[inline(always)]
    fn filter_rows_body<T: Copy + Into<f64>>(
        &self,
        data: &[T],
        stride: usize,
        n: usize,
        inner: usize,
        keep: (usize, usize),
        scratch: &mut LineScratch,
        out: &mut [f32],
        out_stride: usize,
    ) {
        let (nn, d, m, bn, bm) = (self.n, self.d, self.m, self.bn, self.bm);
        let ema = |a1: f64, b1: f64, a2: f64, b2: f64, a3: f64, b3: f64, a4: f64, b4: f64| a1 * b1 + a2 * b2 + a3 * b3 + a4 * b4;
        let row = |i: usize| &data[i * stride..i * stride + inner];
        let x = |i: usize, j: usize| -> f64 { data[i * stride + j].into() };
        let (first_kept, last_kept) = keep;
        debug_assert!(first_kept <= last_kept && last_kept < n && n >= 4);
        let causal_rows = last_kept.max(3) + 1;
        let (s1, recent, target) = scratch.buffers(causal_rows, inner);
        // Causal pass; the value before the line is its first sample, to infinity.
        for j in 0..inner {
            let v1 = x(0, j);
            let mut c = [0.0; 4];
            c[0] = ema(v1, nn[0], v1, nn[1], v1, nn[2], v1, nn[3]);
            c[1] = ema(x(1, j), nn[0], v1, nn[1], v1, nn[2], v1, nn[3]);
            c[2] = ema(x(2, j), nn[0], x(1, j), nn[1], v1, nn[2], v1, nn[3]);
            c[3] = ema(x(3, j), nn[0], x(2, j), nn[1], x(1, j), nn[2], v1, nn[3]);
            c[0] -= ema(v1, bn[0], v1, bn[1], v1, bn[2], v1, bn[3]);
            c[1] -= ema(c[0], d[0], v1, bn[1], v1, bn[2], v1, bn[3]);
            c[2] -= ema(c[1], d[0], c[0], d[1], v1, bn[2], v1, bn[3]);
            c[3] -= ema(c[2], d[0], c[1], d[1], c[0], d[2], v1, bn[3]);
            for (i, v) in c.iter().enumerate() {
                s1[i * inner + j] = *v;
            }
        }
        for i in 4..causal_rows {
            let (done, rest) = s1.split_at_mut(i * inner);
            let target = &mut rest[..inner];
            let (p1, p2, p3, p4) = (
                &done[(i - 1) * inner..i * inner],
                &done[(i - 2) * inner..(i - 1) * inner],
                &done[(i - 3) * inner..(i - 2) * inner],
                &done[(i - 4) * inner..(i - 3) * inner],
            );
            let (x0, x1, x2, x3) = (row(i), row(i - 1), row(i - 2), row(i - 3));
            // Zipped slices, so the row loop has no bounds checks and vectorises.
            let inputs = x0.iter().zip(x1).zip(x2).zip(x3);
            let previous = p1.iter().zip(p2).zip(p3).zip(p4);
            for (r, ((((a0, a1), a2), a3), (((q1, q2), q3), q4))) in target.iter_mut().zip(inputs.zip(previous)) {
                let mut v = ema((*a0).into(), nn[0], (*a1).into(), nn[1], (*a2).into(), nn[2], (*a3).into(), nn[3]);
                v -= ema(*q1, d[0], *q2, d[1], *q3, d[2], *q4, d[3]);
                *r = v;
            }
        }
        let s1 = &*s1;
        // Anti-causal pass; the value after the line is its last sample, to infinity.
        // `recent[(first + k) % 4]` holds row i + k of the pass while row i − 1 is computed.
        for j in 0..inner {
            let v2 = x(n - 1, j);
            let mut c = [0.0; 4]; // c[k] is row n − 1 − k
            c[0] = ema(v2, m[0], v2, m[1], v2, m[2], v2, m[3]);
            c[1] = ema(x(n - 1, j), m[0], v2, m[1], v2, m[2], v2, m[3]);
            c[2] = ema(x(n - 2, j), m[0], x(n - 1, j), m[1], v2, m[2], v2, m[3]);
            c[3] = ema(x(n - 3, j), m[0], x(n - 2, j), m[1], x(n - 1, j), m[2], v2, m[3]);
            c[0] -= ema(v2, bm[0], v2, bm[1], v2, bm[2], v2, bm[3]);
            c[1] -= ema(c[0], d[0], v2, bm[1], v2, bm[2], v2, bm[3]);
            c[2] -= ema(c[1], d[0], c[0], d[1], v2, bm[2], v2, bm[3]);
            c[3] -= ema(c[2], d[0], c[1], d[1], c[0], d[2], v2, bm[3]);
            for k in 0..4 {
                recent[3 - k][j] = c[k];
                let r = n - 1 - k;
                if (first_kept..=last_kept).contains(&r) {
                    out[(r - first_kept) * out_stride + j] = (s1[r * inner + j] + c[k]) as f32;
                }
            }
        }
        let mut first = 0;
        for i in (first_kept + 1..=n - 4).rev() {
            let (x0, x1, x2, x3) = (row(i), row(i + 1), row(i + 2), row(i + 3));
            let inputs = x0.iter().zip(x1).zip(x2).zip(x3);
            let r = |k: usize| &recent[(first + k) % 4];
            let previous = r(0).iter().zip(r(1)).zip(r(2)).zip(r(3));
            for (r, ((((a0, a1), a2), a3), (((q1, q2), q3), q4))) in target.iter_mut().zip(inputs.zip(previous)) {
                let mut v = ema((*a0).into(), m[0], (*a1).into(), m[1], (*a2).into(), m[2], (*a3).into(), m[3]);
                v -= ema(*q1, d[0], *q2, d[1], *q3, d[2], *q4, d[3]);
                *r = v;
            }
            if i - 1 <= last_kept {
                let r = (i - 1 - first_kept) * out_stride;
                for ((o, a), b) in out[r..r + inner].iter_mut().zip(&s1[(i - 1) * inner..i * inner]).zip(target.iter()) {
                    *o = (a + b) as f32;
                }
            }
            // The new row becomes the most recent; the oldest row's buffer is reused.
            first = (first + 3) % 4;
            std::mem::swap(target, &mut recent[first]);
        }
    }

    /// The reference the tests hold [`Self::filter_rows`] to.
    #[cfg(test)]
    /// ITK `FilterDataArray` on one contiguous line: causal pass into `outs`, anti-causal into
    /// `scratch`, summed (the same arithmetic as [`Self::filter_rows`] with one line).
    fn filter_line(&self, data: &[f64], outs: &mut [f64], scratch: &mut [f64]) {
        let ln = data.len();
        let (n, d, m, bn, bm) = (self.n, self.d, self.m, self.bn, self.bm);
        let ema = |a1: f64, b1: f64, a2: f64, b2: f64, a3: f64, b3: f64, a4: f64, b4: f64| a1 * b1 + a2 * b2 + a3 * b3 + a4 * b4;
        let s1 = outs;
        let v1 = data[0];
        s1[0] = ema(v1, n[0], v1, n[1], v1, n[2], v1, n[3]);
        s1[1] = ema(data[1], n[0], v1, n[1], v1, n[2], v1, n[3]);
        s1[2] = ema(data[2], n[0], data[1], n[1], v1, n[2], v1, n[3]);
        s1[3] = ema(data[3], n[0], data[2], n[1], data[1], n[2], v1, n[3]);
        s1[0] -= ema(v1, bn[0], v1, bn[1], v1, bn[2], v1, bn[3]);
        s1[1] -= ema(s1[0], d[0], v1, bn[1], v1, bn[2], v1, bn[3]);
        s1[2] -= ema(s1[1], d[0], s1[0], d[1], v1, bn[2], v1, bn[3]);
        s1[3] -= ema(s1[2], d[0], s1[1], d[1], s1[0], d[2], v1, bn[3]);
        for i in 4..ln {
            s1[i] = ema(data[i], n[0], data[i - 1], n[1], data[i - 2], n[2], data[i - 3], n[3]);
            s1[i] -= ema(s1[i - 1], d[0], s1[i - 2], d[1], s1[i - 3], d[2], s1[i - 4], d[3]);
        }
        let s2 = scratch;
        let v2 = data[ln - 1];
        s2[ln - 1] = ema(v2, m[0], v2, m[1], v2, m[2], v2, m[3]);
        s2[ln - 2] = ema(data[ln - 1], m[0], v2, m[1], v2, m[2], v2, m[3]);
        s2[ln - 3] = ema(data[ln - 2], m[0], data[ln - 1], m[1], v2, m[2], v2, m[3]);
        s2[ln - 4] = ema(data[ln - 3], m[0], data[ln - 2], m[1], data[ln - 1], m[2], v2, m[3]);
        s2[ln - 1] -= ema(v2, bm[0], v2, bm[1], v2, bm[2], v2, bm[3]);
        s2[ln - 2] -= ema(s2[ln - 1], d[0], v2, bm[1], v2, bm[2], v2, bm[3]);
        s2[ln - 3] -= ema(s2[ln - 2], d[0], s2[ln - 1], d[1], v2, bm[2], v2, bm[3]);
        s2[ln - 4] -= ema(s2[ln - 3], d[0], s2[ln - 2], d[1], s2[ln - 1], d[2], v2, bm[3]);
        for i in (1..=ln - 4).rev() {
            s2[i - 1] = ema(data[i], m[0], data[i + 1], m[1], data[i + 2], m[2], data[i + 3], m[3]);
            s2[i - 1] -= ema(s2[i], d[0], s2[i + 1], d[1], s2[i + 2], d[2], s2[i + 3], d[3]);
        }
        for i in 0..ln {
            s1[i] += s2[i];
        }
    }

    /// Filters the lines of the box `lo..=hi` of `image` (dims, x-fastest) along `axis`,
    /// each line running from `lo[axis]` to `hi[axis]`, and keeps samples `keep.0..=keep.1`
    /// of each line (counted from `lo[axis]`), in single precision as ITK stores them.
    /// Returns the kept box and its dims.
    fn apply<T: Copy + Into<f64> + Default>(
        &self,
        image: &[T],
        dims: [usize; 3],
        axis: usize,
        lo: [usize; 3],
        hi: [usize; 3],
        keep: (usize, usize),
    ) -> (Vec<f32>, [usize; 3]) {
        let n = hi[axis] - lo[axis] + 1;
        let mut odims = [0, 1, 2].map(|a| hi[a] - lo[a] + 1);
        odims[axis] = keep.1 - keep.0 + 1;
        let kept = odims[axis];
        let at = |d: [usize; 3], p: [usize; 3]| p[0] + d[0] * (p[1] + d[1] * p[2]);
        let mut out = vec![0f32; odims[0] * odims[1] * odims[2]];
        let mut scratch = LineScratch::default();
        if axis == 0 {
            // Lines along x, filtered one by one, would be bound by the latency of the
            // recursion; transposed in groups, their independent recursions interleave.
            const GROUP: usize = 16;
            let lines: Vec<usize> = (lo[2]..=hi[2]).flat_map(|z| (lo[1]..=hi[1]).map(move |y| at(dims, [lo[0], y, z]))).collect();
            let (mut rows, mut rows_out) = (vec![T::default(); n * GROUP], vec![0f32; kept * GROUP]);
            for (g, group) in lines.chunks(GROUP).enumerate() {
                let k = group.len();
                for (q, start) in group.iter().enumerate() {
                    for (i, v) in image[*start..*start + n].iter().enumerate() {
                        rows[i * k + q] = *v;
                    }
                }
                self.filter_rows(&rows[..n * k], k, n, k, keep, &mut scratch, &mut rows_out[..kept * k], k);
                for (q, line) in out[g * GROUP * kept..(g * GROUP + k) * kept].chunks_exact_mut(kept).enumerate() {
                    for (i, o) in line.iter_mut().enumerate() {
                        *o = rows_out[i * k + q];
                    }
                }
            }
        } else {
            // Lines along y and z are filtered side by side, as runs of adjacent columns,
            // in chunks narrow enough that the chunk's input and causal pass stay in the L2
            // cache until the anti-causal pass reads them again, but no narrower than 256
            // columns: short rows cost more in loop overhead than they save.
            const CACHE_BUDGET: usize = 384 * 1024;
            let width = (CACHE_BUDGET / (16 * n)).clamp(256, 4096);
            let (stride, out_stride) = (if axis == 1 { dims[0] } else { dims[0] * dims[1] }, if axis == 1 { odims[0] } else { odims[0] * odims[1] });
            // (input start, output start, columns) of each run.
            let runs: Vec<(usize, usize, usize)> = if axis == 1 {
                (lo[2]..=hi[2]).map(|z| (at(dims, [lo[0], lo[1], z]), at(odims, [0, 0, z - lo[2]]), odims[0])).collect()
            } else if odims[0] == dims[0] {
                vec![(at(dims, [0, lo[1], lo[2]]), 0, odims[0] * odims[1])]
            } else {
                (lo[1]..=hi[1]).map(|y| (at(dims, [lo[0], y, lo[2]]), at(odims, [0, y - lo[1], 0]), odims[0])).collect()
            };
            for (start, out_start, columns) in runs {
                let mut j = 0;
                while j < columns {
                    let k = width.min(columns - j);
                    let (a, b) = (start + j, out_start + j);
                    self.filter_rows(&image[a..a + (n - 1) * stride + k], stride, n, k, keep, &mut scratch, &mut out[b..b + (kept - 1) * out_stride + k], out_stride);
                    j += k;
                }
            }
        }
        (out, odims)
    }
}

/// Work buffers of [`Recursive::filter_rows`], reused over the chunks of a pass: the whole
/// causal pass of a chunk, the anti-causal pass's four most recent rows and the row being
/// computed.
#[derive(Default)]
struct LineScratch {
    causal: Vec<f64>,
    recent: [Vec<f64>; 4],
    target: Vec<f64>,
}

impl LineScratch {
    fn buffers(&mut self, n: usize, inner: usize) -> (&mut [f64], &mut [Vec<f64>; 4], &mut Vec<f64>) {
        if self.causal.len() < n * inner {
            self.causal.resize(n * inner, 0.0);
        }
        for r in self.recent.iter_mut().chain(std::iter::once(&mut self.target)) {
            if r.len() < inner {
                r.resize(inner, 0.0);
            }
        }
        (&mut self.causal[..n * inner], &mut self.recent, &mut self.target)
    }
}

/// The LoG image over the output box `lo..=hi` of `image` (dims, x-fastest, spacing in mm).
/// Every axis of the image must have at least 4 voxels.
pub fn log_filter(image: &[f64], dims: [usize; 3], spacing: [f64; 3], sigma: f64, lo: [usize; 3], hi: [usize; 3]) -> Vec<f64> {
    // The working box: the output box plus the margin, cut at the image's ends.
    let (mut blo, mut bhi) = ([0usize; 3], [0usize; 3]);
    for a in 0..3 {
        let margin = (22.0 * sigma / spacing[a]).ceil() as usize + 8;
        blo[a] = lo[a].saturating_sub(margin);
        bhi[a] = (hi[a] + margin).min(dims[a] - 1);
    }
    let cdims = [0, 1, 2].map(|a| hi[a] - lo[a] + 1);
    let mut cumulative = vec![0f32; cdims[0] * cdims[1] * cdims[2]];
    // The output box's samples on a line of the working box along `axis`.
    let keep = |axis: usize| (lo[axis] - blo[axis], hi[axis] - blo[axis]);
    for dim in 0..3 {
        // ∂²/∂x_dim² along every line of the box, then smoothing along the other two axes
        // in increasing order. A pass only needs the lines that reach the output box, so
        // each pass keeps only the output box's samples along the axis it filtered: the
        // values kept are the same, computed in the same order, as over the whole box.
        let second = Recursive::gaussian(sigma, spacing[dim], true);
        let (mut current, mut current_dims) = second.apply(image, dims, dim, blo, bhi, keep(dim));
        for dir in (0..3).filter(|d| *d != dim) {
            let smooth = Recursive::gaussian(sigma, spacing[dir], false);
            (current, current_dims) = smooth.apply(&current, current_dims, dir, [0; 3], current_dims.map(|n| n - 1), keep(dir));
        }
        debug_assert_eq!(current.len(), cumulative.len());
        let scale = 1.0 / (spacing[dim] * spacing[dim]);
        for (c, v) in cumulative.iter_mut().zip(&current) {
            *c = (*c as f64 + *v as f64 * scale) as f32;
        }
    }
    cumulative.into_iter().map(f64::from).collect()
}

/// The values of `data` (dims, x-fastest) in the inclusive box `lo..=hi`, and its dims: the
/// reference the tests hold the narrowed passes to.
#[cfg(test)]
fn sub_box<T: Copy>(data: &[T], dims: [usize; 3], lo: [usize; 3], hi: [usize; 3]) -> (Vec<T>, [usize; 3]) {
    let out_dims = [0, 1, 2].map(|a| hi[a] - lo[a] + 1);
    let mut out = Vec::with_capacity(out_dims[0] * out_dims[1] * out_dims[2]);
    for z in lo[2]..=hi[2] {
        for y in lo[1]..=hi[1] {
            let row = dims[0] * (y + dims[1] * z);
            out.extend_from_slice(&data[row + lo[0]..=row + hi[0]]);
        }
    }
    (out, out_dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_laplacian_of_a_parabola_is_exact_and_of_a_constant_is_zero() {
        // x² + 2y² − z² has Laplacian 2 + 4 − 2 = 4 everywhere; σ² scales it. The recursive
        // filters are normalised to be exact on polynomials up to degree 2, away from the
        // ends (whose constant extension bends the parabola).
        let dims = [40, 40, 40];
        let spacing = [1.0, 0.8, 1.5];
        let sigma = 1.5;
        let mut img = Vec::new();
        for z in 0..40 {
            for y in 0..40 {
                for x in 0..40 {
                    let (px, py, pz) = (x as f64 * spacing[0] - 20.0, y as f64 * spacing[1] - 16.0, z as f64 * spacing[2] - 30.0);
                    img.push(px * px + 2.0 * py * py - pz * pz);
                }
            }
        }
        let v = log_filter(&img, dims, spacing, sigma, [20, 20, 20], [20, 20, 20]);
        assert!((v[0] - 4.0 * sigma * sigma).abs() < 1e-3 * 9.0, "{}", v[0]);
        let flat = log_filter(&vec![7.0; 64000], dims, spacing, sigma, [0, 0, 0], [39, 39, 39]);
        assert!(flat.iter().all(|v| v.abs() < 1e-4));
    }

    #[test]
    fn a_box_gives_the_whole_image_values() {
        let dims = [60, 50, 12];
        let img: Vec<f64> = (0..dims[0] * dims[1] * dims[2]).map(|i| ((i * 7919) % 101) as f64 + (i as f64 * 0.01).sin() * 30.0).collect();
        let spacing = [0.7, 0.7, 3.0];
        let whole = log_filter(&img, dims, spacing, 1.0, [0, 0, 0], [59, 49, 11]);
        let part = log_filter(&img, dims, spacing, 1.0, [30, 25, 5], [33, 27, 6]);
        let mut k = 0;
        for z in 5..=6 {
            for y in 25..=27 {
                for x in 30..=33 {
                    let w = whole[x + 60 * (y + 50 * z)];
                    assert!((w - part[k]).abs() <= 1e-5 * w.abs().max(1.0), "{w} {}", part[k]);
                    k += 1;
                }
            }
        }
    }

    #[test]
    fn rows_of_lines_filter_as_single_lines() {
        let n = 23;
        let lines: Vec<Vec<f64>> = (0..5).map(|k| (0..n).map(|i| ((i * 31 + k * 17) % 29) as f64 - 9.0 + k as f64 * 0.1).collect()).collect();
        for second in [false, true] {
            let r = Recursive::gaussian(2.0, 0.7, second);
            let rows: Vec<f64> = (0..n).flat_map(|i| lines.iter().map(move |l| l[i])).collect();
            let mut out = vec![0f32; n * 5];
            r.filter_rows(&rows, 5, n, 5, (0, n - 1), &mut LineScratch::default(), &mut out, 5);
            for (k, line) in lines.iter().enumerate() {
                let (mut o, mut sc) = (vec![0.0; n], vec![0.0; n]);
                r.filter_line(line, &mut o, &mut sc);
                for i in 0..n {
                    assert_eq!(out[i * 5 + k], o[i] as f32, "line {k}, sample {i}");
                }
            }
            // Columns 1..4 only, read and written with the full row stride (the chunks `apply`
            // uses for wide slabs): the same values, the other columns untouched.
            let mut part = vec![-1f32; n * 5];
            r.filter_rows(&rows[1..(n - 1) * 5 + 4], 5, n, 3, (0, n - 1), &mut LineScratch::default(), &mut part[1..(n - 1) * 5 + 4], 5);
            for i in 0..n {
                assert_eq!(&part[i * 5 + 1..i * 5 + 4], &out[i * 5 + 1..i * 5 + 4], "sample {i}");
                assert_eq!((part[i * 5], part[i * 5 + 4]), (-1.0, -1.0));
            }
        }
    }

    #[test]
    fn a_pass_over_a_box_or_part_of_its_lines_equals_that_part_of_a_whole_image_pass() {
        // Every layout `apply` has: transposed x lines, y runs per slice, z runs merged
        // across rows (whole x) or one per row (narrowed x); lines cut at both ends.
        let dims = [37, 29, 11];
        let img: Vec<f32> = (0..dims[0] * dims[1] * dims[2]).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
        let r = Recursive::gaussian(1.7, 0.9, false);
        let boxes = [([3, 5, 2], [30, 20, 9]), ([0, 0, 0], [36, 28, 10]), ([0, 4, 1], [36, 25, 8]), ([9, 0, 0], [12, 28, 10])];
        for axis in 0..3 {
            for (lo, hi) in boxes {
                // The reference: the box's own lines copied out, then filtered whole.
                let (cut, cut_dims) = sub_box(&img, dims, lo, hi);
                let whole_line = (0, cut_dims[axis] - 1);
                let (expected, _) = r.apply(&cut, cut_dims, axis, [0; 3], cut_dims.map(|n| n - 1), whole_line);
                let (got, got_dims) = r.apply(&img, dims, axis, lo, hi, whole_line);
                assert_eq!(got_dims, cut_dims);
                assert!(got == expected, "axis {axis}, box {lo:?}..={hi:?}");
                // Keeping part of each line gives that part of the whole lines.
                let last = cut_dims[axis] - 1;
                for keep in [(0, 0), (2, 5.min(last)), (0, 3), (1, last), (last, last)] {
                    let (part, part_dims) = r.apply(&img, dims, axis, lo, hi, keep);
                    let (mut l, mut h) = ([0; 3], cut_dims.map(|n| n - 1));
                    (l[axis], h[axis]) = keep;
                    let (expected_part, expected_dims) = sub_box(&expected, cut_dims, l, h);
                    assert_eq!(part_dims, expected_dims);
                    assert!(part == expected_part, "axis {axis}, box {lo:?}..={hi:?}, keep {keep:?}");
                }
            }
        }
    }

    #[test]
    fn names_and_limits_follow_pyradiomics() {
        assert_eq!(prefix("1.0"), "log-sigma-1-0-mm-3D");
        assert_eq!(prefix("3"), "log-sigma-3-mm-3D");
        assert!(sigma_fits(5.0, [256, 256, 25], [0.5, 0.5, 4.0]));
        assert!(!sigma_fits(5.0, [256, 256, 2], [0.5, 0.5, 4.0]));
        assert!(!sigma_fits(50.0, [256, 256, 12], [0.5, 0.5, 4.0]));
    }
}
