//! Synthetic multi-centre cohort of locally advanced nasopharyngeal carcinoma.
//!
//! Writes, per hospital, what its IT department would point a site agent at: a folder of
//! NIfTI volumes (contrast T1, T2, a tumour mask for each) and a manifest CSV with the
//! clinical table and the outcome. The hidden truth (latent risk, recurrence probability,
//! the oracle AUC) goes to a separate `truth/` folder that only tests and benchmarks read.
//!
//! The model, in short. Each patient has a latent risk `z ~ N(0, 1)`.
//! * Recurrence ~ Bernoulli(σ(β₀ + β·z)) (about 30% recur); the oracle AUC is the AUC of the
//!   true probability.
//! * Clinical variables depend partly on `z`: T and N stage through ordinal latents
//!   (restricted to stage III–IVA, AJCC 8th), EBV DNA (log-normal, zero when undetectable),
//!   age weakly; sex and histology do not.
//! * The tumour is an irregular 3D body whose volume grows with `z` and T stage, whose
//!   surface irregularity, internal texture heterogeneity and necrotic core grow with `z`,
//!   and whose enhancement on T1WI+C falls with `z`. T2WI shows texture more strongly
//!   (the published best model was on T2WI); necrosis is dark on T1WI+C, bright on T2WI.
//! * Each hospital's scanner differs: voxel size and slice thickness, intensity scale and
//!   offset, Rician noise level and a smooth multiplicative bias field.
//! * Everything is drawn from streams derived from (seed, hospital, patient), so output does
//!   not depend on thread count.

pub mod rng;

use std::path::{Path, PathBuf};

use fedrad_imaging::nifti::{self, StoredType};
use fedrad_imaging::{Geometry, Volume};
use rayon::prelude::*;
use rng::Rng;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Imaging(#[from] fedrad_imaging::ImagingError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
}

/// Acquisition differences between hospitals.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScannerProfile {
    pub in_plane_mm: f64,
    pub slice_mm: f64,
    pub t1c_scale: f64,
    pub t1c_offset: f64,
    pub t2_scale: f64,
    pub t2_offset: f64,
    /// Noise SD relative to the tissue intensity.
    pub noise: f64,
    /// Amplitude of the multiplicative bias field.
    pub bias: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HospitalSpec {
    pub site_id: String,
    pub patients: usize,
    pub scanner: ScannerProfile,
    /// How the hospital exports its images.
    #[serde(default)]
    pub export: ImageExport,
}

/// What a hospital's export holds: NIfTI volumes and label masks (what a research PACS or a
/// conversion script gives), or what a scanner and a planning system write — a DICOM MR series
/// per sequence (one file per slice) with the tumour contoured in an RT structure set, next to
/// another structure, under the hospital's own ROI name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageExport {
    #[default]
    Nifti,
    Dicom,
}

/// The local ROI name of the tumour in a DICOM-exporting hospital's structure sets.
pub const DICOM_TUMOUR_ROI: &str = "GTVnx";

impl CohortSpec {
    /// The same cohort with `site_id` exporting DICOM (as the demo runs one hospital).
    pub fn with_dicom_export(mut self, site_id: &str) -> Self {
        for h in self.hospitals.iter_mut().filter(|h| h.site_id == site_id) {
            h.export = ImageExport::Dicom;
        }
        self
    }

    /// The same cohort with the given number of patients per hospital, in order (e.g. a
    /// study team's 95/85/80/68, to see how a study fits hospitals of those sizes). Each
    /// hospital needs at least one patient.
    pub fn with_hospital_sizes(mut self, sizes: &[usize]) -> Result<Self, String> {
        if sizes.len() != self.hospitals.len() {
            return Err(format!("{} hospital sizes given for {} hospitals", sizes.len(), self.hospitals.len()));
        }
        if let Some((h, _)) = self.hospitals.iter().zip(sizes).find(|(_, n)| **n == 0) {
            return Err(format!("{} needs at least one patient", h.site_id));
        }
        for (h, &n) in self.hospitals.iter_mut().zip(sizes) {
            h.patients = n;
        }
        Ok(self)
    }

