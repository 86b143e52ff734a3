//! The `LBP3D` image type: rotation-invariant 3D local binary patterns by spherical
//! harmonics (Banerjee et al., 2013), as PyRadiomics' `getLBP3DImage` computes them.
//!
//! Around each ROI voxel c, N_v points lie on an icosphere (trimesh's `icosphere`:
//! an icosahedron subdivided `lbp3DIcosphereSubdivision` times, radius
//! `lbp3DIcosphereRadius` in *voxels*). Their intensities f_v are read by cubic B-spline
//! interpolation (scipy's `map_coordinates`, order 3, mode `constant`: 0 outside the image,
//! coefficients with mirror boundaries). Then
//!
//! | image | value at c |
//! |---|---|
//! | `lbp-3D-k` | the excess kurtosis of f_1 … f_{N_v} (biased; NaN without spread, as scipy) |
//! | `lbp-3D-m{n+1}`, n = 0 … `lbp3DLevels` − 1 | Re √( Σ_v g_{n,v}² ), g_{n,v} = Σ_{m=−n}^{n} c_{n,m} Y_n^m(v), c_{n,m} = Σ_v [f_v ≥ I(c)] Y_n^m(v) |
//!
//! with the complex square (not |g|²) and the principal square root, exactly as PyRadiomics
//! writes it in numpy. Y_n^m is scipy's `sph_harm(m, n, θ, φ)` =
//! √((2n+1)/(4π) (n−m)!/(n+m)!) e^{imθ} P_n^m(cos φ), Condon–Shortley phase included, called
//! by PyRadiomics with the vertex's polar angle arccos(v_2/r) as θ and its azimuth
//! atan2(v_1, v_0) as φ; we keep that argument order, since it decides the values. The vertex
//! offsets are added to the voxel index in numpy order, (z, y, x).
//!
//! Voxels outside the ROI are 0 here (PyRadiomics leaves them uninitialised); no feature
//! class computed on filtered images reads them.

use std::f64::consts::PI;

use fedrad_imaging::SampleType;

/// LBP3D options (PyRadiomics `lbp3DLevels`, `lbp3DIcosphereRadius`, `lbp3DIcosphereSubdivision`).
#[derive(Debug, Clone, PartialEq)]
pub struct Lbp3dSettings {
    pub levels: u32,
    /// Radius of the sampling sphere in voxels.
    pub radius: f64,
    pub subdivisions: u32,
}

impl Default for Lbp3dSettings {
    /// PyRadiomics' defaults: 2 levels, radius 1, one subdivision (42 points).
    fn default() -> Self {
        Lbp3dSettings { levels: 2, radius: 1.0, subdivisions: 1 }
    }
}

/// A complex number, for the spherical harmonics (the only complex arithmetic here).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Complex {
    re: f64,
    im: f64,
}

impl Complex {
    fn mul(self, o: Complex) -> Complex {
        Complex { re: self.re * o.re - self.im * o.im, im: self.re * o.im + self.im * o.re }
    }
    fn add(self, o: Complex) -> Complex {
        Complex { re: self.re + o.re, im: self.im + o.im }
    }
    /// Real part of the principal square root, computed without cancellation (as C99 csqrt).
    fn sqrt_re(self) -> f64 {
        let modulus = self.re.hypot(self.im);
        if self.re >= 0.0 {
            ((modulus + self.re) / 2.0).sqrt()
        } else {
            let t = ((modulus - self.re) / 2.0).sqrt();
            if t == 0.0 { 0.0 } else { self.im.abs() / (2.0 * t) }
        }
    }
}

