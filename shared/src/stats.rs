//! Statistical distributions and tests computed from aggregates.
//!
//! Everything here works on sufficient statistics (counts, moments, count histograms on a
//! shared grid), never on rows, so the coordinator can run it on what sites send. The
//! special functions follow the classic continued-fraction/series forms (Numerical
//! Recipes ch. 6; Lanczos for log-gamma) and are tested against SciPy values.

/// Count, mean and centred sum of squares, merged across sites with Chan et al.'s pairwise
/// update, which stays accurate where raw sums of squares of large values would cancel.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Moments {
    pub n: f64,
    pub mean: f64,
    /// Σ (x - mean)²
    pub m2: f64,
}

impl Moments {
    pub fn from_values(values: &[f64]) -> Self {
        let n = values.len() as f64;
        if values.is_empty() {
            return Moments::default();
        }
        let mean = values.iter().sum::<f64>() / n;
        let m2 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        Moments { n, mean, m2 }
    }

    pub fn merge(self, other: Moments) -> Moments {
        if self.n == 0.0 {
            return other;
        }
        if other.n == 0.0 {
            return self;
        }
        let n = self.n + other.n;
        let delta = other.mean - self.mean;
        Moments { n, mean: self.mean + delta * other.n / n, m2: self.m2 + other.m2 + delta * delta * self.n * other.n / n }
    }

    /// Sample variance (n - 1 denominator).
    pub fn variance(&self) -> f64 {
        if self.n > 1.0 { self.m2 / (self.n - 1.0) } else { f64::NAN }
    }

    pub fn sd(&self) -> f64 {
        self.variance().sqrt()
    }
}

/// Result of a hypothesis test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestResult {
    pub statistic: f64,
    /// Degrees of freedom where the test has them.
    pub df: Option<f64>,
    pub p_value: f64,
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error < 1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_93,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_13,
        -176.615_029_162_140_59,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_571_6e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps accuracy near zero.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

const EPS: f64 = 1e-16;
const TINY: f64 = 1e-300;
const MAX_ITER: usize = 10_000;

/// Regularised upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < a + 1.0 { 1.0 - gamma_p_series(a, x) } else { gamma_q_continued_fraction(a, x) }
}

fn gamma_p_series(a: f64, x: f64) -> f64 {
    let mut ap = a;
    let mut sum = 1.0 / a;
    let mut del = sum;
    for _ in 0..MAX_ITER {
        ap += 1.0;
        del *= x / ap;
        sum += del;
        if del.abs() < sum.abs() * EPS {
            break;
        }
    }
    sum * (-x + a * x.ln() - ln_gamma(a)).exp()
}

fn gamma_q_continued_fraction(a: f64, x: f64) -> f64 {
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..MAX_ITER {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    (-x + a * x.ln() - ln_gamma(a)).exp() * h
}

/// Regularised incomplete beta I_x(a, b).
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) { ln_front.exp() * beta_continued_fraction(a, b, x) / a } else { 1.0 - ln_front.exp() * beta_continued_fraction(b, a, 1.0 - x) / b }
}

fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// Complementary error function.
pub fn erfc(x: f64) -> f64 {
    if x >= 0.0 { gamma_q(0.5, x * x) } else { 2.0 - gamma_q(0.5, x * x) }
}

/// Upper tail of the standard normal, P(Z > z).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Upper tail of χ² with `df` degrees of freedom.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    gamma_q(df / 2.0, x / 2.0)
}

/// Two-sided p-value of Student's t with `df` degrees of freedom.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    beta_inc(df / 2.0, 0.5, df / (df + t * t))
}

/// Welch's unequal-variance t-test from each group's moments.
pub fn welch_t_test(a: Moments, b: Moments) -> Option<TestResult> {
    if a.n < 2.0 || b.n < 2.0 {
        return None;
    }
    let (va, vb) = (a.variance() / a.n, b.variance() / b.n);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return None;
    }
    let t = (a.mean - b.mean) / se2.sqrt();
    let df = se2 * se2 / (va * va / (a.n - 1.0) + vb * vb / (b.n - 1.0));
    Some(TestResult { statistic: t, df: Some(df), p_value: t_two_sided_p(t, df) })
}