    /// Patients over all hospitals.
    pub fn patients(&self) -> usize {
        self.hospitals.iter().map(|h| h.patients).sum()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CohortSpec {
    pub seed: u64,
    /// Field of view (mm) of every acquisition: x, y in-plane, z through-plane.
    pub field_of_view_mm: [f64; 3],
    /// Multiplies every scanner's voxel size; 2.0 gives 8× fewer voxels for fast tests.
    pub coarsen: f64,
    pub hospitals: Vec<HospitalSpec>,
}

/// Four hospitals whose sizes follow 32/27/23/18% of `patients` (328 by default).
pub fn default_cohort(seed: u64, patients: usize) -> CohortSpec {
    let shares = [0.32, 0.27, 0.23, 0.18];
    let mut sizes: Vec<usize> = shares.iter().map(|s| (s * patients as f64).floor() as usize).collect();
    let mut i = 0;
    while sizes.iter().sum::<usize>() < patients {
        sizes[i % 4] += 1;
        i += 1;
    }
    let scanners = [
        ScannerProfile { in_plane_mm: 0.8, slice_mm: 4.0, t1c_scale: 420.0, t1c_offset: 0.0, t2_scale: 380.0, t2_offset: 0.0, noise: 0.03, bias: 0.10 },
        ScannerProfile { in_plane_mm: 1.0, slice_mm: 5.0, t1c_scale: 1050.0, t1c_offset: 40.0, t2_scale: 900.0, t2_offset: 25.0, noise: 0.05, bias: 0.18 },
        ScannerProfile { in_plane_mm: 0.9, slice_mm: 3.0, t1c_scale: 230.0, t1c_offset: 10.0, t2_scale: 610.0, t2_offset: 0.0, noise: 0.04, bias: 0.06 },
        ScannerProfile { in_plane_mm: 0.7, slice_mm: 4.5, t1c_scale: 1800.0, t1c_offset: 100.0, t2_scale: 1500.0, t2_offset: 60.0, noise: 0.06, bias: 0.14 },
    ];
    CohortSpec {
        seed,
        field_of_view_mm: [80.0, 80.0, 72.0],
        coarsen: 1.0,
        hospitals: (0..4)
            .map(|h| HospitalSpec {
                site_id: format!("hospital-{}", (b'a' + h as u8) as char),
                patients: sizes[h],
                scanner: scanners[h].clone(),
                export: ImageExport::Nifti,
            })
            .collect(),
    }
}

/// Outcome model: logit P(recurrence) = β₀ + β·z.
const BETA0: f64 = -1.35;
const BETA: f64 = 1.9;

/// The truth about one patient, kept out of the hospital folders.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PatientTruth {
    pub patient_id: String,
    pub site_id: String,
    pub risk: f64,
    pub p_recurrence: f64,
    pub recurrence: bool,
    pub tumour_volume_mm3: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CohortTruth {
    pub seed: u64,
    pub patients: usize,
    pub prevalence: f64,
    /// AUC of the true recurrence probability: the ceiling for any model.
    pub oracle_auc: f64,
}

/// Paths of what [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct GeneratedCohort {
    pub root: PathBuf,
    /// (site id, manifest path)
    pub manifests: Vec<(String, PathBuf)>,
    pub truth: CohortTruth,
}

struct Clinical {
    age: u32,
    male: bool,
    t: usize,
    n: usize,
    ebv: u64,
    histology: usize,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn ordinal(latent: f64, cuts: &[f64]) -> usize {
    cuts.iter().filter(|c| latent > **c).count()
}

fn clinical(z: f64, r: &mut Rng) -> Clinical {
    let age = (48.0 + 2.0 * z + 11.0 * r.normal()).clamp(18.0, 85.0).round() as u32;
    let male = r.bernoulli(0.75);
    // T1 ~8%, T2 ~15%, T3 ~45%, T4 ~32% at z = 0.
    let t = ordinal(0.7 * z + 0.72 * r.normal(), &[-1.0, -0.55, 0.33]);
    let mut n = ordinal(0.6 * z + 0.8 * r.normal(), &[-1.05, -0.1, 0.65]);
    if t <= 1 && n <= 1 {
        n = 2; // locally advanced disease only: T1-2 need N2+
    }
    let ebv = if r.bernoulli(0.12 * (1.0 - 0.5 * sigmoid(z))) { 0 } else { 10f64.powf(3.1 + 0.55 * z + 0.8 * r.normal()).round() as u64 };
    let histology = r.categorical(&[0.02, 0.10, 0.88]);
    Clinical { age, male, t, n, ebv, histology }
}

/// A tumour as a star-shaped body with a wobbly surface, an internal texture field and an
/// optional necrotic core.
struct Tumour {
    center: [f64; 3],
    axes: [f64; 3],
    radius: f64,
    surface: Vec<([f64; 3], f64, f64, f64)>, // direction, amplitude, frequency, phase
    texture_t1: Vec<([f64; 3], f64, f64)>,   // wave vector (rad/mm), phase, amplitude
    texture_t2: Vec<([f64; 3], f64, f64)>,
    necrosis: f64,
    hetero_t1: f64,
    hetero_t2: f64,
    enhancement: f64,
    t2_signal: f64,
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

// Phases are drawn from [0, 6.283), not [0, τ): the generator's fixed recipe, which every
// cohort and test expectation depends on.
#[allow(clippy::approx_constant)]
impl Tumour {
    fn new(z: f64, t_stage: usize, r: &mut Rng) -> Tumour {
        let ln_v = (24_000f64).ln() + 0.35 * z + 0.18 * (t_stage as f64 - 2.2) + 0.4 * r.normal();
        let volume = ln_v.exp().clamp(4_000.0, 65_000.0);
        let radius = (3.0 * volume / (4.0 * std::f64::consts::PI)).cbrt();
        let irregular = 0.05 + 0.12 * sigmoid(1.3 * z + 0.5 * r.normal());
        let surface = (0..7).map(|_| (r.direction(), irregular * r.range(0.4, 1.0), r.range(1.0, 3.0), r.range(0.0, 6.283))).collect();
        let wave = |r: &mut Rng, lo: f64, hi: f64| {
            (0..10)
                .map(|_| {
                    let d = r.direction();
                    let k = 2.0 * std::f64::consts::PI / r.range(lo, hi);
                    ([d[0] * k, d[1] * k, d[2] * k], r.range(0.0, 6.283), r.range(0.5, 1.0))
                })
                .collect::<Vec<_>>()
        };
        let stretch = [r.range(0.85, 1.2), r.range(0.85, 1.2), r.range(0.8, 1.15)];
        let norm = (stretch[0] * stretch[1] * stretch[2]).cbrt();
        Tumour {
            center: [r.range(-4.0, 4.0), r.range(-2.0, 6.0), r.range(-4.0, 4.0)],
            axes: stretch.map(|s| s / norm),
            radius,
            surface,
            texture_t1: wave(r, 4.0, 12.0),
            texture_t2: wave(r, 3.0, 9.0),
            necrosis: (0.12 + 0.22 * z + 0.1 * r.normal()).clamp(0.0, 0.6),
            hetero_t1: (0.10 + 0.05 * sigmoid(1.2 * z) + 0.03 * r.normal()).max(0.02),
            hetero_t2: (0.06 + 0.20 * sigmoid(1.5 * z) + 0.03 * r.normal()).max(0.02),
            enhancement: 1.75 - 0.12 * z + 0.1 * r.normal(),
            t2_signal: 1.35 + 0.05 * z + 0.08 * r.normal(),
        }
    }