/// The vertices of trimesh's `icosphere(subdivisions, radius)`: an icosahedron whose faces
/// are split in four `subdivisions` times, every vertex pushed out to the radius after each
/// split. The order differs from trimesh's; the set of points is the same.
pub fn icosphere(subdivisions: u32, radius: f64) -> Vec<[f64; 3]> {
    let t = (1.0 + 5f64.sqrt()) / 2.0;
    let s = (2.0 + t).sqrt();
    let mut vertices: Vec<[f64; 3]> = [
        [-1.0, t, 0.0],
        [1.0, t, 0.0],
        [-1.0, -t, 0.0],
        [1.0, -t, 0.0],
        [0.0, -1.0, t],
        [0.0, 1.0, t],
        [0.0, -1.0, -t],
        [0.0, 1.0, -t],
        [t, 0.0, -1.0],
        [t, 0.0, 1.0],
        [-t, 0.0, -1.0],
        [-t, 0.0, 1.0],
    ]
    .map(|v| v.map(|c| c / s))
    .to_vec();
    let mut faces: Vec<[usize; 3]> = vec![
        [0, 11, 5],
        [0, 5, 1],
        [0, 1, 7],
        [0, 7, 10],
        [0, 10, 11],
        [1, 5, 9],
        [5, 11, 4],
        [11, 10, 2],
        [10, 7, 6],
        [7, 1, 8],
        [3, 9, 4],
        [3, 4, 2],
        [3, 2, 6],
        [3, 6, 8],
        [3, 8, 9],
        [4, 9, 5],
        [2, 4, 11],
        [6, 2, 10],
        [8, 6, 7],
        [9, 8, 1],
    ];
    let push_out = |vertices: &mut Vec<[f64; 3]>| {
        for v in vertices.iter_mut() {
            let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            *v = [0, 1, 2].map(|k| v[k] + v[k] / norm * (radius - norm));
        }
    };
    for _ in 0..subdivisions {
        let mut midpoint = std::collections::HashMap::new();
        let mut split = Vec::with_capacity(faces.len() * 4);
        for f in &faces {
            let mut mid = |a: usize, b: usize| -> usize {
                *midpoint.entry((a.min(b), a.max(b))).or_insert_with(|| {
                    vertices.push([0, 1, 2].map(|k| (vertices[a][k] + vertices[b][k]) / 2.0));
                    vertices.len() - 1
                })
            };
            let (ab, bc, ca) = (mid(f[0], f[1]), mid(f[1], f[2]), mid(f[2], f[0]));
            split.extend([[f[0], ab, ca], [ab, f[1], bc], [ca, bc, f[2]], [ab, bc, ca]]);
        }
        faces = split;
        push_out(&mut vertices);
    }
    if subdivisions == 0 {
        push_out(&mut vertices);
    }
    vertices
}

/// scipy's `sph_harm(m, n, theta, phi)` (θ azimuthal, φ polar).
fn spherical_harmonic(m: i32, n: u32, theta: f64, phi: f64) -> Complex {
    let am = m.unsigned_abs();
    let x = phi.cos();
    // Associated Legendre P_n^|m|(x) with the Condon–Shortley phase, by the usual recurrence.
    let somx2 = ((1.0 - x) * (1.0 + x)).sqrt();
    let mut pmm = 1.0;
    for i in 0..am {
        pmm *= -((2 * i + 1) as f64) * somx2;
    }
    let p = if n == am {
        pmm
    } else {
        let mut prev = pmm;
        let mut cur = x * (2 * am + 1) as f64 * pmm;
        for l in am + 2..=n {
            let next = ((2 * l - 1) as f64 * x * cur - (l + am - 1) as f64 * prev) / (l - am) as f64;
            prev = cur;
            cur = next;
        }
        cur
    };
    // (n − |m|)! / (n + |m|)!
    let ratio: f64 = (n - am + 1..=n + am).map(|k| 1.0 / k as f64).product();
    let norm = ((2 * n + 1) as f64 / (4.0 * PI) * ratio).sqrt();
    let y = Complex { re: norm * p * (am as f64 * theta).cos(), im: norm * p * (am as f64 * theta).sin() };
    // Y_n^{−m} = (−1)^m conj(Y_n^m).
    if m < 0 {
        let sign = if am % 2 == 1 { -1.0 } else { 1.0 };
        Complex { re: sign * y.re, im: -sign * y.im }
    } else {
        y
    }
}

/// scipy's pole of the cubic B-spline filter, √3 − 2, as the literal scipy compiles.
const POLE: f64 = -0.267949192431122706472553658494127633;