/// Pearson's χ² test of independence on an r×c table of counts (no continuity
/// correction). Rows or columns with a zero total carry no information and are left out.
pub fn chi_square_independence(table: &[Vec<u64>]) -> Option<TestResult> {
    let rows: Vec<&Vec<u64>> = table.iter().filter(|r| r.iter().sum::<u64>() > 0).collect();
    if rows.len() < 2 {
        return None;
    }
    let ncols = rows[0].len();
    let keep: Vec<usize> = (0..ncols).filter(|&j| rows.iter().map(|r| r[j]).sum::<u64>() > 0).collect();
    if keep.len() < 2 {
        return None;
    }
    let n: f64 = rows.iter().map(|r| r.iter().sum::<u64>() as f64).sum();
    let mut stat = 0.0;
    for r in &rows {
        let rt = r.iter().sum::<u64>() as f64;
        for &j in &keep {
            let ct = rows.iter().map(|r| r[j]).sum::<u64>() as f64;
            let e = rt * ct / n;
            let o = r[j] as f64;
            stat += (o - e) * (o - e) / e;
        }
    }
    let df = ((rows.len() - 1) * (keep.len() - 1)) as f64;
    Some(TestResult { statistic: stat, df: Some(df), p_value: chi2_sf(stat, df) })
}

/// Smallest expected cell count of a table under independence.
pub fn min_expected(table: &[Vec<u64>]) -> f64 {
    let n: u64 = table.iter().flatten().sum();
    if n == 0 {
        return 0.0;
    }
    let ncols = table.first().map_or(0, |r| r.len());
    let mut min = f64::INFINITY;
    for r in table {
        let rt = r.iter().sum::<u64>() as f64;
        for j in 0..ncols {
            let ct = table.iter().map(|r| r[j]).sum::<u64>() as f64;
            min = min.min(rt * ct / n as f64);
        }
    }
    min
}

/// Fisher's exact test for [[a, b], [c, d]], two-sided: the sum of the probabilities of all
/// tables with the same margins that are no more likely than the observed one (SciPy's rule,
/// with the same 1e-7 relative tolerance for ties).
pub fn fisher_exact_2x2(a: u64, b: u64, c: u64, d: u64) -> f64 {
    let (r1, r2, c1) = (a + b, c + d, a + c);
    let n = r1 + r2;
    let ln_choose = |n: u64, k: u64| ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0);
    let ln_p = |x: u64| ln_choose(r1, x) + ln_choose(r2, c1 - x) - ln_choose(n, c1);
    let lo = c1.saturating_sub(r2);
    let hi = c1.min(r1);
    let observed = ln_p(a);
    let mut p = 0.0;
    for x in lo..=hi {
        let lp = ln_p(x);
        if lp <= observed + 1e-7_f64.ln_1p() {
            p += lp.exp();
        }
    }
    p.min(1.0)
}

/// A count histogram on a shared grid: sorted distinct grid values with their counts.
pub type GridCounts = Vec<(f64, u64)>;

/// Quantile with linear interpolation between order statistics (NumPy's default, "type 7"),
/// read off a count histogram. Exact for data that lie on the grid.
pub fn quantile_from_counts(counts: &GridCounts, p: f64) -> Option<f64> {
    let n: u64 = counts.iter().map(|c| c.1).sum();
    if n == 0 {
        return None;
    }
    let h = (n - 1) as f64 * p;
    let lo = h.floor() as u64;
    let frac = h - lo as f64;
    let order_stat = |k: u64| -> f64 {
        let mut seen = 0;
        for &(v, c) in counts {
            seen += c;
            if k < seen {
                return v;
            }
        }
        counts.last().unwrap().0
    };
    let x_lo = order_stat(lo);
    if frac == 0.0 {
        return Some(x_lo);
    }
    let x_hi = order_stat(lo + 1);
    Some(x_lo + frac * (x_hi - x_lo))
}