    /// Normalised radial coordinate: < 1 inside the tumour.
    fn rho(&self, p: [f64; 3]) -> f64 {
        let q = [(p[0] - self.center[0]) / self.axes[0], (p[1] - self.center[1]) / self.axes[1], (p[2] - self.center[2]) / self.axes[2]];
        let len = dot(q, q).sqrt();
        if len < 1e-9 {
            return 0.0;
        }
        let d = [q[0] / len, q[1] / len, q[2] / len];
        let wobble: f64 = self.surface.iter().map(|(v, a, f, ph)| a * (f * std::f64::consts::PI * dot(d, *v) + ph).cos()).sum();
        len / (self.radius * (1.0 + wobble))
    }

    fn texture(waves: &[([f64; 3], f64, f64)], p: [f64; 3]) -> f64 {
        let s: f64 = waves.iter().map(|(k, ph, a)| a * (dot(*k, p) + ph).cos()).sum();
        s / (waves.len() as f64 / 2.0).sqrt()
    }
}

/// Background anatomy shared by both sequences: soft tissue with slow variation, an air
/// cavity (the nasopharyngeal airway) above the tumour and a few fat deposits.
struct Anatomy {
    waves: Vec<([f64; 3], f64, f64)>,
    fat: Vec<([f64; 3], f64)>,
    airway: [f64; 3],
}

#[allow(clippy::approx_constant)] // the same fixed recipe as the tumour phases
impl Anatomy {
    fn new(r: &mut Rng) -> Self {
        Anatomy {
            waves: (0..4)
                .map(|_| {
                    let d = r.direction();
                    let k = 2.0 * std::f64::consts::PI / r.range(25.0, 60.0);
                    ([d[0] * k, d[1] * k, d[2] * k], r.range(0.0, 6.283), r.range(0.5, 1.0))
                })
                .collect(),
            fat: (0..4).map(|_| ([r.range(-35.0, 35.0), r.range(-35.0, 35.0), r.range(-30.0, 30.0)], r.range(4.0, 9.0))).collect(),
            airway: [r.range(-3.0, 3.0), r.range(-30.0, -24.0), r.range(-5.0, 5.0)],
        }
    }

