//! Feature extraction speed on the case size of issue 3: a 256×256×25 MR volume with a
//! ~4000-voxel tumour ROI. Reports the median and the best time per case on one core (the
//! best is the steadier figure on a shared machine) for
//! - the original image alone (all 11 IBSI families, 177 features);
//! - the study default (original + 8 wavelet bands + LoG σ 1, 3 mm; 1 197 features);
//! - Original + Wavelet + LoG(σ 1–5 mm) with the PyRadiomics classes, the set
//!   `radiomics/scripts/bench_pyradiomics.py` times in PyRadiomics;
//!
//! and the study default's batch speed-up over the machine's cores. Writes the case as NIfTI so other tools can be timed on the same files
//! (`radiomics/scripts/bench_pyradiomics.py`).
//!
//!     cargo bench -p fedrad-radiomics --bench extraction [-- OUT_DIR]

use std::time::Instant;

use fedrad_imaging::nifti::{self, StoredType};
use fedrad_imaging::{Geometry, Volume};
use fedrad_radiomics::extract::extract;
use fedrad_radiomics::settings::Settings;
use rayon::prelude::*;

/// A deterministic MR-like case: smooth background, a textured ellipsoidal tumour, Rician-ish noise.
fn case(seed: u64) -> (Volume, Volume) {
    let dims = [256, 256, 25];
    let g = Geometry::axis_aligned(dims, [0.8, 0.8, 5.0]);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let (mut img, mut mask) = (vec![0f32; g.voxel_count()], vec![0f32; g.voxel_count()]);
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let p = [(x as f64 - 128.0) * 0.8, (y as f64 - 120.0) * 0.8, (z as f64 - 12.0) * 5.0];
                let r = ((p[0] / 15.0).powi(2) + (p[1] / 13.0).powi(2) + (p[2] / 16.0).powi(2)).sqrt();
                let background = 400.0 + 60.0 * (p[0] / 40.0).sin() + 40.0 * (p[1] / 55.0).cos();
                let tumour = 700.0 * (1.0 + 0.2 * (p[0] / 3.0).sin() * (p[1] / 4.0).cos() + 0.1 * (p[2] / 7.0).sin());
                let i = x + dims[0] * (y + dims[1] * z);
                let v = if r < 1.0 { tumour } else { background };
                img[i] = (v + 40.0 * noise()).max(0.0) as f32;
                mask[i] = (r < 1.0) as u8 as f32;
            }
        }
    }
    (Volume::new(g.clone(), img), Volume::new(g, mask))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // The allocator policy the site agent and `fedrad-radiomics` run with.
    fedrad_radiomics::memory::keep_freed_buffers();
    let out =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).map(std::path::PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("fedrad-bench-extraction"));
    std::fs::create_dir_all(&out).unwrap();
    let (img, mask) = case(1);
    let roi = mask.data.iter().filter(|v| **v > 0.0).count();
    nifti::write(&out.join("image.nii.gz"), &img, StoredType::I16).unwrap();
    nifti::write(&out.join("mask.nii.gz"), &mask, StoredType::U8).unwrap();
    let pyradiomics_set = Settings::from_pyradiomics_yaml(
        "setting:\n  binCount: 32\n  normalize: true\n  normalizeScale: 100\n  ibsiDiscretisation: fixedBinNumber\nimageType:\n  Original: {}\n  Wavelet: {}\n  LoG: {sigma: [1.0, 2.0, 3.0, 4.0, 5.0]}\nfeatureClass:\n  shape:\n  firstorder:\n  glcm:\n  glrlm:\n  glszm:\n  gldm:\n  ngtdm:\n",
    )
    .unwrap();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    println!("case: 256×256×25 voxels, ROI {roi} voxels");
    for (label, settings) in [
        ("original image (Settings::original_only)", Settings::original_only()),
        ("study default: original + wavelet + LoG σ 1, 3 mm", Settings::study_default()),
        ("Original + Wavelet + LoG(σ 1–5 mm), PyRadiomics classes", pyradiomics_set),
    ] {
        let mut n = 0;
        let times: Vec<f64> = (0..9)
            .map(|_| {
                one.install(|| {
                    let t = Instant::now();
                    n = extract(&img, &mask, &settings).unwrap().len();
                    t.elapsed().as_secs_f64()
                })
            })
            .collect();
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        println!("  {label}: {n} features, one core: median {:.1} ms, best {:.1} ms per case ({} runs)", 1e3 * median(times.clone()), 1e3 * best, times.len());
    }
    let settings = Settings::study_default();

    let cases: Vec<(Volume, Volume)> = (0..8).map(|s| case(s + 2)).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let batch = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let t = Instant::now();
        pool.install(|| cases.par_iter().for_each(|(i, m)| drop(extract(i, m, &settings).unwrap())));
        t.elapsed().as_secs_f64()
    };
    let (t1, tn) = (batch(1), batch(cores));
    println!("  batch of {}: {:.2} s on 1 core, {:.2} s on {cores} cores, speed-up {:.2}×", cases.len(), t1, tn, t1 / tn);
    println!("  files for other tools: {}", out.display());
}