/// Coefficients of the cubic B-spline that interpolates `data` (x-fastest, `dims`), in
/// scipy's `spline_filter` arithmetic: axes in numpy order (z, then y, then x), the gain
/// (1 − z)(1 − 1/z) applied first, mirror initialisation summed in full (also for mode
/// `constant`). Why so literal: with integer images many samples tie with the centre voxel,
/// and which side of the tie an interpolated sample falls on is decided in the last bit.
fn spline_coefficients(data: &[f64], dims: [usize; 3]) -> Vec<f64> {
    let z = POLE;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    let mut c = data.to_vec();
    let mut line = Vec::new();
    let strides = [1, dims[0], dims[0] * dims[1]];
    for axis in [2, 1, 0] {
        let n = dims[axis];
        if n < 2 {
            continue;
        }
        let others: Vec<usize> = (0..3).filter(|a| *a != axis).collect();
        let zn1 = z.powf((n - 1) as f64);
        for j in 0..dims[others[1]] {
            for i in 0..dims[others[0]] {
                let start = i * strides[others[0]] + j * strides[others[1]];
                line.clear();
                line.extend((0..n).map(|k| c[start + k * strides[axis]] * gain));
                let mut zi = z;
                line[0] += zn1 * line[n - 1];
                for k in 1..n - 1 {
                    line[0] += zi * (line[k] + zn1 * line[n - 1 - k]);
                    zi *= z;
                }
                line[0] /= 1.0 - zn1 * zn1;
                for k in 1..n {
                    line[k] += z * line[k - 1];
                }
                line[n - 1] = (z * line[n - 2] + line[n - 1]) * z / (z * z - 1.0);
                for k in (0..n - 1).rev() {
                    line[k] = z * (line[k + 1] - line[k]);
                }
                for (k, v) in line.iter().enumerate() {
                    c[start + k * strides[axis]] = *v;
                }
            }
        }
    }
    c
}

/// scipy's cubic B-spline weights of the four coefficients from ⌊t⌋ − 1, for t's fraction.
fn cubic_weights(t: f64) -> [f64; 4] {
    let y = t - t.floor();
    let z = 1.0 - y;
    let w1 = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
    let w2 = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
    let w0 = z * z * z / 6.0;
    let mut w3 = 1.0;
    for w in [w0, w1, w2] {
        w3 -= w;
    }
    [w0, w1, w2, w3]
}

/// Mirror an index into 0..n (n ≥ 1).
fn mirror(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let mut k = i.rem_euclid(period);
    if k >= n as isize {
        k = period - k;
    }
    k as usize
}

/// The spline at continuous index p = (x, y, z); 0 outside [0, n − 1] on any axis. Terms are
/// summed as scipy's `map_coordinates` sums them: z outermost, x innermost, one accumulator,
/// each term c · w_z · w_y · w_x.
fn interpolate(coefficients: &[f64], dims: [usize; 3], p: [f64; 3]) -> f64 {
    if (0..3).any(|a| !(p[a] >= 0.0 && p[a] <= (dims[a] - 1) as f64)) {
        return 0.0;
    }
    let mut idx = [[0usize; 4]; 3];
    let mut w = [[0.0; 4]; 3];
    for a in 0..3 {
        w[a] = cubic_weights(p[a]);
        let start = p[a].floor() as isize - 1;
        for k in 0..4 {
            idx[a][k] = mirror(start + k as isize, dims[a]);
        }
    }
    let mut sum = 0.0;
    for kz in 0..4 {
        for ky in 0..4 {
            let row = dims[0] * (idx[1][ky] + dims[1] * idx[2][kz]);
            for kx in 0..4 {
                sum += coefficients[row + idx[0][kx]] * w[2][kz] * w[1][ky] * w[0][kx];
            }
        }
    }
    sum
}