/// Mann-Whitney U test (two-sided, normal approximation with tie correction and continuity
/// correction, as SciPy's `mannwhitneyu(method="asymptotic")`), from each group's counts on a
/// shared grid. With values on the grid the statistic is exactly the rank-based one: each
/// grid value's mid-rank is fixed by the counts below and at it.
pub fn mann_whitney_from_counts(a: &GridCounts, b: &GridCounts) -> Option<TestResult> {
    let n1: u64 = a.iter().map(|c| c.1).sum();
    let n2: u64 = b.iter().map(|c| c.1).sum();
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Merge the two sorted histograms.
    let mut merged: Vec<(f64, u64, u64)> = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j >= b.len() || (i < a.len() && a[i].0 < b[j].0) {
            merged.push((a[i].0, a[i].1, 0));
            i += 1;
        } else if i >= a.len() || b[j].0 < a[i].0 {
            merged.push((b[j].0, 0, b[j].1));
            j += 1;
        } else {
            merged.push((a[i].0, a[i].1, b[j].1));
            i += 1;
            j += 1;
        }
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let n = n1f + n2f;
    let mut below = 0.0;
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    for &(_, ca, cb) in &merged {
        let t = (ca + cb) as f64;
        let mid_rank = below + (t + 1.0) / 2.0;
        rank_sum_a += ca as f64 * mid_rank;
        tie_term += t * t * t - t;
        below += t;
    }
    let u1 = rank_sum_a - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    let mu = n1f * n2f / 2.0;
    let sigma2 = n1f * n2f / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if sigma2 <= 0.0 {
        return None;
    }
    let u = u1.max(u2);
    let z = (u - mu - 0.5) / sigma2.sqrt();
    let p = (2.0 * normal_sf(z)).min(1.0);
    Some(TestResult { statistic: u1, df: None, p_value: p })
}

