//! Local intensity features (IBSI 3.2, 9ST6).
//!
//! The local mean at a voxel is the mean intensity of all image voxels (inside the ROI or
//! not) whose centres lie within a sphere of 1 cm³ (radius 6.2035 mm) around it.
//!
//! | feature | code | formula |
//! |---|---|---|
//! | Local intensity peak | VJGA | largest local mean among ROI voxels of maximal intensity |
//! | Global intensity peak | 0F91 | largest local mean among all ROI voxels |

use super::{Feature, Roi, feature};

/// Radius of a sphere of 1 cm³.
pub const RADIUS_MM: f64 = 6.203_504_908_994;

pub fn features(roi: &Roi) -> Vec<Feature> {
    let [nx, ny, nz] = roi.dims;
    let sp = roi.spacing;
    let reach = [0, 1, 2].map(|a| (RADIUS_MM / sp[a]).floor() as isize);
    let mut offsets = Vec::new();
    for dz in -reach[2]..=reach[2] {
        for dy in -reach[1]..=reach[1] {
            for dx in -reach[0]..=reach[0] {
                let d2 = (dx as f64 * sp[0]).powi(2) + (dy as f64 * sp[1]).powi(2) + (dz as f64 * sp[2]).powi(2);
                if d2 <= RADIUS_MM * RADIUS_MM {
                    offsets.push([dx, dy, dz]);
                }
            }
        }
    }
    let local_mean = |x: usize, y: usize, z: usize| -> f64 {
        let (mut s, mut c) = (0.0, 0.0);
        for o in &offsets {
            let (a, b, e) = (x as isize + o[0], y as isize + o[1], z as isize + o[2]);
            if a >= 0 && b >= 0 && e >= 0 && (a as usize) < nx && (b as usize) < ny && (e as usize) < nz {
                s += roi.intensities[roi.index(a as usize, b as usize, e as usize)];
                c += 1.0;
            }
        }
        s / c
    };
    let max_intensity = roi.roi_intensities().into_iter().fold(f64::NEG_INFINITY, f64::max);
    let (mut local, mut global) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let i = roi.index(x, y, z);
                if !roi.mask[i] {
                    continue;
                }
                let m = local_mean(x, y, z);
                global = global.max(m);
                if roi.intensities[i] == max_intensity {
                    local = local.max(m);
                }
            }
        }
    }
    let nan_if_empty = |v: f64| if v.is_finite() { v } else { f64::NAN };
    vec![
        feature("localintensity_LocalIntensityPeak", nan_if_empty(local), "VJGA", None),
        feature("localintensity_GlobalIntensityPeak", nan_if_empty(global), "0F91", None),
    ]
}
