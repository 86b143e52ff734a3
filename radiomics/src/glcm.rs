//! Grey level co-occurrence matrix (IBSI 3.6, LFYI).
//!
//! For a direction δ, M[i][j] counts ROI voxel pairs (v, v+δ) with grey levels i and j,
//! counted both ways (symmetric; PyRadiomics `symmetricalGLCM: false` counts one way). The
//! directions are those at the Chebyshev distances in `distances` (default 1: 13 in 3D). With p = M/ΣM, marginals p_x(i) = Σ_j p_ij, the diagonal
//! and cross sums p_{x−y}(k) = Σ_{|i−j|=k} p_ij and p_{x+y}(k) = Σ_{i+j=k} p_ij, μ = Σ i p_ij:
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Joint maximum | GYBY | max p_ij |
//! | Joint average | 60VM | μ = Σ i p_ij |
//! | Joint variance | UR99 | Σ (i − μ)² p_ij |
//! | Joint entropy | TU9B | −Σ p_ij log2 p_ij |
//! | Difference average | TF7R | μ_d = Σ k p_{x−y}(k) |
//! | Difference variance | D3YU | Σ (k − μ_d)² p_{x−y}(k) |
//! | Difference entropy | NTRS | −Σ p_{x−y}(k) log2 p_{x−y}(k) |
//! | Sum average | ZGXS | μ_s = Σ k p_{x+y}(k) |
//! | Sum variance | OEEB | Σ (k − μ_s)² p_{x+y}(k) |
//! | Sum entropy | P6QZ | −Σ p_{x+y}(k) log2 p_{x+y}(k) |
//! | Angular second moment | 8ZQL | Σ p_ij² |
//! | Contrast | ACUI | Σ (i − j)² p_ij |
//! | Dissimilarity | 8S9J | Σ \|i − j\| p_ij |
//! | Inverse difference | IB1Z | Σ p_{x−y}(k)/(1 + k) |
//! | Normalised inverse difference | NDRX | Σ p_{x−y}(k)/(1 + k/Ng) |
//! | Inverse difference moment | WF0Z | Σ p_{x−y}(k)/(1 + k²) |
//! | Normalised inverse difference moment | 1QCO | Σ p_{x−y}(k)/(1 + (k/Ng)²) |
//! | Inverse variance | E8JP | Σ_{k≥1} p_{x−y}(k)/k² |
//! | Correlation | NI2N | (Σ i j p_ij − μ_x μ_y)/(σ_x σ_y); 1 when σ_x σ_y = 0 |
//! | Autocorrelation | QWB0 | Σ i j p_ij |
//! | Cluster tendency | DG8W | Σ (i + j − μ_x − μ_y)² p_ij |
//! | Cluster shade | 7NFM | Σ (i + j − μ_x − μ_y)³ p_ij |
//! | Cluster prominence | AE86 | Σ (i + j − μ_x − μ_y)⁴ p_ij |
//! | Information correlation 1 | R8DG | (HXY − HXY1)/max(HX, HY) |
//! | Information correlation 2 | JN9H | √(1 − exp(−2 (HXY2 − HXY))) |
//!
//! HX, HY: entropies of the marginals; HXY1 = −Σ p_ij log2(p_x(i) p_y(j));
//! HXY2 = −Σ p_x(i) p_y(j) log2(p_x(i) p_y(j)).
//!
//! PyRadiomics' maximal correlation coefficient (`MCC`, no IBSI code, computed only when
//! [`TextureSettings::maximal_correlation`] asks): √(second largest eigenvalue of
//! Q(i, j) = Σ_k p_ik p_jk/(p_x(i) p_y(k))), 1 for a region of one grey level. Q = D_x⁻¹ P D_y⁻¹ Pᵀ
//! is similar to the symmetric B Bᵀ with B = D_x^{-1/2} P D_y^{-1/2}, so its eigenvalues
//! are those of B Bᵀ ([`maximal_correlation`], [`symmetric_eigenvalues`]). One known
//! difference: with `symmetricalGLCM: false`, a direction whose second eigenvalue is 0 can come
//! out of numpy's non-symmetric `eigvals` as −1e−17, whose square root PyRadiomics then drops
//! from its average as NaN; FedRad counts it as 0 (seen on small random ROIs; the symmetric
//! default has no such case).