    /// (T1c, T2) tissue signal at p, before scanner effects.
    fn signal(&self, p: [f64; 3]) -> (f64, f64) {
        let a = [(p[0] - self.airway[0]) / 9.0, (p[1] - self.airway[1]) / 6.0, (p[2] - self.airway[2]) / 20.0];
        if dot(a, a) < 1.0 {
            return (0.03, 0.03);
        }
        for (c, rad) in &self.fat {
            let d = [p[0] - c[0], p[1] - c[1], p[2] - c[2]];
            if dot(d, d) < rad * rad {
                return (2.1, 1.7);
            }
        }
        let v: f64 = self.waves.iter().map(|(k, ph, a)| a * (dot(*k, p) + ph).cos()).sum::<f64>() * 0.04;
        (1.0 + v, 0.75 + v)
    }
}

struct Acquired {
    t1c: Volume,
    t2: Volume,
    mask: Volume,
    tumour_volume_mm3: f64,
}

fn acquire(spec: &CohortSpec, scanner: &ScannerProfile, tumour: &Tumour, anatomy: &Anatomy, r: &mut Rng) -> Acquired {
    let sp = [scanner.in_plane_mm * spec.coarsen, scanner.in_plane_mm * spec.coarsen, scanner.slice_mm * spec.coarsen];
    let dims = [0, 1, 2].map(|i| (spec.field_of_view_mm[i] / sp[i]).round().max(4.0) as usize);
    let mut geometry = Geometry::axis_aligned(dims, sp);
    geometry.origin = [0, 1, 2].map(|i| -0.5 * (dims[i] - 1) as f64 * sp[i]);
    let bias_dir = r.direction();
    let bias_quad = r.range(-1.0, 1.0);
    let n = geometry.voxel_count();
    let (mut t1, mut t2, mut mask) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    let mut inside = 0usize;
    let half_fov = 0.5 * spec.field_of_view_mm[0];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p = [geometry.origin[0] + i as f64 * sp[0], geometry.origin[1] + j as f64 * sp[1], geometry.origin[2] + k as f64 * sp[2]];
                let (mut s1, mut s2) = anatomy.signal(p);
                let rho = tumour.rho(p);
                // Partial volume: a soft 1 mm edge around the boundary.
                let edge = ((1.0 - rho) * tumour.radius / 1.0).clamp(-0.5, 0.5) + 0.5;
                if edge > 0.0 {
                    let nec = if tumour.necrosis > 0.15 { ((tumour.necrosis - rho) * tumour.radius / 2.0).clamp(-0.5, 0.5) + 0.5 } else { 0.0 };
                    let tex1 = Tumour::texture(&tumour.texture_t1, p);
                    let tex2 = Tumour::texture(&tumour.texture_t2, p);
                    let v1 = tumour.enhancement * (1.0 + tumour.hetero_t1 * tex1) * (1.0 - nec) + 0.45 * nec;
                    let v2 = tumour.t2_signal * (1.0 + tumour.hetero_t2 * tex2) * (1.0 - nec) + 2.1 * nec;
                    s1 = s1 * (1.0 - edge) + v1 * edge;
                    s2 = s2 * (1.0 - edge) + v2 * edge;
                }
                let idx = i + dims[0] * (j + dims[1] * k);
                if rho < 1.0 {
                    mask[idx] = 1.0;
                    inside += 1;
                }
                let u = [p[0] / half_fov, p[1] / half_fov, p[2] / half_fov];
                let bias = 1.0 + scanner.bias * (dot(bias_dir, u) + 0.5 * bias_quad * dot(u, u));
                let rician = |s: f64, scale: f64, offset: f64, r: &mut Rng| {
                    let clean = s * bias * scale;
                    let sd = scanner.noise * scale;
                    let (a, b) = (clean + sd * r.normal(), sd * r.normal());
                    ((a * a + b * b).sqrt() + offset) as f32
                };
                t1[idx] = rician(s1, scanner.t1c_scale, scanner.t1c_offset, r);
                t2[idx] = rician(s2, scanner.t2_scale, scanner.t2_offset, r);
            }
        }
    }
    let voxel_mm3 = sp[0] * sp[1] * sp[2];
    Acquired {
        t1c: Volume::new(geometry.clone(), t1),
        t2: Volume::new(geometry.clone(), t2),
        mask: Volume::new(geometry, mask),
        tumour_volume_mm3: inside as f64 * voxel_mm3,
    }
}