/// The LBP3D images on the inclusive box `lo..=hi` of a volume (`data` x-fastest, `dims`),
/// x-fastest over the box, computed at the voxels where `mask` is set: the `levels` images
/// `lbp-3D-m1` … and then `lbp-3D-k`. `sample` is the image's stored type: scipy writes
/// the interpolated samples in the input's type, so an integer image's samples are rounded
/// (half away from zero) before they are compared with the centre, and a float32 image's
/// are rounded to single precision.
pub fn lbp_3d(data: &[f64], mask: &[bool], dims: [usize; 3], lo: [usize; 3], hi: [usize; 3], s: &Lbp3dSettings, sample: SampleType) -> Vec<(String, Vec<f64>)> {
    let vertices = icosphere(s.subdivisions, s.radius);
    // Vertex columns (0, 1, 2) are offsets along numpy's (z, y, x); θ and φ as PyRadiomics.
    // Y_n^m at every vertex, grouped by level n (m = −n … n).
    let harmonics: Vec<Vec<Vec<Complex>>> = (0..s.levels)
        .map(|n| (-(n as i32)..=n as i32).map(|m| vertices.iter().map(|v| spherical_harmonic(m, n, (v[2] / s.radius).acos(), v[1].atan2(v[0]))).collect()).collect())
        .collect();
    let coefficients = spline_coefficients(data, dims);
    let box_dims = [0, 1, 2].map(|a| hi[a] - lo[a] + 1);
    let size = box_dims.iter().product();
    let mut levels = vec![vec![0.0; size]; s.levels as usize];
    let mut kurtosis = vec![0.0; size];
    let mut samples = vec![0.0; vertices.len()];
    let mut signs = vec![0.0; vertices.len()];
    let mut c: Vec<Complex> = Vec::with_capacity(2 * s.levels as usize + 1);
    let mut out_index = 0;
    for z in lo[2]..=hi[2] {
        for y in lo[1]..=hi[1] {
            for x in lo[0]..=hi[0] {
                let i = x + dims[0] * (y + dims[1] * z);
                if mask[i] {
                    for (f, v) in samples.iter_mut().zip(&vertices) {
                        let t = interpolate(&coefficients, dims, [x as f64 + v[2], y as f64 + v[1], z as f64 + v[0]]);
                        *f = match sample {
                            SampleType::Integer { min, max } => t.round().clamp(min, max),
                            SampleType::Float32 => t as f32 as f64,
                            SampleType::Float64 => t,
                        };
                    }
                    kurtosis[out_index] = excess_kurtosis(&samples);
                    for (sign, f) in signs.iter_mut().zip(&samples) {
                        *sign = if *f >= data[i] { 1.0 } else { 0.0 };
                    }
                    for (level, of_level) in levels.iter_mut().zip(&harmonics) {
                        c.clear();
                        c.extend(
                            of_level.iter().map(|y| y.iter().zip(&signs).fold(Complex::default(), |acc, (yv, sv)| acc.add(Complex { re: yv.re * sv, im: yv.im * sv }))),
                        );
                        let mut sum_of_squares = Complex::default();
                        for v in 0..vertices.len() {
                            let g = of_level.iter().zip(&c).fold(Complex::default(), |acc, (y, cm)| acc.add(cm.mul(y[v])));
                            sum_of_squares = sum_of_squares.add(g.mul(g));
                        }
                        level[out_index] = sum_of_squares.sqrt_re();
                    }
                }
                out_index += 1;
            }
        }
    }
    let mut images: Vec<(String, Vec<f64>)> = levels.into_iter().enumerate().map(|(n, v)| (format!("lbp-3D-m{}", n + 1), v)).collect();
    images.push(("lbp-3D-k".to_string(), kurtosis));
    images
}

