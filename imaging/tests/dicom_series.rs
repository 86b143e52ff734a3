//! DICOM series and RT structure sets as hospitals export them: written by FedRad's writer
//! (the synthetic generator's), read back exactly, and each rule of the reader tried with the
//! export mistakes it must refuse.

use std::path::Path;

use fedrad_imaging::dicom::write::{SeriesIdentity, trace_loops, write_enhanced_series, write_rtstruct, write_series};
use fedrad_imaging::dicom::{read_mask, read_rtstruct_mask, read_series, rtstruct_rois};
use fedrad_imaging::{Geometry, ImagingError, Volume};

/// An oblique 12 × 10 × 6 grid (rotated about two axes), with anisotropic spacing.
fn geometry() -> Geometry {
    let (a, b) = (0.3f64, 0.2f64);
    let rz = [[a.cos(), -a.sin(), 0.0], [a.sin(), a.cos(), 0.0], [0.0, 0.0, 1.0]];
    let rx = [[1.0, 0.0, 0.0], [0.0, b.cos(), -b.sin()], [0.0, b.sin(), b.cos()]];
    let mut d = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            d[r][c] = (0..3).map(|m| rz[r][m] * rx[m][c]).sum();
        }
    }
    Geometry { dims: [12, 10, 6], spacing: [0.9, 0.8, 3.0], origin: [-40.5, 20.25, -12.0], direction: d }
}

fn image(g: &Geometry) -> Volume {
    let n = g.voxel_count();
    Volume::new(g.clone(), (0..n).map(|i| ((i * 37) % 900) as f32 - 100.0).collect())
}

/// A tumour with a hole in slice 2, two blobs touching at a corner in slice 3, and an island
/// inside the hole of slice 4.
fn mask(g: &Geometry) -> Volume {
    let [nx, ny, nz] = g.dims;
    let mut m = vec![0.0f32; nx * ny * nz];
    for k in 1..5 {
        for j in 2..8 {
            for i in 3..10 {
                m[i + nx * (j + ny * k)] = 1.0;
            }
        }
    }
    let at = |i: usize, j: usize, k: usize| i + nx * (j + ny * k);
    m[at(5, 4, 2)] = 0.0;
    m[at(6, 4, 2)] = 0.0;
    for j in 2..8 {
        for i in 3..10 {
            m[at(i, j, 3)] = if (i < 6 && j < 5) || (i >= 6 && j >= 5) { 1.0 } else { 0.0 };
        }
    }
    for j in 3..7 {
        for i in 4..9 {
            m[at(i, j, 4)] = if (j == 3 || j == 6 || i == 4 || i == 8) || (i == 6 && j == 5) { 0.0 } else { 1.0 };
        }
    }
    let _ = nz;
    Volume::new(g.clone(), m)
}

