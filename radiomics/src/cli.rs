//! The `extract` command, shared by `fedrad-radiomics extract` and `site-agent extract` so that
//! a hospital's IT can try a parameter file with the same code that the site agent runs.

use std::path::PathBuf;

use anyhow::Context;

use crate::extract::{extract_files, to_csv};
use crate::settings::Settings;

/// Extract radiomic features from one image and mask into a CSV
/// (columns feature,value,ibsi_code,aggregation).
#[derive(Debug, Clone, clap::Args)]
pub struct ExtractArgs {
    /// A NIfTI/NRRD file, or a folder holding one DICOM series.
    #[arg(long)]
    pub image: PathBuf,
    /// A NIfTI/NRRD label file, or an RTSTRUCT or SEG file drawn on the DICOM series.
    #[arg(long)]
    pub mask: PathBuf,
    /// The region's name in an RTSTRUCT (ROI name) or SEG (segment label).
    #[arg(long)]
    pub roi: Option<String>,
    /// PyRadiomics parameter file (YAML); default: FedRad's MRI study settings.
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Mask label of the ROI (overrides the parameter file).
    #[arg(long)]
    pub label: Option<u32>,
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs the command; returns how many features it wrote. Errors name the file at fault.
pub fn extract_command(args: &ExtractArgs) -> anyhow::Result<usize> {
    let mut settings = match &args.params {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Settings::from_pyradiomics_yaml(&text).with_context(|| format!("parameter file {}", p.display()))?
        }
        None => Settings::study_default(),
    };
    if let Some(l) = args.label {
        settings.label = l;
    }
    let features = extract_files(&args.image, &args.mask, args.roi.as_deref(), &settings)
        .with_context(|| format!("extracting {} with mask {}", args.image.display(), args.mask.display()))?;
    std::fs::write(&args.out, to_csv(&features)).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(features.len())
}
