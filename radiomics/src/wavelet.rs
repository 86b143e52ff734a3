//! The `Wavelet` image type: an undecimated (stationary) 3D wavelet decomposition, as
//! PyRadiomics computes it (`imageoperations.getWaveletImage`, PyWavelets' `swtn`).
//!
//! One level filters every axis with the low-pass (L) and the high-pass (H) decomposition
//! filter of the wavelet, without downsampling, giving 8 sub-bands:
//!
//! ```text
//! L(x)[i] = Σ_{j=0}^{F-1} lo[j] · x[(i + ⌊F/2⌋ − j) mod N]      (H with hi)
//! ```
//!
//! over the image extended periodically; an axis of odd length is first padded with its
//! first voxel (numpy `wrap`), and the pad is dropped from the results. Level k+1 decomposes
//! the LLL band of level k with the same filters (PyRadiomics calls `swtn` with `level=1`
//! in a loop, not the à-trous upsampled filters). Levels below `start_level` are computed
//! and discarded; `level` levels are returned, each with its 7 detail bands, plus the LLL
//! band of the last.
//!
//! Names as PyRadiomics: the letters are the filters along x, y, z in that order
//! (`wavelet-LLH` is low-pass in x and y, high-pass in z); from the second returned level
//! on, the level number follows the word (`wavelet2-HLL`); the approximation is
//! `wavelet-LLL` with one level, else `wavelet<n>-LLL`.
//!
//! The filters touch only ⌊F/2⌋ voxels on either side per level, so [`decompose`] runs on
//! a box around the ROI with that margin per level; along an axis where the margin would
//! leave the image the whole axis is used, with the periodic extension, so values in the
//! ROI equal those of the whole-image transform.

use super::wavelet_filters::WAVELETS;

/// `Wavelet` options (PyRadiomics `wavelet`, `start_level`, `level`).
#[derive(Debug, Clone, PartialEq)]
pub struct WaveletSettings {
    pub wavelet: String,
    pub start_level: u32,
    pub level: u32,
}

impl Default for WaveletSettings {
    fn default() -> Self {
        WaveletSettings { wavelet: "coif1".into(), start_level: 0, level: 1 }
    }
}

/// The detail bands in the order PyRadiomics yields them, as (x, y, z) high-pass flags.
const DETAIL_BANDS: [[bool; 3]; 7] =
    [[false, false, true], [false, true, false], [false, true, true], [true, false, false], [true, false, true], [true, true, false], [true, true, true]];

/// The decomposition filters of a wavelet PyWavelets knows, by name.
pub fn filters(name: &str) -> Option<(&'static [f64], &'static [f64])> {
    WAVELETS.iter().find(|(n, _, _)| *n == name).map(|(_, lo, hi)| (*lo, *hi))
}

pub fn known_wavelets() -> impl Iterator<Item = &'static str> {
    WAVELETS.iter().map(|(n, _, _)| *n)
}

/// The image-name prefixes of every band, in the order [`decompose`] returns them.
pub fn band_names(s: &WaveletSettings) -> Vec<String> {
    let mut names = Vec::new();
    for idx in 1..=s.level {
        for band in DETAIL_BANDS {
            let letters: String = band.iter().map(|h| if *h { 'H' } else { 'L' }).collect();
            names.push(if idx == 1 { format!("wavelet-{letters}") } else { format!("wavelet{idx}-{letters}") });
        }
    }
    names.push(if s.level == 1 { "wavelet-LLL".to_string() } else { format!("wavelet{}-LLL", s.level) });
    names
}

/// A box of the image: voxels x-fastest; along a `periodic` axis the box is the whole
/// (even-padded) axis, else it is an interior window whose edges are never read for the
/// voxels that matter.
#[derive(Debug, Clone)]
struct Block {
    dims: [usize; 3],
    periodic: [bool; 3],
    data: Vec<f64>,
}

impl Block {
    fn filter_axis(&self, axis: usize, f: &[f64]) -> Vec<f64> {
        let [nx, ny, nz] = self.dims;
        let n = self.dims[axis];
        let stride = [1, nx, nx * ny][axis];
        let half = f.len() / 2;
        let mut out = vec![0.0; self.data.len()];
        // The line extended by the filter's length on both sides (periodically or by its end
        // values), so the convolution below needs no index arithmetic per tap.
        let pad = f.len();
        let source: Vec<usize> =
            (-(pad as isize)..(n + pad) as isize).map(|k| if self.periodic[axis] { k.rem_euclid(n as isize) } else { k.clamp(0, n as isize - 1) } as usize).collect();
        let mut line = vec![0.0; n + 2 * pad];
        let mut res = vec![0.0; n];
        let outer: Vec<usize> = match axis {
            0 => (0..ny * nz).map(|k| k * nx).collect(),
            1 => (0..nz).flat_map(|z| (0..nx).map(move |x| x + nx * ny * z)).collect(),
            _ => (0..nx * ny).collect(),
        };
        for start in outer {
            for (v, k) in line.iter_mut().zip(&source) {
                *v = self.data[start + k * stride];
            }
            for (i, r) in res.iter_mut().enumerate() {
                // Taps j = 0, 1, … read samples i + half − j: the window backwards.
                let window = &line[i + half + pad + 1 - f.len()..=i + half + pad];
                let mut sum = 0.0;
                for (fj, v) in f.iter().zip(window.iter().rev()) {
                    sum += fj * v;
                }
                *r = sum;
            }
            for (i, r) in res.iter().enumerate() {
                out[start + i * stride] = *r;
            }
        }
        out
    }
}