/// Standard normal quantile Φ⁻¹(p) for 0 < p < 1: Acklam's rational approximation (relative
/// error below 1.2e-9) polished by one Halley step on [`erfc`], to about 1e-15.
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] =
        [-3.969_683_028_665_376e1, 2.209_460_984_245_205e2, -2.759_285_104_469_687e2, 1.383_577_518_672_69e2, -3.066_479_806_614_716e1, 2.506_628_277_459_239];
    const B: [f64; 5] = [-5.447_609_879_822_406e1, 1.615_858_368_580_409e2, -1.556_989_798_598_866e2, 6.680_131_188_771_972e1, -1.328_068_155_288_572e1];
    const C: [f64; 6] =
        [-7.784_894_002_430_293e-3, -3.223_964_580_411_365e-1, -2.400_758_277_161_838, -2.549_732_539_343_734, 4.374_664_141_464_968, 2.938_163_982_698_783];
    const D: [f64; 4] = [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let tail = |q: f64| (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0);
    let x = if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // One Halley step: e = Φ(x) − p.
    let e = 0.5 * erfc(-x / std::f64::consts::SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn special_functions_match_scipy() {
        assert!(close(ln_gamma(0.5), 0.572_364_942_924_700_1, 1e-14));
        assert!(close(ln_gamma(10.0), 12.801_827_480_081_469, 1e-14));
        assert!(close(chi2_sf(3.841_458_820_694_124, 1.0), 0.05, 1e-10));
        assert!(close(chi2_sf(5.991_464_547_107_979, 2.0), 0.05, 1e-10));
        assert!(close(chi2_sf(30.0, 10.0), 8.566_412_107_753_01e-4, 1e-9));
        assert!(close(t_two_sided_p(2.228_138_851_986_274, 10.0), 0.05, 1e-9));
        assert!(close(t_two_sided_p(-1.0, 3.5), 0.381_337_253_563_445_3, 1e-10));
        assert!(close(normal_sf(1.959_963_984_540_054), 0.025, 1e-10));
        assert!(close(normal_sf(6.0), 9.865_876_450_376_946e-10, 1e-8));
        assert!(close(normal_sf(-1.0), 0.841_344_746_068_542_9, 1e-12));
        assert!(close(beta_inc(2.0, 3.0, 0.4), 0.5248, 1e-12));
    }

    #[test]
    fn moments_merge_equals_pooled_and_survives_large_offsets() {
        let xs: Vec<f64> = (0..100).map(|i| 1.0e9 + (i as f64 * 0.37).sin()).collect();
        let pooled = Moments::from_values(&xs);
        let merged = Moments::from_values(&xs[..13]).merge(Moments::from_values(&xs[13..70])).merge(Moments::from_values(&xs[70..]));
        assert!(close(merged.mean, pooled.mean, 1e-15));
        // Both are limited by the f64 resolution of a mean near 1e9 (~1e-7 absolute).
        assert!(close(merged.variance(), pooled.variance(), 1e-6), "{} vs {}", merged.variance(), pooled.variance());
        // The raw-sums formula that a naive federation would use loses everything here.
        let (s1, s2) = xs.iter().fold((0.0, 0.0), |(a, b), x| (a + x, b + x * x));
        let naive = (s2 - s1 * s1 / 100.0) / 99.0;
        assert!(!close(naive, pooled.variance(), 0.01), "naive variance {naive} unexpectedly accurate");
    }

    #[test]
    fn fisher_tea_tasting() {
        // The lady tasting tea: p = 17/70 * 2 = 0.4857.
        assert!(close(fisher_exact_2x2(3, 1, 1, 3), 34.0 / 70.0, 1e-12));
        assert!(close(fisher_exact_2x2(8, 2, 1, 5), 0.034_965_034_965_035, 1e-10));
    }

    #[test]
    fn chi_square_of_a_known_table() {
        // scipy.stats.chi2_contingency([[10, 20, 30], [20, 25, 15]], correction=False)
        let r = chi_square_independence(&[vec![10, 20, 30], vec![20, 25, 15]]).unwrap();
        assert!(close(r.statistic, 8.888_888_888_888_89, 1e-12));
        assert_eq!(r.df, Some(2.0));
        assert!(close(r.p_value, 0.011_743_628_457_021_359, 1e-9));
    }

    #[test]
    fn welch_known_values() {
        let a = Moments::from_values(&[27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]);
        let b = Moments::from_values(&[27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]);
        let r = welch_t_test(a, b).unwrap();
        // Welch (1947) example values as given by scipy.stats.ttest_ind(equal_var=False).
        assert!(close(r.statistic, -2.455_356_398_286_006, 1e-10));
        assert!(close(r.df.unwrap(), 24.988_529_290_231_416, 1e-9));
        assert!(close(r.p_value, 0.021_378_001_462_866_992, 1e-9));
    }

    fn histogram(xs: &[f64]) -> GridCounts {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let mut out: GridCounts = Vec::new();
        for x in v {
            match out.last_mut() {
                Some(last) if last.0 == x => last.1 += 1,
                _ => out.push((x, 1)),
            }
        }
        out
    }

    #[test]
    fn mann_whitney_equals_rank_definition_with_ties() {
        let a = [1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 8.0];
        let b = [2.0, 3.0, 3.0, 4.0, 6.0, 9.0, 9.0, 9.0, 10.0];
        let r = mann_whitney_from_counts(&histogram(&a), &histogram(&b)).unwrap();
        // U1 by pair counting: #(a > b) + 0.5 #(a == b).
        let mut u = 0.0;
        for x in a {
            for y in b {
                u += if x > y {
                    1.0
                } else if x == y {
                    0.5
                } else {
                    0.0
                };
            }
        }
        assert_eq!(r.statistic, u);
        assert_eq!(u, 16.0);
        // scipy.stats.mannwhitneyu(a, b, method="asymptotic")
        assert!(close(r.p_value, 0.108_897_853_071_631_6, 1e-9), "{}", r.p_value);
    }

    #[test]
    fn quantiles_match_numpy_linear() {
        let h = histogram(&[1.0, 2.0, 2.0, 3.0, 10.0]);
        assert_eq!(quantile_from_counts(&h, 0.5), Some(2.0));
        assert_eq!(quantile_from_counts(&h, 0.25), Some(2.0));
        assert_eq!(quantile_from_counts(&h, 0.75), Some(3.0));
        let h = histogram(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(quantile_from_counts(&h, 0.5), Some(2.5));
        assert_eq!(quantile_from_counts(&h, 0.25), Some(1.75));
    }

    #[test]
    fn normal_quantile_inverts_the_normal_tail() {
        for p in [1e-12, 1e-6, 0.01, 0.02425, 0.1, 0.3, 0.5, 0.7, 0.975, 0.999_999] {
            let x = normal_quantile(p);
            assert!((normal_sf(-x) - p).abs() < 1e-13 * p.max(1e-3), "{p}: {x}");
        }
        assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-12);
        assert_eq!(normal_quantile(0.5), 0.0);
    }
}