/// scipy.stats.kurtosis (Fisher, biased): m4/m2² − 3, NaN when m2 ≤ (ε·mean)².
fn excess_kurtosis(f: &[f64]) -> f64 {
    let n = f.len() as f64;
    let mean = f.iter().sum::<f64>() / n;
    let m2 = f.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let m4 = f.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n;
    if m2 <= (f64::EPSILON * mean).powi(2) { f64::NAN } else { m4 / (m2 * m2) - 3.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_icosphere_has_trimesh_s_vertex_counts_on_the_sphere() {
        for (sub, count) in [(0, 12), (1, 42), (2, 162)] {
            let v = icosphere(sub, 2.5);
            assert_eq!(v.len(), count);
            assert!(v.iter().all(|p| ((p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt() - 2.5).abs() < 1e-12));
        }
        // One subdivision adds the normalised edge midpoints, among them the axis points.
        assert!(icosphere(1, 1.0).iter().any(|p| p == &[0.0, 1.0, 0.0]));
    }

    #[test]
    fn spherical_harmonics_are_orthonormal_and_follow_scipy_s_signs() {
        // Y_1^1 = −½ √(3/(2π)) e^{iθ} sin φ ; Y_1^{−1} = ½ √(3/(2π)) e^{−iθ} sin φ.
        let (theta, phi) = (0.7, 1.1);
        let y11 = spherical_harmonic(1, 1, theta, phi);
        let k = 0.5 * (3.0 / (2.0 * PI)).sqrt() * phi.sin();
        assert!((y11.re + k * theta.cos()).abs() < 1e-15 && (y11.im + k * theta.sin()).abs() < 1e-15);
        let y1m1 = spherical_harmonic(-1, 1, theta, phi);
        assert!((y1m1.re - k * theta.cos()).abs() < 1e-15 && (y1m1.im + k * theta.sin()).abs() < 1e-15);
        // Orthonormality by quadrature over the sphere (θ azimuth, φ polar).
        let n = 200;
        let pairs = [((2, 3), (2, 3)), ((-1, 2), (-1, 2)), ((1, 2), (1, 3)), ((0, 4), (0, 4))];
        for ((m1, n1), (m2, n2)) in pairs {
            let mut acc = Complex::default();
            for i in 0..n {
                for j in 0..2 * n {
                    let phi = (i as f64 + 0.5) * PI / n as f64;
                    let theta = (j as f64 + 0.5) * PI / n as f64;
                    let a = spherical_harmonic(m1, n1, theta, phi);
                    let b = spherical_harmonic(m2, n2, theta, phi);
                    let w = phi.sin() * (PI / n as f64).powi(2);
                    acc = acc.add(Complex { re: (a.re * b.re + a.im * b.im) * w, im: 0.0 });
                }
            }
            let expected = if (m1, n1) == (m2, n2) { 1.0 } else { 0.0 };
            assert!((acc.re - expected).abs() < 1e-3, "{m1} {n1} {m2} {n2}: {}", acc.re);
        }
    }

    #[test]
    fn the_spline_interpolates_the_samples_and_is_zero_outside() {
        let dims = [5, 4, 3];
        let data: Vec<f64> = (0..60).map(|i| ((i * 37) % 11) as f64 - 3.0).collect();
        let c = spline_coefficients(&data, dims);
        for (i, v) in data.iter().enumerate() {
            let p = [(i % 5) as f64, ((i / 5) % 4) as f64, (i / 20) as f64];
            assert!((interpolate(&c, dims, p) - v).abs() < 1e-12, "{i}");
        }
        assert_eq!(interpolate(&c, dims, [-0.01, 1.0, 1.0]), 0.0);
        assert_eq!(interpolate(&c, dims, [1.0, 3.2, 1.0]), 0.0);
        // A constant image stays constant between samples.
        let flat = spline_coefficients(&[7.0; 60], dims);
        assert!((interpolate(&flat, dims, [1.3, 2.7, 0.4]) - 7.0).abs() < 1e-12);
    }

    #[test]
    fn a_uniform_neighbourhood_has_level_one_equal_to_the_count_norm() {
        // Every sample ≥ the centre: s_v = 1, so c_{0,0} = N Y₀⁰ and g = N (Y₀⁰)² per vertex,
        // m1 = √N · N/(4π). (Level 2 does not vanish: with PyRadiomics' swapped angles the
        // vertices on the z axis all have azimuth 0.) A centre above its neighbours: all 0.
        let dims = [7, 7, 7];
        let mut data = vec![5.0; 343];
        data[3 + 7 * (3 + 7 * 3)] = 1.0;
        let mut mask = vec![false; 343];
        mask[3 + 7 * (3 + 7 * 3)] = true;
        let images = lbp_3d(&data, &mask, dims, [3, 3, 3], [3, 3, 3], &Lbp3dSettings::default(), SampleType::Float64);
        assert_eq!(images.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["lbp-3D-m1", "lbp-3D-m2", "lbp-3D-k"]);
        let n: f64 = 42.0;
        assert!((images[0].1[0] - n.sqrt() * n / (4.0 * PI)).abs() < 1e-9, "{}", images[0].1[0]);
        assert!(images[1].1[0] > 0.0);
        data[3 + 7 * (3 + 7 * 3)] = 9.0;
        let images = lbp_3d(&data, &mask, dims, [3, 3, 3], [3, 3, 3], &Lbp3dSettings::default(), SampleType::Float64);
        assert_eq!((images[0].1[0], images[1].1[0]), (0.0, 0.0));
    }
}