/// The bands of the decomposition of `image` (dims, x-fastest) over the output box
/// `lo..=hi`, each as values over that box, named by [`band_names`]. `None` for an unknown
/// wavelet name.
pub fn decompose(image: &[f64], dims: [usize; 3], lo: [usize; 3], hi: [usize; 3], s: &WaveletSettings) -> Option<Vec<(String, Vec<f64>)>> {
    let (flo, fhi) = filters(&s.wavelet)?;
    let levels = (s.start_level + s.level) as usize;
    let margin = (flo.len() / 2 + 1) * levels;
    // Per axis: the source indices of the block, and where the output box starts in it.
    let mut index: [Vec<usize>; 3] = Default::default();
    let mut offset = [0usize; 3];
    let mut periodic = [false; 3];
    for a in 0..3 {
        let n = dims[a];
        if lo[a] >= margin && hi[a] + margin < n {
            index[a] = (lo[a] - margin..=hi[a] + margin).collect();
            offset[a] = margin;
        } else {
            periodic[a] = true;
            index[a] = (0..n).collect();
            if n % 2 == 1 {
                index[a].push(0);
            }
            offset[a] = lo[a];
        }
    }
    let bdims = [index[0].len(), index[1].len(), index[2].len()];
    let mut data = Vec::with_capacity(bdims[0] * bdims[1] * bdims[2]);
    for &z in &index[2] {
        for &y in &index[1] {
            for &x in &index[0] {
                data.push(image[x + dims[0] * (y + dims[1] * z)]);
            }
        }
    }
    let out_box = |b: &Block| -> Vec<f64> {
        let mut v = Vec::with_capacity((hi[0] - lo[0] + 1) * (hi[1] - lo[1] + 1) * (hi[2] - lo[2] + 1));
        for z in 0..=hi[2] - lo[2] {
            for y in 0..=hi[1] - lo[1] {
                for x in 0..=hi[0] - lo[0] {
                    let (bx, by, bz) = (x + offset[0], y + offset[1], z + offset[2]);
                    v.push(b.data[bx + bdims[0] * (by + bdims[1] * bz)]);
                }
            }
        }
        v
    };
    let mut approx = Block { dims: bdims, periodic, data };
    let names = band_names(s);
    let mut out = Vec::new();
    for level in 0..levels {
        // Split along x, then y, then z: 8 bands indexed by their high-pass flags.
        let mut bands = vec![approx];
        for axis in 0..3 {
            let mut next = Vec::with_capacity(bands.len() * 2);
            for b in &bands {
                next.push(Block { data: b.filter_axis(axis, flo), dims: b.dims, periodic: b.periodic });
                next.push(Block { data: b.filter_axis(axis, fhi), dims: b.dims, periodic: b.periodic });
            }
            bands = next;
        }
        // bands[k]: bit 2 of k = x high, bit 1 = y high, bit 0 = z high.
        if level >= s.start_level as usize {
            for band in DETAIL_BANDS {
                let k = (band[0] as usize) << 2 | (band[1] as usize) << 1 | band[2] as usize;
                out.push((names[out.len()].clone(), out_box(&bands[k])));
            }
        }
        approx = bands.swap_remove(0);
    }
    out.push((names[out.len()].clone(), out_box(&approx)));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(dims: [usize; 3]) -> Vec<f64> {
        (0..dims[0] * dims[1] * dims[2]).map(|i| ((i * 7919) % 101) as f64 - 40.0 + (i as f64 * 0.37).sin() * 9.0).collect()
    }

    #[test]
    fn a_box_gives_the_whole_image_values() {
        let dims = [31, 28, 9];
        let img = volume(dims);
        let s = WaveletSettings { level: 2, ..Default::default() };
        let whole = decompose(&img, dims, [0, 0, 0], [30, 27, 8], &s).unwrap();
        let (lo, hi) = ([12, 11, 2], [17, 15, 5]);
        let part = decompose(&img, dims, lo, hi, &s).unwrap();
        assert_eq!(whole.len(), 15);
        for ((n1, w), (n2, p)) in whole.iter().zip(&part) {
            assert_eq!(n1, n2);
            let mut k = 0;
            for z in lo[2]..=hi[2] {
                for y in lo[1]..=hi[1] {
                    for x in lo[0]..=hi[0] {
                        assert!((w[x + 31 * (y + 28 * z)] - p[k]).abs() < 1e-9, "{n1}");
                        k += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn haar_bands_sum_to_the_image_at_one_level() {
        // Haar lo = (1, 1)/√2, hi = (−1, 1)/√2 (PyWavelets' signs): the sum over the 8 bands
        // of the product of the per-axis filters' first taps reconstructs a shifted image;
        // simpler, LLL of a constant image is the constant times √2³.
        let dims = [6, 5, 4];
        let img = vec![3.0; 120];
        let bands = decompose(&img, dims, [0, 0, 0], [5, 4, 3], &WaveletSettings { wavelet: "haar".into(), ..Default::default() }).unwrap();
        let lll = &bands.last().unwrap().1;
        assert!(lll.iter().all(|v| (v - 3.0 * 2f64.sqrt().powi(3)).abs() < 1e-12));
        for (name, b) in &bands[..7] {
            assert!(b.iter().all(|v| v.abs() < 1e-12), "{name} of a constant image is zero");
        }
    }

    #[test]
    fn names_follow_pyradiomics() {
        let n = band_names(&WaveletSettings { level: 2, ..Default::default() });
        assert_eq!(n[0], "wavelet-LLH");
        assert_eq!(n[7], "wavelet2-LLH");
        assert_eq!(n.last().unwrap(), "wavelet2-LLL");
        assert_eq!(band_names(&WaveletSettings::default()).last().unwrap(), "wavelet-LLL");
        assert!(filters("coif1").is_some_and(|(lo, hi)| lo.len() == 6 && hi.len() == 6));
        assert!(filters("coif99").is_none());
    }
}