use super::texture::{CountMatrix, TextureSettings, directional, directions, entropy, named, without_ibsi_codes};
use super::{Aggregation, Feature, GreyLevels, PaddedLevels};

pub const FEATURES: [(&str, &str); 25] = [
    ("JointMaximum", "GYBY"),
    ("JointAverage", "60VM"),
    ("JointVariance", "UR99"),
    ("JointEntropy", "TU9B"),
    ("DifferenceAverage", "TF7R"),
    ("DifferenceVariance", "D3YU"),
    ("DifferenceEntropy", "NTRS"),
    ("SumAverage", "ZGXS"),
    ("SumVariance", "OEEB"),
    ("SumEntropy", "P6QZ"),
    ("AngularSecondMoment", "8ZQL"),
    ("Contrast", "ACUI"),
    ("Dissimilarity", "8S9J"),
    ("InverseDifference", "IB1Z"),
    ("NormalisedInverseDifference", "NDRX"),
    ("InverseDifferenceMoment", "WF0Z"),
    ("NormalisedInverseDifferenceMoment", "1QCO"),
    ("InverseVariance", "E8JP"),
    ("Correlation", "NI2N"),
    ("Autocorrelation", "QWB0"),
    ("ClusterTendency", "DG8W"),
    ("ClusterShade", "7NFM"),
    ("ClusterProminence", "AE86"),
    ("InformationCorrelation1", "R8DG"),
    ("InformationCorrelation2", "JN9H"),
];

/// The co-occurrence counts of one grid in direction `d` (within the grid's border): M[a][b]
/// counts voxels of level a whose neighbour at +d has level b, and, when `symmetric`, also
/// the reverse.
pub fn matrix(grid: &PaddedLevels, d: [isize; 3], symmetric: bool) -> CountMatrix {
    let ng = grid.ng as usize;
    let mut m = CountMatrix::new(ng, ng);
    let step = grid.offset(d);
    grid.for_each_roi_voxel(|i, a| {
        let b = grid.at(i, step);
        if b > 0 {
            m.add(a as usize - 1, b as usize - 1, 1.0);
            if symmetric {
                m.add(b as usize - 1, a as usize - 1, 1.0);
            }
        }
    });
    m
}

