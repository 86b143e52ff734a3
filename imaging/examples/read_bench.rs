//! How long a site spends reading one case: a 256 × 256 × 30 MR series with its tumour, as
//! DICOM (a file per slice + an RT structure set) and as NIfTI (gzip-compressed and plain).
//!
//! `cargo run --release -p fedrad-imaging --example read_bench [-- RUNS]`
//!
//! Writes the case into a temporary folder with FedRad's writers, then reads each form RUNS
//! times (default 15) and prints the median and best wall time. The tumour is an irregular
//! body of about 63 000 voxels with a hole, contoured on 18 slices.

use std::time::Instant;

use fedrad_imaging::dicom::write::{SeriesIdentity, write_rtstruct, write_series};
use fedrad_imaging::nifti::{self, StoredType};
use fedrad_imaging::{Geometry, Volume, read_image_and_mask};

fn main() {
    let runs: usize = std::env::args().nth(1).map(|a| a.parse().expect("RUNS must be a number")).unwrap_or(15);
    let dir = std::env::temp_dir().join(format!("fedrad-read-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let (nx, ny, nz) = (256usize, 256usize, 30usize);
    let mut g = Geometry::axis_aligned([nx, ny, nz], [0.86, 0.86, 4.0]);
    g.origin = [-110.0, -110.0, -60.0];
    // An MR-like image: smooth anatomy, an integer signal as scanners store it.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut image = Vec::with_capacity(nx * ny * nz);
    let mut mask = Vec::with_capacity(nx * ny * nz);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let (x, y, z) = (i as f64 - 128.0, j as f64 - 120.0, k as f64 - 15.0);
                let body = if x * x + y * y < 110.0 * 110.0 { 600.0 + 200.0 * (x / 30.0).sin() * (y / 40.0).cos() } else { 20.0 };
                image.push((body + 30.0 * noise()).round() as f32);
                // An irregular tumour with a necrotic hole, on slices 6–23.
                let r = (x * x + (y + 10.0) * (y + 10.0) + (3.5 * z) * (3.5 * z)).sqrt();
                let edge = 38.0 + 6.0 * (3.0 * y.atan2(x)).sin();
                mask.push(if r < edge && r > 9.0 && (6..24).contains(&k) { 1.0 } else { 0.0 });
            }
        }
    }
    let image = Volume::new(g.clone(), image);
    let mask = Volume::new(g, mask);
    let voxels = mask.data.iter().filter(|v| **v > 0.5).count();
    let id = SeriesIdentity::derived("BENCH-001", "T2", "MR");
    write_series(&dir.join("series"), &image, &id).unwrap();
    let body = Volume::new(image.geometry.clone(), image.data.iter().map(|&v| if v > 100.0 { 1.0 } else { 0.0 }).collect());
    write_rtstruct(&dir.join("rtstruct.dcm"), &image, &id, &[("GTVnx", &mask), ("Body", &body)]).unwrap();
    nifti::write(&dir.join("image.nii.gz"), &image, StoredType::I16).unwrap();
    nifti::write(&dir.join("mask.nii.gz"), &mask, StoredType::U8).unwrap();
    nifti::write(&dir.join("image.nii"), &image, StoredType::I16).unwrap();
    nifti::write(&dir.join("mask.nii"), &mask, StoredType::U8).unwrap();
    let size = |p: &str| -> u64 {
        let p = dir.join(p);
        if p.is_dir() { std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum() } else { std::fs::metadata(&p).unwrap().len() }
    };
    println!("case: {nx}×{ny}×{nz} int16 MR, tumour of {voxels} voxels; {runs} runs each (median, best)");

    let cases: [(&str, &str, &str, Option<&str>); 3] = [
        ("DICOM series + RTSTRUCT", "series", "rtstruct.dcm", Some("GTVnx")),
        ("NIfTI .nii.gz", "image.nii.gz", "mask.nii.gz", None),
        ("NIfTI .nii", "image.nii", "mask.nii", None),
    ];
    let mut reference: Option<(Vec<f32>, Vec<f32>)> = None;
    for (name, img, msk, roi) in cases {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let (iv, mv) = read_image_and_mask(&dir.join(img), &dir.join(msk), roi).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
            match &reference {
                None => reference = Some((iv.data, mv.data)),
                Some((ri, rm)) => assert!(ri == &iv.data && rm == &mv.data, "{name} reads other voxels than the DICOM case"),
            }
        }
        times.sort_by(f64::total_cmp);
        let bytes = size(img) + size(msk);
        println!("{name:<26} median {:>7.1} ms  best {:>7.1} ms  ({:.1} MB on disk)", times[runs / 2], times[0], bytes as f64 / 1e6);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