const T_STAGES: [&str; 4] = ["T1", "T2", "T3", "T4"];
const N_STAGES: [&str; 4] = ["N0", "N1", "N2", "N3"];
const HISTOLOGY: [&str; 3] = ["WHO-I", "WHO-II", "WHO-III"];

/// Column order of the manifest a hospital exports.
pub const MANIFEST_COLUMNS: [&str; 13] =
    ["patient_id", "t1c_image", "t1c_mask", "t2_image", "t2_mask", "age", "sex", "t_stage", "n_stage", "overall_stage", "ebv_dna", "histology", "recurrence"];

/// Generates one patient and writes its four volumes; returns the manifest row and truth.
fn patient(spec: &CohortSpec, h: usize, idx: usize, folder: &Path) -> Result<(Vec<String>, PatientTruth), SynthError> {
    let hosp = &spec.hospitals[h];
    let mut r = Rng::derive(spec.seed, &[h as u64 + 1, idx as u64 + 1]);
    let z = r.normal();
    let c = clinical(z, &mut r);
    let p = sigmoid(BETA0 + BETA * z);
    let recurrence = r.bernoulli(p);
    let tumour = Tumour::new(z, c.t, &mut r);
    let anatomy = Anatomy::new(&mut r);
    let acq = acquire(spec, &hosp.scanner, &tumour, &anatomy, &mut r);
    let pid = format!("{}-{:04}", hosp.site_id.trim_start_matches("hospital-").to_uppercase(), idx + 1);
    let images = folder.join("images");
    let paths = match hosp.export {
        ImageExport::Nifti => {
            let name = |s: &str| format!("images/{pid}_{s}.nii.gz");
            nifti::write(&images.join(format!("{pid}_t1c.nii.gz")), &acq.t1c, StoredType::I16)?;
            nifti::write(&images.join(format!("{pid}_t1c_mask.nii.gz")), &acq.mask, StoredType::U8)?;
            nifti::write(&images.join(format!("{pid}_t2.nii.gz")), &acq.t2, StoredType::I16)?;
            nifti::write(&images.join(format!("{pid}_t2_mask.nii.gz")), &acq.mask, StoredType::U8)?;
            vec![name("t1c"), name("t1c_mask"), name("t2"), name("t2_mask")]
        }
        ImageExport::Dicom => write_dicom_patient(&images, &pid, &acq)?,
    };
    let stage = if c.t == 3 || c.n == 3 { "IVA" } else { "III" };
    let mut row = paths;
    row.insert(0, pid.clone());
    row.extend([
        c.age.to_string(),
        if c.male { "male" } else { "female" }.to_string(),
        T_STAGES[c.t].to_string(),
        N_STAGES[c.n].to_string(),
        stage.to_string(),
        c.ebv.to_string(),
        HISTOLOGY[c.histology].to_string(),
        (recurrence as u8).to_string(),
    ]);
    if hosp.export == ImageExport::Dicom {
        row.extend([DICOM_TUMOUR_ROI.to_string(), DICOM_TUMOUR_ROI.to_string()]);
    }
    let truth = PatientTruth { patient_id: pid, site_id: hosp.site_id.clone(), risk: z, p_recurrence: p, recurrence, tumour_volume_mm3: acq.tumour_volume_mm3 };
    Ok((row, truth))
}

