//! Study-supplied networks: deep features from an ONNX file the study team chose (e.g. an
//! ImageNet ResNet-50 whose 1000 outputs many radiomics papers call deep features), run at
//! the site with tract (pure Rust, CPU).
//!
//! Trust: the study file names the network by file name and SHA-256. Hospital IT places the
//! approved file in the site's `networks_dir`; the site runs it only if its bytes hash to the
//! study's SHA-256, so a swapped or tampered file is refused with a clear error, and a
//! coordinator can never ship code to run at the site.
//!
//! Input recipe (from the study file): the 2.5D crop of [`crate::deep`] at `input_size` ×
//! `input_size` over `field_mm`, with 3 channels (the largest tumour slice and its
//! neighbours) or 1 (that slice alone); intensities either z-scored with the tumour's voxels
//! (`zscore`), or mapped to [0, 1] by the crop's minimum and maximum and normalised with
//! ImageNet's per-channel mean and SD (`imagenet`, what ImageNet-trained networks expect).
//! Output: the network's first output, flattened.

use std::path::Path;

use rayon::prelude::*;
use tract_onnx::prelude::*;

pub use fedrad_shared::onnx_input::{InputRecipe, Intensity};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network file name {0:?} must be a plain file name (no folders)")]
    BadName(String),
    #[error("network {path}: {detail}")]
    Unreadable { path: String, detail: String },
    #[error(
        "network {path} does not match the study's SHA-256 (the study names {expected}, the file hashes to {found}): a different or tampered file; ask the study team for the approved network"
    )]
    HashMismatch { path: String, expected: String, found: String },
    #[error("network {path} cannot be loaded for input {shape:?}: {detail}")]
    Load { path: String, shape: Vec<usize>, detail: String },
    #[error("running the network: {0}")]
    Run(String),
}

/// A loaded, hash-checked network.
pub struct Network {
    plan: Arc<TypedRunnableModel>,
    shape: [usize; 4],
}

impl Network {
    /// Loads `dir/name` if its bytes hash to `sha256` (hex).
    pub fn load(dir: &Path, name: &str, sha256: &str, recipe: &InputRecipe) -> Result<Network, NetworkError> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(NetworkError::BadName(name.into()));
        }
        let path = dir.join(name);
        let shown = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| NetworkError::Unreadable { path: shown.clone(), detail: e.to_string() })?;
        let found = crate::audit::sha256_hex(&bytes);
        if !found.eq_ignore_ascii_case(sha256.trim()) {
            return Err(NetworkError::HashMismatch { path: shown, expected: sha256.into(), found });
        }
        Self::from_bytes(&bytes, recipe).map_err(|e| match e {
            NetworkError::Load { shape, detail, .. } => NetworkError::Load { path: shown, shape, detail },
            other => other,
        })
    }

    /// Loads a network from its bytes, for input `1 × channels × size × size`.
    pub fn from_bytes(bytes: &[u8], recipe: &InputRecipe) -> Result<Network, NetworkError> {
        let shape = [1, recipe.channels, recipe.size, recipe.size];
        let load = |detail: String| NetworkError::Load { path: String::new(), shape: shape.to_vec(), detail };
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| load(format!("{e:#}")))?;
        Ok(Network { plan, shape })
    }

    /// The network's first output for one input (`channels × size × size`, row-major).
    pub fn run(&self, input: &[f32]) -> Result<Vec<f64>, NetworkError> {
        let tensor = tract_ndarray::Array4::from_shape_vec(self.shape, input.to_vec()).map_err(|e| NetworkError::Run(e.to_string()))?;
        let outputs = self.plan.run(tvec!(Tensor::from(tensor).into())).map_err(|e| NetworkError::Run(format!("{e:#}")))?;
        let first = outputs.first().ok_or_else(|| NetworkError::Run("the network has no output".into()))?;
        let view = first.to_plain_array_view::<f32>().map_err(|e| NetworkError::Run(format!("{e:#}")))?;
        Ok(view.iter().map(|v| *v as f64).collect())
    }

    /// Outputs for many inputs, in parallel, order kept.
    pub fn run_all(&self, inputs: &[Vec<f32>]) -> Vec<Result<Vec<f64>, NetworkError>> {
        inputs.par_iter().map(|x| self.run(x)).collect()
    }
}
