//! Every kind of bad manifest row is excluded with its reason; the other rows load and the
//! site still answers, reporting counts per reason.

use std::collections::BTreeMap;
use std::path::Path;

use fedrad_imaging::nifti::{self, StoredType};
use fedrad_imaging::{Geometry, Volume};
use fedrad_shared::aggregate::SiteAggregate;
use fedrad_shared::algorithms::{cohort_summary, table1};
use fedrad_shared::clinical::{ExclusionReason, npc_dictionary};
use fedrad_shared::proto::{self, task, task_reply};
use site_agent::manifest::{ImageCheck, load};

mod common;

fn rewrite(manifest: &Path, edit: impl Fn(usize, &mut Vec<String>)) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(manifest).unwrap();
    let mut rows = vec![r.headers().unwrap().iter().map(str::to_string).collect::<Vec<_>>()];
    for (i, rec) in r.records().enumerate() {
        let mut row: Vec<String> = rec.unwrap().iter().map(str::to_string).collect();
        edit(i, &mut row);
        rows.push(row);
    }
    rows
}

#[test]
fn each_bad_row_is_excluded_with_its_reason_and_the_rest_loads() {
    let dir = common::fresh_dir("manifest");
    let cohort = common::one_hospital(&dir, 9, 60);
    let manifest = &cohort.manifests[0].1;
    let images = manifest.parent().unwrap().join("images");
    // Broken files for some rows.
    std::fs::write(images.join("garbage.nii.gz"), b"not a volume").unwrap();
    let reference = nifti::read(&images.join("A-0001_t1c.nii.gz")).unwrap();
    let odd = Volume::new(Geometry::axis_aligned([3, 3, 3], [1.0; 3]), vec![1.0; 27]);
    nifti::write(&images.join("wrong_grid_mask.nii.gz"), &odd, StoredType::U8).unwrap();
    let empty = Volume::new(reference.geometry.clone(), vec![0.0; reference.data.len()]);
    nifti::write(&images.join("empty_mask.nii.gz"), &empty, StoredType::U8).unwrap();

    let col = |name: &str| fedrad_synth::MANIFEST_COLUMNS.iter().position(|c| *c == name).unwrap();
    let expected: BTreeMap<usize, ExclusionReason> = [
        (1, ExclusionReason::MissingFile),
        (2, ExclusionReason::UnreadableVolume),
        (3, ExclusionReason::GeometryMismatch),
        (4, ExclusionReason::EmptyMask),
        (5, ExclusionReason::MissingValue),
        (6, ExclusionReason::UnparsableValue),
        (7, ExclusionReason::BadOutcome),
        (8, ExclusionReason::DuplicateId),
        (9, ExclusionReason::DuplicateId),
        (10, ExclusionReason::UnparsableValue),
        (11, ExclusionReason::BadOutcome),
    ]
    .into_iter()
    .collect();
    let mut rows = rewrite(manifest, |i, row| match i {
        1 => row[col("t2_image")] = "images/nope.nii.gz".into(),
        2 => row[col("t1c_image")] = "images/garbage.nii.gz".into(),
        3 => row[col("t2_mask")] = "images/wrong_grid_mask.nii.gz".into(),
        4 => row[col("t1c_mask")] = "images/empty_mask.nii.gz".into(),
        5 => row[col("age")] = "".into(),
        6 => row[col("age")] = "forty".into(),
        7 => row[col("recurrence")] = "2".into(),
        8 | 9 => row[col("patient_id")] = "A-DUP".into(),
        10 => row[col("t_stage")] = "T9".into(),
        11 => row[col("recurrence")] = "".into(),
        _ => {}
    });
    // A row with a field too many.
    let mut extra = rows[13].clone();
    extra.push("surplus".into());
    rows.push(extra);
    let mut w = csv::WriterBuilder::new().flexible(true).from_path(manifest).unwrap();
    for r in &rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();

    let loaded = load(manifest, &npc_dictionary(), ImageCheck::Full).unwrap();
    let n_rows = rows.len() - 1;
    assert_eq!(loaded.records.len() + loaded.excluded.len(), n_rows, "a row was dropped silently");
    for e in &loaded.excluded {
        let data_index = e.line - 2;
        let want = if data_index == n_rows - 1 { ExclusionReason::MalformedRow } else { expected[&data_index] };
        assert_eq!(e.reason, want, "line {}: {}", e.line, e.detail);
        assert!(!e.detail.is_empty());
    }
    assert_eq!(loaded.excluded.len(), expected.len() + 1);
    assert_eq!(loaded.records.len(), n_rows - expected.len() - 1);

    // The site still works and reports counts per reason (only counts).
    let mut cfg = common::local_config(manifest, &dir);
    // 47 patients: the split's smaller cohorts hold fewer than the default minimum of 5.
    cfg.policy.min_count = 1;
    let plan = common::approve(&cfg, "s", |_| {});
    let loaded_count = loaded.records.len();
    let engine = site_agent::engine::SiteEngine::new(cfg, loaded).unwrap();
    let reply = engine.handle(&common::task(&plan, "summary-1", Some(task::Kind::CohortSummary(proto::CohortSummaryTask {}))));
    let Some(task_reply::Outcome::Aggregate(agg)) = reply.outcome else { panic!("no aggregate: {reply:?}") };
    let summary = cohort_summary::combine(&[SiteAggregate::new("hospital-a", agg)]).unwrap();
    assert_eq!(summary.loaded, loaded_count as u64);
    // The counts per reason travel with Table 1 (summed over the sites in a study of several).
    let (n, pos) = (summary.loaded, summary.positives);
    let quota = |k: u64| (0.7 * k as f64).floor() as u64;
    let split = engine.handle(&common::task(
        &plan,
        "split-1",
        Some(task::Kind::Split(proto::SplitTask { seed: plan.seed, training_quota_negative: quota(n - pos), training_quota_positive: quota(pos) })),
    ));
    assert!(matches!(split.outcome, Some(task_reply::Outcome::Aggregate(_))), "{split:?}");
    let variables = plan.table1_variables().unwrap();
    let reply = engine.handle(&common::task(
        &plan,
        "table1-1",
        Some(task::Kind::Table1(proto::Table1Task { variables: variables.iter().map(common::variable_to_proto).collect(), per_site: false })),
    ));
    let Some(task_reply::Outcome::Aggregate(agg)) = reply.outcome else { panic!("no Table 1: {reply:?}") };
    let excluded = &table1::combine(&[SiteAggregate::new("hospital-a", agg)], &variables, false).unwrap().scopes[0].excluded;
    assert_eq!(excluded.values().sum::<u64>(), 12);
    assert_eq!(excluded[&ExclusionReason::DuplicateId], 2);
    assert_eq!(excluded[&ExclusionReason::UnparsableValue], 2);
    assert_eq!(excluded[&ExclusionReason::MalformedRow], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_manifest_without_required_columns_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("fedrad-manifest-cols-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("manifest.csv");
    std::fs::write(&p, "patient_id,t1c_image,recurrence\nA,x,1\n").unwrap();
    let err = load(&p, &npc_dictionary(), ImageCheck::Full).unwrap_err().to_string();
    assert!(err.contains("t1c_mask") && err.contains("age"), "{err}");
    std::fs::write(&p, format!("{},mystery\n", fedrad_synth::MANIFEST_COLUMNS.join(","))).unwrap();
    let err = load(&p, &npc_dictionary(), ImageCheck::Full).unwrap_err().to_string();
    assert!(err.contains("mystery"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bounded mutation fuzz of the manifest parser (`cargo test mutated`): a valid manifest is
/// damaged 1 500 ways — flipped bytes, truncation, inserted quotes, commas and newlines,
/// duplicated lines, invalid UTF-8 — and every load ends in a cohort whose rows are each
/// loaded or excluded with a reason, or in a typed error; never a panic.
#[test]
fn mutated_manifests_never_crash_the_parser() {
    let dir = common::fresh_dir("manifest-mutated");
    let cohort = common::one_hospital(&dir, 4, 30);
    let manifest = &cohort.manifests[0].1;
    let original = std::fs::read(manifest).unwrap();
    let target = manifest.with_file_name("mutated.csv");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let specials: [&[u8]; 8] = [b"\"", b",", b"\n", b"\r\n", b"\xff\xfe", b"\"\"", b"-1e999", b"NaN"];
    let (mut loaded, mut errors) = (0, 0);
    for _ in 0..1500 {
        let mut b = original.clone();
        for _ in 0..1 + next(4) {
            match next(5) {
                0 => {
                    let i = next(b.len());
                    b[i] = next(256) as u8;
                }
                1 => b.truncate(next(b.len())),
                2 => {
                    let at = next(b.len() + 1);
                    let s = specials[next(specials.len())];
                    b.splice(at..at, s.iter().copied());
                }
                3 => {
                    // Duplicate a line.
                    let lines: Vec<&[u8]> = original.split(|c| *c == b'\n').collect();
                    let line = lines[next(lines.len())].to_vec();
                    b.extend_from_slice(&line);
                    b.push(b'\n');
                }
                _ => {
                    let at = next(b.len());
                    b.drain(at..(at + next(40)).min(b.len()));
                }
            }
        }
        std::fs::write(&target, &b).unwrap();
        match load(&target, &npc_dictionary(), ImageCheck::ExistenceOnly) {
            Ok(c) => {
                loaded += 1;
                let ids: std::collections::BTreeSet<&str> = c.records.iter().map(|r| r.patient_id.as_str()).collect();
                assert_eq!(ids.len(), c.records.len(), "loaded patient ids are unique");
                assert_eq!(c.records.len(), c.images.len());
            }
            Err(e) => {
                errors += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(loaded > 100 && errors > 100, "both outcomes exercised: {loaded} loaded, {errors} errors");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A hospital that exports DICOM series with RT structure sets (its tumour ROI named `GTVnx`
/// beside another structure): its rows load by the manifest's ROI names, `check` reports what it
/// found, a missing or wrong ROI name excludes the row naming what to fix, and the features
/// equal those of the same patients exported as NIfTI.
#[test]
fn a_dicom_hospital_loads_by_roi_name_and_gives_its_nifti_twins_features() {
    let dir = common::fresh_dir("manifest-dicom");
    let make = |sub: &str, dicom: bool| {
        let mut spec = fedrad_synth::default_cohort(21, 40);
        spec.coarsen = 3.0;
        spec.hospitals.truncate(1);
        if dicom {
            spec = spec.with_dicom_export("hospital-a");
        }
        fedrad_synth::generate(&spec, &dir.join(sub), &|| {}).unwrap()
    };
    let (nii, dcm) = (make("nifti", false), make("dicom", true));
    let manifest = &dcm.manifests[0].1;
    let cohort = load(manifest, &npc_dictionary(), ImageCheck::Full).unwrap();
    assert!(cohort.excluded.is_empty(), "{:?}", cohort.excluded);
    assert_eq!(cohort.found.len(), cohort.records.len());
    let (_, first) = &cohort.found[0];
    assert!(first.contains("DICOM series") && first.contains("\"GTVnx\""), "{first}");

    // The same patient from both exports: the same features (values are int16 in both; the
    // geometry passes through DICOM's decimal strings).
    let s = fedrad_radiomics::settings::Settings::study_default();
    let base_n = nii.manifests[0].1.parent().unwrap();
    let pid = &cohort.records[0].patient_id;
    let from_nifti =
        fedrad_radiomics::extract::extract_files(&base_n.join(format!("images/{pid}_t2.nii.gz")), &base_n.join(format!("images/{pid}_t2_mask.nii.gz")), None, &s)
            .unwrap();
    let pair = cohort.images[0].sequence("t2");
    let from_dicom = fedrad_radiomics::extract::extract_files(&pair.image, &pair.mask, pair.roi.as_deref(), &s).unwrap();
    assert_eq!(from_nifti.len(), from_dicom.len());
    let worst = from_nifti.iter().zip(&from_dicom).map(|(a, b)| (a.value - b.value).abs() / a.value.abs().max(1e-6)).fold(0.0, f64::max);
    println!("{} features, largest relative difference NIfTI vs DICOM {worst:.1e}", from_nifti.len());
    assert!(worst < 1e-5, "{worst}");

    // A row without its ROI name, and one with another hospital's name for the tumour.
    let header: Vec<String> = csv::Reader::from_path(manifest).unwrap().headers().unwrap().iter().map(str::to_string).collect();
    let roi = header.iter().position(|c| c == "t2_roi").unwrap();
    let rows = rewrite(manifest, |i, row| match i {
        0 => row[roi] = String::new(),
        1 => row[roi] = "GTV_P".into(),
        _ => {}
    });
    let mut w = csv::Writer::from_path(manifest).unwrap();
    for r in &rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    let cohort = load(manifest, &npc_dictionary(), ImageCheck::Full).unwrap();
    let by_line: BTreeMap<usize, &str> = cohort.excluded.iter().map(|e| (e.line, e.detail.as_str())).collect();
    assert_eq!(by_line.len(), 2, "{by_line:?}");
    assert!(by_line[&2].contains("t2_roi"), "{}", by_line[&2]);
    assert!(by_line[&3].contains("GTV_P") && by_line[&3].contains("GTVnx") && by_line[&3].contains("Brainstem"), "{}", by_line[&3]);
    assert!(cohort.excluded.iter().all(|e| e.reason == ExclusionReason::UnreadableVolume));
}

/// A hospital's own clinical export (its column names, `M`/`F`, `WHO III`, `yes`/`no`, EBV DNA
/// per µL, `unknown` for missing, an extra column): through the site's `[export]` mapping it
/// loads to exactly the records of the study-coded manifest; without it nothing loads; a code
/// the mapping lacks excludes that row, naming the value and the table to extend.
#[test]
fn a_hospitals_own_export_loads_through_the_sites_mapping() {
    use site_agent::export_mapping::ExportMapping;
    use site_agent::manifest::{column_summaries, load_mapped};
    let dir = common::fresh_dir("manifest-export");
    let cohort = common::one_hospital(&dir, 33, 60);
    let manifest = &cohort.manifests[0].1;
    let reference = load(manifest, &npc_dictionary(), ImageCheck::ExistenceOnly).unwrap();
    assert!(reference.excluded.is_empty());

    let header: Vec<String> = csv::Reader::from_path(manifest).unwrap().headers().unwrap().iter().map(str::to_string).collect();
    let at = |name: &str| header.iter().position(|c| c == name).unwrap();
    let mut rows = rewrite(manifest, |_, row| {
        row[at("sex")] = if row[at("sex")] == "male" { "M" } else { "F" }.into();
        row[at("histology")] = row[at("histology")].replace('-', " ");
        row[at("recurrence")] = if row[at("recurrence")] == "1" { "yes" } else { "no" }.into();
        row[at("ebv_dna")] = format!("{}", row[at("ebv_dna")].parse::<f64>().unwrap() / 1000.0);
        row.push("Jane Doe".into());
    });
    for (c, name) in [("patient_id", "MRN"), ("sex", "gender"), ("recurrence", "relapse_2y")] {
        rows[0][at(c)] = name.into();
    }
    rows[0].push("name".into());
    let export = manifest.with_file_name("export.csv");
    let write = |rows: &[Vec<String>]| {
        let mut w = csv::Writer::from_path(&export).unwrap();
        rows.iter().for_each(|r| w.write_record(r).unwrap());
        w.flush().unwrap();
    };
    write(&rows);
    assert!(load(&export, &npc_dictionary(), ImageCheck::ExistenceOnly).is_err(), "the export's names are not the study's");

    let mapping: ExportMapping = toml::from_str(
        r#"
        missing = ["", "NA", "unknown"]
        ignore = ["name"]
        [columns]
        patient_id = "MRN"
        sex = "gender"
        recurrence = "relapse_2y"
        [codes.sex]
        M = "male"
        F = "female"
        [codes.histology]
        "WHO I" = "WHO-I"
        "WHO II" = "WHO-II"
        "WHO III" = "WHO-III"
        [codes.recurrence]
        yes = "1"
        no = "0"
        [scale]
        ebv_dna = 1000.0
        "#,
    )
    .unwrap();
    let mapped = load_mapped(&export, &npc_dictionary(), &mapping, ImageCheck::ExistenceOnly).unwrap();
    assert!(mapped.excluded.is_empty(), "{:?}", mapped.excluded);
    assert_eq!(mapped.records.len(), reference.records.len());
    for (a, b) in mapped.records.iter().zip(&reference.records) {
        assert_eq!((&a.patient_id, a.outcome), (&b.patient_id, b.outcome));
        for (name, value) in &b.clinical {
            match (value, &a.clinical[name]) {
                (fedrad_shared::clinical::ClinicalValue::Number(x), fedrad_shared::clinical::ClinicalValue::Number(y)) => {
                    assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{name}")
                }
                (x, y) => assert_eq!(x, y, "{name}"),
            }
        }
    }

    // An unmapped code and a missing marker.
    rows[1][at("sex")] = "X".into();
    rows[2][at("age")] = "unknown".into();
    write(&rows);
    let mapped = load_mapped(&export, &npc_dictionary(), &mapping, ImageCheck::ExistenceOnly).unwrap();
    let by_line: BTreeMap<usize, (ExclusionReason, &str)> = mapped.excluded.iter().map(|e| (e.line, (e.reason, e.detail.as_str()))).collect();
    assert_eq!(by_line[&2].0, ExclusionReason::UnparsableValue);
    assert!(by_line[&2].1.contains("\"X\"") && by_line[&2].1.contains("[export.codes.sex]"), "{}", by_line[&2].1);
    assert_eq!(by_line[&3].0, ExclusionReason::MissingValue);
    let summaries = column_summaries(&export, &npc_dictionary(), &mapping).unwrap();
    let sex = summaries.iter().find(|s| s.study_column == "sex").unwrap();
    assert_eq!(sex.unreadable.get("X"), Some(&1));
    assert_eq!(summaries.iter().find(|s| s.study_column == "age").unwrap().missing, 1);
    println!("{}", summaries.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("\n"));
}

#[test]
fn check_reports_other_mask_labels_a_tumour_at_the_edge_and_anisotropic_voxels_without_excluding() {
    use site_agent::manifest::FindingKind;
    let dir = common::fresh_dir("findings");
    let cohort = common::one_hospital(&dir, 21, 30);
    let manifest = &cohort.manifests[0].1;
    let base = manifest.parent().unwrap();
    let col = |name: &str| fedrad_synth::MANIFEST_COLUMNS.iter().position(|c| *c == name).unwrap();
    let rows = rewrite(manifest, |_, _| {});
    let path_of = |row: usize, c: &str| base.join(&rows[row + 1][col(c)]);
    let before = load(manifest, &npc_dictionary(), ImageCheck::Full).unwrap();
    let baseline: Vec<_> = before.findings.iter().map(|f| (f.line, f.sequence, f.kind)).collect();
    assert!(!baseline.iter().any(|f| f.2 == FindingKind::OtherMaskLabels), "{baseline:?}");

    // Row 0: a necrotic core labelled 2 inside the T2 tumour (every fourth tumour voxel).
    let m = nifti::read(&path_of(0, "t2_mask")).unwrap();
    let relabelled: Vec<f32> = m.data.iter().enumerate().map(|(i, &v)| if v >= 0.5 && i % 4 == 0 { 2.0 } else { v }).collect();
    nifti::write(&path_of(0, "t2_mask"), &Volume::new(m.geometry.clone(), relabelled), StoredType::U8).unwrap();
    // Row 1: the T1 tumour reaches the first slice.
    let m = nifti::read(&path_of(1, "t1c_mask")).unwrap();
    let mut data = m.data.clone();
    data[0] = 1.0;
    nifti::write(&path_of(1, "t1c_mask"), &Volume::new(m.geometry.clone(), data), StoredType::U8).unwrap();
    // Row 2: T2 slices 8× thicker than its pixels (image and mask alike).
    for c in ["t2_image", "t2_mask"] {
        let v = nifti::read(&path_of(2, c)).unwrap();
        let mut g = v.geometry.clone();
        g.spacing = [0.5, 0.5, 4.0];
        let stored = if c.ends_with("mask") { StoredType::U8 } else { StoredType::F32 };
        nifti::write(&path_of(2, c), &Volume::new(g, v.data.clone()), stored).unwrap();
    }

    let after = load(manifest, &npc_dictionary(), ImageCheck::Full).unwrap();
    assert_eq!(after.records.len(), before.records.len(), "findings never exclude a row");
    let find = |line: usize, seq: &str, kind: FindingKind| after.findings.iter().find(|f| (f.line, f.sequence, f.kind) == (line, seq, kind));
    for (line, seq, kind) in [(3, "t1c", FindingKind::RegionAtImageEdge), (4, "t2", FindingKind::AnisotropicVoxels)] {
        assert!(!baseline.contains(&(line, seq, kind)), "the synthetic row already had {kind:?}");
    }
    let labels = find(2, "t2", FindingKind::OtherMaskLabels).expect("other labels on line 2");
    assert!(labels.detail.contains("labels 1 (") && labels.detail.contains(", 2 (") && labels.detail.contains("only label 1 is analysed"), "{}", labels.detail);
    let others: Vec<_> = after.findings.iter().filter(|f| f.kind == FindingKind::OtherMaskLabels).map(|f| f.line).collect();
    assert_eq!(others, [2]);
    let edge = find(3, "t1c", FindingKind::RegionAtImageEdge).expect("edge on line 3");
    assert!(edge.detail.contains("first voxel along k (slices)"), "{}", edge.detail);
    let thick = find(4, "t2", FindingKind::AnisotropicVoxels).expect("anisotropy on line 4");
    assert!(thick.detail.contains("8.0×"), "{}", thick.detail);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_duplicated_patient_id_names_every_line_it_is_on_and_keeps_none() {
    let dir = common::fresh_dir("dups");
    let cohort = common::one_hospital(&dir, 22, 30);
    let manifest = &cohort.manifests[0].1;
    let col = |name: &str| fedrad_synth::MANIFEST_COLUMNS.iter().position(|c| *c == name).unwrap();
    let rows = rewrite(manifest, |i, row| {
        if i == 1 || i == 4 {
            row[col("patient_id")] = "A-TWICE".into();
        }
    });
    let mut w = csv::Writer::from_path(manifest).unwrap();
    for r in &rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    let loaded = load(manifest, &npc_dictionary(), ImageCheck::ExistenceOnly).unwrap();
    let dups: Vec<_> = loaded.excluded.iter().filter(|e| e.reason == ExclusionReason::DuplicateId).collect();
    assert_eq!(dups.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 6]);
    assert!(dups.iter().all(|e| e.detail.contains("lines 3, 6") && e.detail.contains("none of them is kept")), "{dups:?}");
    assert!(!loaded.records.iter().any(|r| r.patient_id == "A-TWICE"));
    let _ = std::fs::remove_dir_all(&dir);
}