/// Writes one patient's two sequences as DICOM MR series (stored as int16, rounded and clamped
/// like the NIfTI export) with an RT structure set each, holding the tumour as
/// [`DICOM_TUMOUR_ROI`] and a second structure a planning system would also hold (a brainstem
/// stand-in, so the ROI has to be chosen by name). Returns the manifest's four path cells.
fn write_dicom_patient(images: &Path, pid: &str, acq: &Acquired) -> Result<Vec<String>, SynthError> {
    use fedrad_imaging::dicom::write::{SeriesIdentity, write_rtstruct, write_series};
    let [nx, ny, nz] = acq.mask.geometry.dims;
    let brainstem = Volume::new(
        acq.mask.geometry.clone(),
        (0..nx * ny * nz)
            .map(|v| {
                let (i, j, k) = (v % nx, (v / nx) % ny, v / (nx * ny));
                let inside = (nx / 2..nx / 2 + 3).contains(&i) && (ny - 4..ny - 1).contains(&j) && (nz / 2..nz / 2 + 2).contains(&k);
                f32::from(u8::from(inside))
            })
            .collect(),
    );
    let mut cells = Vec::new();
    for (seq, description, volume) in [("t1c", "T1WI+C", &acq.t1c), ("t2", "T2WI", &acq.t2)] {
        let rounded = Volume::new(volume.geometry.clone(), volume.data.iter().map(|v| v.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX))).collect());
        let mut id = SeriesIdentity::derived(pid, description, "MR");
        id.series_number = if seq == "t1c" { 5 } else { 3 };
        write_series(&images.join(pid).join(seq), &rounded, &id)?;
        write_rtstruct(&images.join(pid).join(format!("{seq}_rtstruct.dcm")), &rounded, &id, &[(DICOM_TUMOUR_ROI, &acq.mask), ("Brainstem", &brainstem)])?;
        cells.push(format!("images/{pid}/{seq}"));
        cells.push(format!("images/{pid}/{seq}_rtstruct.dcm"));
    }
    Ok(cells)
}