pub fn from_matrix(m: &CountMatrix) -> Vec<f64> {
    let ng = m.rows;
    let total = m.total();
    let p = |i: usize, j: usize| m.at(i, j) / total;
    let (mut px, mut py) = (vec![0.0; ng], vec![0.0; ng]);
    let mut diff = vec![0.0; ng];
    let mut sum = vec![0.0; 2 * ng + 1];
    let (mut mu, mut mu_y, mut asm, mut contrast, mut dissim, mut autocorr, mut jmax) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0f64);
    for i in 0..ng {
        for j in 0..ng {
            let v = p(i, j);
            if v == 0.0 {
                continue;
            }
            let (gi, gj) = ((i + 1) as f64, (j + 1) as f64);
            px[i] += v;
            py[j] += v;
            diff[i.abs_diff(j)] += v;
            sum[i + j + 2] += v;
            mu += gi * v;
            mu_y += gj * v;
            asm += v * v;
            contrast += (gi - gj).powi(2) * v;
            dissim += (gi - gj).abs() * v;
            autocorr += gi * gj * v;
            jmax = jmax.max(v);
        }
    }
    let (mut var, mut var_y, mut tendency, mut shade, mut prominence, mut hxy1) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for i in 0..ng {
        for j in 0..ng {
            let v = p(i, j);
            if v == 0.0 {
                continue;
            }
            let (gi, gj) = ((i + 1) as f64, (j + 1) as f64);
            var += (gi - mu).powi(2) * v;
            var_y += (gj - mu_y).powi(2) * v;
            let c = gi + gj - mu - mu_y;
            tendency += c * c * v;
            shade += c.powi(3) * v;
            prominence += c.powi(4) * v;
            hxy1 -= v * (px[i] * py[j]).log2();
        }
    }
    let mut hxy2 = 0.0;
    for i in 0..ng {
        for j in 0..ng {
            let q = px[i] * py[j];
            if q > 0.0 {
                hxy2 -= q * q.log2();
            }
        }
    }
    let hxy = entropy(m.data.iter().map(|v| v / total));
    let (hx, hy) = (entropy(px.iter().copied()), entropy(py.iter().copied()));
    let mu_d: f64 = diff.iter().enumerate().map(|(k, v)| k as f64 * v).sum();
    let var_d: f64 = diff.iter().enumerate().map(|(k, v)| (k as f64 - mu_d).powi(2) * v).sum();
    let mu_s: f64 = sum.iter().enumerate().map(|(k, v)| k as f64 * v).sum();
    let var_s: f64 = sum.iter().enumerate().map(|(k, v)| (k as f64 - mu_s).powi(2) * v).sum();
    let ngf = ng as f64;
    let id: f64 = diff.iter().enumerate().map(|(k, v)| v / (1.0 + k as f64)).sum();
    let idn: f64 = diff.iter().enumerate().map(|(k, v)| v / (1.0 + k as f64 / ngf)).sum();
    let idm: f64 = diff.iter().enumerate().map(|(k, v)| v / (1.0 + (k * k) as f64)).sum();
    let idmn: f64 = diff.iter().enumerate().map(|(k, v)| v / (1.0 + (k as f64 / ngf).powi(2))).sum();
    let inv_var: f64 = diff.iter().enumerate().skip(1).map(|(k, v)| v / (k * k) as f64).sum();
    // A matrix of one grey level has no spread: its correlation is 1, as in PyRadiomics
    // (IBSI leaves it undefined).
    let correlation = if var * var_y > 0.0 { (autocorr - mu * mu_y) / (var.sqrt() * var_y.sqrt()) } else { 1.0 };
    let ic1 = if hx.max(hy) > 0.0 { (hxy - hxy1) / hx.max(hy) } else { 0.0 };
    let ic2 = (1.0 - (-2.0 * (hxy2 - hxy)).exp()).max(0.0).sqrt();
    vec![
        jmax,
        mu,
        var,
        hxy,
        mu_d,
        var_d,
        entropy(diff.iter().copied()),
        mu_s,
        var_s,
        entropy(sum.iter().copied()),
        asm,
        contrast,
        dissim,
        id,
        idn,
        idm,
        idmn,
        inv_var,
        correlation,
        autocorr,
        tendency,
        shade,
        prominence,
        ic1,
        ic2,
    ]
}

/// GLCM features of a grid. `spacing` (mm) weighs directions when `t.weighting` is set.
/// IBSI's GLCM is symmetric at one distance: an asymmetric one (PyRadiomics
/// `symmetricalGLCM: false`) or other `distances` keep the names but drop the IBSI codes.
pub fn features(g: &GreyLevels, agg: Aggregation, t: &TextureSettings, spacing: [f64; 3]) -> Vec<Feature> {
    let dirs = directions(&t.distances, false);
    let weight = t.weighting.map(|w| move |d: [isize; 3]| w.glcm_weight(d, spacing));
    let weight = weight.as_ref().map(|w| w as &dyn Fn([isize; 3]) -> f64);
    let matrix_of = |g: &PaddedLevels, d: [isize; 3]| matrix(g, d, t.symmetrical_glcm);
    let out = if t.maximal_correlation {
        // PyRadiomics' Q has a row per grey level present in the ROI; with one level the
        // region is flat and MCC is 1 whatever a direction's matrix holds.
        let mut present: Vec<u32> = g.levels.iter().copied().filter(|l| *l > 0).collect();
        present.sort_unstable();
        present.dedup();
        let flat = present.len() < 2;
        let with_mcc = |m: &CountMatrix| {
            let mut v = from_matrix(m);
            v.push(if flat { 1.0 } else { maximal_correlation(m) });
            v
        };
        let values = directional(g, agg, &dirs, weight, &matrix_of, &with_mcc);
        let (values, mcc) = match values {
            Some(mut v) => {
                let mcc = v.pop().unwrap_or(f64::NAN);
                (Some(v), mcc)
            }
            None => (None, f64::NAN),
        };
        let mut out = named("glcm", &FEATURES, values, agg);
        out.push(super::feature("glcm_MaximalCorrelationCoefficient", mcc, "", Some(agg)));
        out
    } else {
        named("glcm", &FEATURES, directional(g, agg, &dirs, weight, &matrix_of, &from_matrix), agg)
    };
    without_ibsi_codes(out, t.symmetrical_glcm && t.ibsi_distances())
}