fn export(dir: &Path) -> (Volume, Volume, SeriesIdentity) {
    let g = geometry();
    let (img, m) = (image(&g), mask(&g));
    let id = SeriesIdentity::derived("P001", "T2", "MR");
    write_series(&dir.join("series"), &img, &id).unwrap();
    write_rtstruct(&dir.join("rs.dcm"), &img, &id, &[("GTVnx", &m), ("Parotid_L", &image(&g))]).unwrap();
    (img, m, id)
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fedrad-dicom-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn detail(e: ImagingError) -> String {
    e.to_string()
}

#[test]
fn a_written_series_and_structure_set_read_back_exactly() {
    let dir = tempdir("roundtrip");
    let (img, m, id) = export(&dir);
    let series = read_series(&dir.join("series")).unwrap();
    assert_eq!(series.slices, 6);
    assert_eq!(series.series_uid, id.series_uid);
    assert_eq!(series.volume.data, img.data);
    assert_eq!(series.volume.geometry.mismatch(&img.geometry, 1e-6), None, "{:?} vs {:?}", series.volume.geometry, img.geometry);
    let rois = rtstruct_rois(&dir.join("rs.dcm")).unwrap();
    assert_eq!(rois.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["GTVnx", "Parotid_L"]);
    let back = read_rtstruct_mask(&dir.join("rs.dcm"), "GTVnx", &series).unwrap();
    assert_eq!(back.data, m.data, "holes, corner-touching blobs and islands come back voxel for voxel");
    // Names match exactly or, failing that, ignoring case; the dispatcher tells RTSTRUCT by Modality.
    assert_eq!(read_mask(&dir.join("rs.dcm"), "gtvNX", &series, 0.5).unwrap().data, m.data);
    let missing = detail(read_rtstruct_mask(&dir.join("rs.dcm"), "GTV_P", &series).unwrap_err());
    assert!(missing.contains("GTV_P") && missing.contains("GTVnx") && missing.contains("Parotid_L"), "{missing}");
}

#[test]
fn slices_are_ordered_by_position_not_by_file_name_or_instance_number() {
    let dir = tempdir("order");
    let (img, _, _) = export(&dir);
    // Rename the files so that name order is a shuffle of the slice order.
    let s = dir.join("series");
    for (k, new) in [(0, "z3"), (1, "a9"), (2, "m1"), (3, "b0"), (4, "q7"), (5, "c2")] {
        std::fs::rename(s.join(format!("IM{k:04}.dcm")), s.join(format!("{new}.dcm"))).unwrap();
    }
    let series = read_series(&s).unwrap();
    assert_eq!(series.volume.data, img.data);
}

#[test]
fn gaps_duplicates_and_mixed_series_are_refused_with_the_reason() {
    let dir = tempdir("refuse");
    export(&dir);
    let s = dir.join("series");
    // A duplicate slice (the same position twice).
    std::fs::copy(s.join("IM0002.dcm"), s.join("IM0002-copy.dcm")).unwrap();
    let e = detail(read_series(&s).unwrap_err());
    assert!(e.contains("duplicate"), "{e}");
    std::fs::remove_file(s.join("IM0002-copy.dcm")).unwrap();
    // A missing slice.
    std::fs::remove_file(s.join("IM0003.dcm")).unwrap();
    let e = detail(read_series(&s).unwrap_err());
    assert!(e.contains("not constant") && e.contains("IM0002.dcm") && e.contains("IM0004.dcm"), "{e}");
    // Two series in one folder.
    let other = dir.join("other");
    write_series(&other, &image(&geometry()), &SeriesIdentity::derived("P001", "T1C", "MR")).unwrap();
    std::fs::copy(other.join("IM0000.dcm"), s.join("t1c.dcm")).unwrap();
    let e = detail(read_series(&s).unwrap_err());
    assert!(e.contains("2 image series"), "{e}");
    // The structure set is skipped when it sits in the series folder; an empty folder is an error.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(dir.join("rs.dcm"), empty.join("rs.dcm")).unwrap();
    assert!(detail(read_series(&empty).unwrap_err()).contains("no DICOM image series"));
}

#[test]
fn a_structure_set_of_another_frame_of_reference_is_refused() {
    let dir = tempdir("frame");
    let (img, m, id) = export(&dir);
    let series = read_series(&dir.join("series")).unwrap();
    let other = SeriesIdentity { frame_of_reference_uid: "1.2.3.4".into(), ..id };
    write_rtstruct(&dir.join("other.dcm"), &img, &other, &[("GTV", &m)]).unwrap();
    let e = detail(read_rtstruct_mask(&dir.join("other.dcm"), "GTV", &series).unwrap_err());
    assert!(e.contains("frame of reference"), "{e}");
}

#[test]
fn non_integer_intensities_are_stored_through_a_rescale_and_read_back_within_half_a_step() {
    let dir = tempdir("rescale");
    let g = geometry();
    let n = g.voxel_count();
    let v = Volume::new(g.clone(), (0..n).map(|i| (i as f32 * 0.731).sin() * 1234.5 + 17.25).collect());
    write_series(&dir.join("s"), &v, &SeriesIdentity::derived("P9", "T2", "MR")).unwrap();
    let back = read_series(&dir.join("s")).unwrap();
    let step = 2.0 * 1234.5 / 65535.0;
    let worst = v.data.iter().zip(&back.volume.data).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
    assert!(worst <= 0.5 * step + 1e-3, "{worst} vs step {step}");
}

#[test]
fn traced_loops_rasterise_back_to_their_voxels() {
    // Every 5 × 4 mask (2^20 of them is too many; a deterministic sample of 4096).
    let (nx, ny) = (5usize, 4usize);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..4096 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let m: Vec<bool> = (0..nx * ny).map(|b| (state >> b) & 1 == 1).collect();
        let loops = trace_loops(&m, nx, ny);
        // Rasterise by the reader's rule (centre in polygon, even–odd).
        for j in 0..ny {
            for i in 0..nx {
                let (x, y) = (i as f64, j as f64);
                let mut inside = false;
                for lp in &loops {
                    for (a, b) in lp.iter().zip(lp.iter().cycle().skip(1)) {
                        if (a[1] > y) != (b[1] > y) && x < a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]) {
                            inside = !inside;
                        }
                    }
                }
                assert_eq!(inside, m[i + nx * j], "mask {m:?} voxel ({i}, {j})");
            }
        }
    }
}