/// AUC by the Mann-Whitney definition (ties count one half).
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let (mut pairs, mut wins) = (0.0, 0.0);
    for (s1, _) in scores.iter().zip(labels).filter(|x| *x.1) {
        for (s0, _) in scores.iter().zip(labels).filter(|x| !*x.1) {
            pairs += 1.0;
            wins += if s1 > s0 {
                1.0
            } else if s1 == s0 {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / pairs
}

/// Writes the cohort under `root`. `progress` is called once per finished patient.
pub fn generate(spec: &CohortSpec, root: &Path, progress: &(dyn Fn() + Sync)) -> Result<GeneratedCohort, SynthError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SynthError::Io { path, source }
    };
    let mut manifests = Vec::new();
    let mut truths = Vec::new();
    for (h, hosp) in spec.hospitals.iter().enumerate() {
        let folder = root.join(&hosp.site_id);
        std::fs::create_dir_all(folder.join("images")).map_err(io(&folder))?;
        let rows: Vec<(Vec<String>, PatientTruth)> = (0..hosp.patients)
            .into_par_iter()
            .map(|i| {
                let out = patient(spec, h, i, &folder);
                progress();
                out
            })
            .collect::<Result<_, _>>()?;
        let path = folder.join("manifest.csv");
        let csv_err = |source| SynthError::Csv { path: path.clone(), source };
        let mut w = csv::Writer::from_path(&path).map_err(csv_err)?;
        let mut columns = MANIFEST_COLUMNS.to_vec();
        if hosp.export == ImageExport::Dicom {
            columns.extend(["t1c_roi", "t2_roi"]);
        }
        w.write_record(&columns).map_err(csv_err)?;
        for (row, t) in rows {
            w.write_record(&row).map_err(csv_err)?;
            truths.push(t);
        }
        w.flush().map_err(io(&path))?;
        manifests.push((hosp.site_id.clone(), path));
    }
    let truth_dir = root.join("truth");
    std::fs::create_dir_all(&truth_dir).map_err(io(&truth_dir))?;
    let path = truth_dir.join("patients.csv");
    let mut w = csv::Writer::from_path(&path).map_err(|source| SynthError::Csv { path: path.clone(), source })?;
    for t in &truths {
        w.serialize(t).map_err(|source| SynthError::Csv { path: path.clone(), source })?;
    }
    w.flush().map_err(io(&path))?;
    let labels: Vec<bool> = truths.iter().map(|t| t.recurrence).collect();
    let probs: Vec<f64> = truths.iter().map(|t| t.p_recurrence).collect();
    let truth = CohortTruth {
        seed: spec.seed,
        patients: truths.len(),
        prevalence: labels.iter().filter(|l| **l).count() as f64 / labels.len().max(1) as f64,
        oracle_auc: auc(&probs, &labels),
    };
    let json = serde_json::to_string_pretty(&truth).expect("serialisable");
    std::fs::write(truth_dir.join("truth.json"), json).map_err(io(&truth_dir))?;
    let spec_json = serde_json::to_string_pretty(spec).expect("serialisable");
    std::fs::write(root.join("cohort.json"), spec_json).map_err(io(root))?;
    Ok(GeneratedCohort { root: root.to_path_buf(), manifests, truth })
}

/// Reuses a cohort already generated from the same spec under `root`, or generates it.
pub fn generate_or_reuse(spec: &CohortSpec, root: &Path, progress: &(dyn Fn() + Sync)) -> Result<GeneratedCohort, SynthError> {
    let existing = std::fs::read_to_string(root.join("cohort.json")).ok().and_then(|s| serde_json::from_str::<CohortSpec>(&s).ok());
    let truth = std::fs::read_to_string(root.join("truth/truth.json")).ok().and_then(|s| serde_json::from_str::<CohortTruth>(&s).ok());
    if let (Some(existing), Some(truth)) = (existing, truth)
        && &existing == spec
    {
        let manifests = spec.hospitals.iter().map(|h| (h.site_id.clone(), root.join(&h.site_id).join("manifest.csv"))).collect::<Vec<_>>();
        if manifests.iter().all(|(_, p)| p.exists()) {
            return Ok(GeneratedCohort { root: root.to_path_buf(), manifests, truth });
        }
    }
    generate(spec, root, progress)
}

#[cfg(test)]
mod hospital_size_tests {
    use super::*;

    #[test]
    fn hospital_sizes_are_taken_in_order_and_written_as_given() {
        assert!(default_cohort(1, 20).with_hospital_sizes(&[5, 5, 5]).unwrap_err().contains("3 hospital sizes given for 4"));
        assert!(default_cohort(1, 20).with_hospital_sizes(&[5, 0, 5, 5]).unwrap_err().contains("hospital-b"));
        let mut spec = default_cohort(7, 20).with_hospital_sizes(&[4, 3, 2, 1]).unwrap();
        spec.coarsen = 4.0;
        assert_eq!(spec.patients(), 10);
        let dir = std::env::temp_dir().join(format!("fedrad-synth-sizes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cohort = generate(&spec, &dir, &|| {}).unwrap();
        let rows: Vec<usize> = cohort.manifests.iter().map(|(_, m)| std::fs::read_to_string(m).unwrap().lines().count() - 1).collect();
        assert_eq!(rows, [4, 3, 2, 1]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