/// PyRadiomics' MCC of one matrix: the square root of the second largest eigenvalue of
/// B Bᵀ, B(i, k) = p_ik/√(p_x(i) p_y(k)), over the grey levels that occur in it (the others
/// give Q zero rows and columns, eigenvalue 0).
pub fn maximal_correlation(m: &CountMatrix) -> f64 {
    let ng = m.rows;
    let total = m.total();
    let (mut px, mut py) = (vec![0.0; ng], vec![0.0; ng]);
    for i in 0..ng {
        for j in 0..ng {
            let v = m.at(i, j) / total;
            px[i] += v;
            py[j] += v;
        }
    }
    let rows: Vec<usize> = (0..ng).filter(|i| px[*i] > 0.0).collect();
    let cols: Vec<usize> = (0..ng).filter(|k| py[*k] > 0.0).collect();
    let n = rows.len();
    if n < 2 {
        return 0.0;
    }
    let b: Vec<Vec<f64>> = rows.iter().map(|&i| cols.iter().map(|&k| m.at(i, k) / total / (px[i] * py[k]).sqrt()).collect()).collect();
    // A symmetric GLCM (the default) gives a symmetric B, and the eigenvalues of B Bᵀ = B² are
    // the squares of B's: the second largest |λ| of B is MCC, without the product.
    let symmetric = rows == cols && (0..n).all(|r| (r + 1..n).all(|s| b[r][s] == b[s][r]));
    if symmetric { second_singular_value_symmetric(&b) } else { second_singular_value(&b) }
}

/// The second largest singular value of a symmetric B: its second largest |eigenvalue|.
fn second_singular_value_symmetric(b: &[Vec<f64>]) -> f64 {
    let mut magnitudes: Vec<f64> = symmetric_eigenvalues(b.concat(), b.len()).into_iter().map(f64::abs).collect();
    magnitudes.sort_by(|a, b| b.total_cmp(a));
    magnitudes[1]
}

/// The second largest singular value of B (n rows): √ of the second largest eigenvalue of B Bᵀ.
fn second_singular_value(b: &[Vec<f64>]) -> f64 {
    let n = b.len();
    let mut c = vec![0.0; n * n];
    for r in 0..n {
        for s in r..n {
            let v: f64 = b[r].iter().zip(&b[s]).map(|(x, y)| x * y).sum();
            c[r * n + s] = v;
            c[s * n + r] = v;
        }
    }
    let mut eigenvalues = symmetric_eigenvalues(c, n);
    eigenvalues.sort_by(|a, b| b.total_cmp(a));
    eigenvalues[1].max(0.0).sqrt()
}