#[test]
fn an_enhanced_multi_frame_series_reads_as_its_classic_twin_with_frames_out_of_order() {
    let dir = tempdir("enhanced");
    let g = geometry();
    // Integral values: the classic twin stores them as they are, the enhanced object per frame.
    let img = image(&g);
    let id = SeriesIdentity::derived("P001", "T2", "MR");
    write_series(&dir.join("classic"), &img, &id).unwrap();
    write_enhanced_series(&dir.join("enhanced/mr.dcm"), &img, &id, &[3, 0, 5, 1, 4, 2]).unwrap();
    let classic = read_series(&dir.join("classic")).unwrap();
    let enhanced = read_series(&dir.join("enhanced")).unwrap();
    assert_eq!(enhanced.slices, 6, "six frames of one file");
    assert_eq!(enhanced.volume.data, classic.volume.data);
    assert_eq!(enhanced.volume.geometry.mismatch(&classic.volume.geometry, 1e-9), None);
    // The structure set drawn on the classic series fits the enhanced one (same frame of reference).
    let m = mask(&g);
    write_rtstruct(&dir.join("rs.dcm"), &img, &id, &[("GTVnx", &m)]).unwrap();
    assert_eq!(read_rtstruct_mask(&dir.join("rs.dcm"), "GTVnx", &enhanced).unwrap().data, m.data);

    // Non-integral values go through a rescale per frame; each frame's own must be applied.
    let n = g.voxel_count();
    let per_slice = g.dims[0] * g.dims[1];
    let v = Volume::new(g.clone(), (0..n).map(|i| ((i * 7919) % 1000) as f32 * 0.37 * (1 + i / per_slice) as f32 - 50.5).collect());
    write_enhanced_series(&dir.join("scaled/mr.dcm"), &v, &id, &[5, 4, 3, 2, 1, 0]).unwrap();
    let back = read_series(&dir.join("scaled")).unwrap();
    for k in 0..6 {
        let plane = |d: &[f32]| d[k * per_slice..(k + 1) * per_slice].to_vec();
        let (want, got) = (plane(&v.data), plane(&back.volume.data));
        let range = want.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) - want.iter().fold(f32::INFINITY, |a, &b| a.min(b));
        let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst <= 0.5 * range / 65535.0 + 1e-3, "slice {k}: error {worst} for a step of {}", range / 65535.0);
    }
    let e = detail(write_enhanced_series(&dir.join("bad/mr.dcm"), &v, &id, &[0, 1, 2]).unwrap_err());
    assert!(e.contains("not a permutation"), "{e}");
}

#[test]
fn a_series_in_a_transfer_syntax_without_a_decoder_here_is_refused_naming_it() {
    use dicom_core::value::PixelFragmentSequence;
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    let dir = tempdir("jpeg2000");
    let id = SeriesIdentity::derived("P002", "T1C", "MR");
    write_series(&dir.join("s"), &image(&geometry()), &id).unwrap();
    // Re-encapsulate each slice as JPEG 2000 (the codestream's bytes are never reached: the
    // reader must refuse by transfer syntax before trying a decoder).
    for entry in std::fs::read_dir(dir.join("s")).unwrap() {
        let path = entry.unwrap().path();
        let file = dicom_object::open_file(&path).unwrap();
        let mut obj: InMemDicomObject = file.into_inner();
        let codestream = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 0, 0, 0];
        obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, PixelFragmentSequence::new_fragments(vec![codestream])));
        let j2k = obj.with_meta(FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.4.90")).unwrap();
        j2k.write_to_file(&path).unwrap();
    }
    let e = detail(read_series(&dir.join("s")).unwrap_err());
    assert!(e.contains("JPEG 2000") && e.contains("1.2.840.10008.1.2.4.90") && e.contains("IM000"), "{e}");
}