/// Eigenvalues of a symmetric n × n matrix (row-major): Householder reduction to a
/// tridiagonal matrix, then the implicit QL iteration with Wilkinson shifts (EISPACK's
/// tred1 and tql1, as in Numerical Recipes' `tred2`/`tqli` without eigenvectors). About
/// 4n³/3 operations, a tenth of cyclic Jacobi's, which matters with 13 directions on every
/// filtered image; backward stable, so eigenvalues are exact to ~ε‖C‖.
pub fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    let at = |r: usize, c: usize| r * n + c;
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    for i in (1..n).rev() {
        let l = i - 1;
        let mut h = 0.0;
        if l > 0 {
            let scale: f64 = (0..=l).map(|k| a[at(i, k)].abs()).sum();
            if scale == 0.0 {
                e[i] = a[at(i, l)];
            } else {
                for k in 0..=l {
                    a[at(i, k)] /= scale;
                    h += a[at(i, k)] * a[at(i, k)];
                }
                let f = a[at(i, l)];
                let g = if f >= 0.0 { -h.sqrt() } else { h.sqrt() };
                e[i] = scale * g;
                h -= f * g;
                a[at(i, l)] = f - g;
                let mut f = 0.0;
                for j in 0..=l {
                    let mut g = 0.0;
                    for k in 0..=j {
                        g += a[at(j, k)] * a[at(i, k)];
                    }
                    for k in j + 1..=l {
                        g += a[at(k, j)] * a[at(i, k)];
                    }
                    e[j] = g / h;
                    f += e[j] * a[at(i, j)];
                }
                let hh = f / (h + h);
                for j in 0..=l {
                    let f = a[at(i, j)];
                    let g = e[j] - hh * f;
                    e[j] = g;
                    for k in 0..=j {
                        a[at(j, k)] -= f * e[k] + g * a[at(i, k)];
                    }
                }
            }
        } else {
            e[i] = a[at(i, l)];
        }
        d[i] = h;
    }
    for (i, di) in d.iter_mut().enumerate() {
        *di = a[at(i, i)];
    }
    // Implicit QL on the tridiagonal (d, e), e shifted so that e[i] couples i and i + 1.
    for i in 1..n {
        e[i - 1] = e[i];
    }
    if n > 0 {
        e[n - 1] = 0.0;
    }
    for l in 0..n {
        let mut iterations = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iterations += 1;
            if iterations > 60 {
                break;
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + if g >= 0.0 { r.abs() } else { -r.abs() });
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut deflated = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                r = (f * f + g * g).sqrt();
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    deflated = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if deflated {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Σλᵏ = trace(Aᵏ) for k = 1, 2, 3 pins down a spectrum to within reordering far better
    /// than any tolerance the features need; plus a diagonal and a tiny case.
    #[test]
    fn eigenvalues_keep_the_traces_of_the_matrix_powers() {
        let mut state = 0x2545_f491_u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for n in [1usize, 2, 3, 7, 32, 61] {
            let mut a = vec![0.0; n * n];
            for r in 0..n {
                for c in r..n {
                    let v = next();
                    a[r * n + c] = v;
                    a[c * n + r] = v;
                }
            }
            let product = |x: &[f64], y: &[f64]| {
                let mut z = vec![0.0; n * n];
                for r in 0..n {
                    for k in 0..n {
                        for c in 0..n {
                            z[r * n + c] += x[r * n + k] * y[k * n + c];
                        }
                    }
                }
                z
            };
            let a2 = product(&a, &a);
            let a3 = product(&a2, &a);
            let trace = |m: &[f64]| (0..n).map(|i| m[i * n + i]).sum::<f64>();
            let ev = symmetric_eigenvalues(a.clone(), n);
            for (k, expected) in [(1, trace(&a)), (2, trace(&a2)), (3, trace(&a3))] {
                let got: f64 = ev.iter().map(|l| l.powi(k)).sum();
                assert!((got - expected).abs() <= 1e-10 * (1.0 + expected.abs()), "n {n}, power {k}: {got} vs {expected}");
            }
        }
        let mut diagonal = symmetric_eigenvalues(vec![3.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 2.0], 3);
        diagonal.sort_by(f64::total_cmp);
        assert_eq!(diagonal, [-1.0, 2.0, 3.0]);
    }

    /// The symmetric shortcut (|eigenvalues| of B) and the general path (eigenvalues of B Bᵀ)
    /// agree on a symmetric B.
    #[test]
    fn the_symmetric_shortcut_equals_the_product_path() {
        let n = 9;
        let b: Vec<Vec<f64>> = (0..n).map(|r| (0..n).map(|c| (((r * c + r + c) % 7) as f64 - 2.5) / 10.0).collect()).collect();
        let (short, general) = (second_singular_value_symmetric(&b), second_singular_value(&b));
        assert!((short - general).abs() < 1e-12, "{short} vs {general}");
        // An asymmetric count matrix (one-way pairs) takes the general path and stays in [0, 1].
        let one_way = CountMatrix { rows: 3, cols: 3, data: vec![2.0, 1.0, 0.0, 0.0, 3.0, 1.0, 1.0, 0.0, 2.0], voxels: 0.0 };
        let mcc = maximal_correlation(&one_way);
        assert!((0.0..=1.0).contains(&mcc), "{mcc}");
    }

    /// Two grey levels that never meet have two independent blocks: maximal correlation 1.
    /// Two levels paired at random (independent) have none: 0.
    #[test]
    fn maximal_correlation_is_one_for_separate_blocks_and_zero_for_independence() {
        let blocks = CountMatrix { rows: 2, cols: 2, data: vec![5.0, 0.0, 0.0, 3.0], voxels: 0.0 };
        assert!((maximal_correlation(&blocks) - 1.0).abs() < 1e-12);
        let independent = CountMatrix { rows: 2, cols: 2, data: vec![4.0, 4.0, 4.0, 4.0], voxels: 0.0 };
        assert!(maximal_correlation(&independent).abs() < 1e-7);
    }
}
