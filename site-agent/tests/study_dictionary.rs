//! A study that brings a clinical variable of its own (`smoking`): the hospital maps its
//! export column and codes, its operator approves the study, and from then on the agent types
//! the column by the study's data dictionary — no code, no `[[clinical.extra]]`.

use std::process::{Command, Output};

use fedrad_shared::aggregate::SiteAggregate;
use fedrad_shared::algorithms::table1;
use fedrad_shared::clinical::ClinicalValue;
use fedrad_shared::proto::{self, task, task_reply};
use site_agent::config::SiteConfig;
use site_agent::manifest::{ImageCheck, load_mapped};

mod common;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn a_variable_a_study_brings_is_typed_by_its_dictionary_once_approved() {
    let dir = common::fresh_dir("study-dictionary");
    let cohort = common::one_hospital(&dir, 41, 80);
    let manifest = cohort.manifests[0].1.clone();
    // The export holds smoking as `SMK`, coded 1/2/3; line 6 has a code nobody mapped.
    let original = std::fs::read_to_string(&manifest).unwrap();
    let mut export = String::new();
    for (i, line) in original.lines().enumerate() {
        let cell = match i {
            0 => "SMK".to_string(),
            5 => "9".to_string(),
            _ => (i % 3 + 1).to_string(),
        };
        export += &format!("{line},{cell}\n");
    }
    std::fs::write(&manifest, export).unwrap();
    let config = dir.join("site.toml");
    std::fs::write(
        &config,
        format!(
            "site_id = \"hospital-a\"\ncoordinator = \"http://localhost:1\"\ninsecure_plaintext = true\nmanifest = \"{}\"\nwork_dir = \"{}\"\n\n[export.columns]\nsmoking = \"SMK\"\n\n[export.codes.smoking]\n\"1\" = \"never\"\n\"2\" = \"former\"\n\"3\" = \"current\"\n",
            manifest.display(),
            dir.join("work").display()
        ),
    )
    .unwrap();
    let study = dir.join("study.toml");
    std::fs::write(
        &study,
        "study_id = \"smoking\"\noutput_dir = \"out\"\nseed = 1\nsites = [\"hospital-a\"]\n\n[[variables]]\nname = \"age\"\nlabel = \"Age (years)\"\nkind = \"continuous\"\nresolution = 1.0\nunit = \"years\"\n\n[[variables]]\nname = \"smoking\"\nlabel = \"Smoking\"\nkind = \"categorical\"\nlevels = [\"never\", \"former\", \"current\"]\n",
    )
    .unwrap();
    let agent = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_site-agent")).args(args).output().unwrap();
    let cfg_arg = config.to_str().unwrap();

    // Before any study needs it, `smoking` is no variable of this site: mapping it is an error.
    let before = agent(&["check", "--config", cfg_arg]);
    assert!(!before.status.success() && text(&before).contains("smoking"), "{}", text(&before));

    // Line 6's code is mapped to nothing: approving would take that patient from every study
    // at this site, so approval is refused until the export is fixed.
    let refused = agent(&["approve", "--config", cfg_arg, "--study", study.to_str().unwrap()]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("would exclude 1 row(s)") && text(&refused).contains("line 6") && text(&refused).contains("\"9\""), "{}", text(&refused));
    let fixed: String = std::fs::read_to_string(&manifest)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| if i == 5 { format!("{},2\n", l.strip_suffix(",9").unwrap()) } else { format!("{l}\n") })
        .collect();
    std::fs::write(&manifest, fixed).unwrap();

    // What approving would mean, recorded nowhere.
    let dry = agent(&["approve", "--config", cfg_arg, "--study", study.to_str().unwrap(), "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("the study brings smoking (levels never, former, current) from the export column `SMK`") && text(&dry).contains("nothing recorded"),
        "{}",
        text(&dry)
    );
    assert!(!agent(&["check", "--config", cfg_arg]).status.success(), "a dry run approved");

    let approved = agent(&["approve", "--config", cfg_arg, "--study", study.to_str().unwrap()]);
    assert!(approved.status.success(), "{}", text(&approved));
    assert!(text(&approved).contains("the study brings smoking"), "{}", text(&approved));

    // Now the site's table has it, typed by the study: levels counted.
    let after = agent(&["check", "--config", cfg_arg]);
    let out = text(&after);
    assert!(after.status.success(), "{out}");
    assert!(out.contains("smoking (export `SMK`):") && out.contains(" never ") && !out.contains("UNREADABLE"), "{out}");

    // A study cannot bring a column the site keeps out of studies, nor one holding the patient id.
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace("[export.columns]", "[export]\nignore = [\"DOB\"]\n\n[export.columns]")).unwrap();
    let with_dob: String =
        std::fs::read_to_string(&manifest).unwrap().lines().enumerate().map(|(i, l)| format!("{l},{}\n", if i == 0 { "DOB" } else { "1970-01-01" })).collect();
    std::fs::write(&manifest, with_dob).unwrap();
    for (id, variable) in [("dob", "DOB"), ("ids", "patient_id")] {
        let other = dir.join(format!("{id}.toml"));
        std::fs::write(
            &other,
            format!("study_id = \"{id}\"\noutput_dir = \"out\"\nseed = 1\nsites = [\"hospital-a\"]\n\n[[variables]]\nname = \"{variable}\"\nkind = \"categorical\"\nlevels = [\"A-0001\", \"A-0002\"]\n"),
        )
        .unwrap();
        let o = agent(&["approve", "--config", cfg_arg, "--study", other.to_str().unwrap()]);
        assert!(!o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("ignore") || text(&o).contains("fixed manifest column"), "{}", text(&o));
    }

    // A plan publishing every site's score histograms, at a site whose policy publishes none
    // (the default): not approved, so that no version of the study can be answered in sums
    // while the other sites publish theirs.
    let per_site = dir.join("per-site.toml");
    std::fs::write(&per_site, "study_id = \"per-site\"\noutput_dir = \"out\"\nseed = 1\nsites = [\"hospital-a\"]\n\n[validation]\nper_site_results = true\n").unwrap();
    let o = agent(&["approve", "--config", cfg_arg, "--study", per_site.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("policy.per_site_results"), "{}", text(&o));

    let cfg = SiteConfig::load(&config).unwrap();
    let schema = cfg.table_schema().unwrap();
    let smoking = schema.iter().find(|v| v.name == "smoking").expect("typed by the study").clone();
    let loaded = load_mapped(&cfg.manifest, &schema, &cfg.export, ImageCheck::ExistenceOnly).unwrap();
    for (i, r) in loaded.records.iter().enumerate() {
        assert!(matches!(r.clinical["smoking"], ClinicalValue::Level(l) if l < 3), "record {i}: {:?}", r.clinical);
    }

    // A Table 1 task of the study is answered over the new variable.
    let plan = fedrad_shared::plan::StudyConfig::load(&study).unwrap().plan().unwrap();
    let (n, pos) = (loaded.records.len() as u64, loaded.records.iter().filter(|r| r.outcome).count() as u64);
    let quota = |k: u64| (0.7 * k as f64).floor() as u64;
    let engine = site_agent::load_engine(cfg).unwrap();
    let split = engine.handle(&common::task(
        &plan,
        "split-1",
        Some(task::Kind::Split(proto::SplitTask { seed: 1, training_quota_negative: quota(n - pos), training_quota_positive: quota(pos) })),
    ));
    assert!(matches!(split.outcome, Some(task_reply::Outcome::Aggregate(_))), "{split:?}");
    let variables = plan.table1_variables().unwrap();
    assert_eq!(variables[1], smoking);
    let reply = engine.handle(&common::task(
        &plan,
        "table1-1",
        Some(task::Kind::Table1(proto::Table1Task { variables: variables.iter().map(common::variable_to_proto).collect(), per_site: false })),
    ));
    let Some(task_reply::Outcome::Aggregate(agg)) = reply.outcome else { panic!("Table 1 not answered: {reply:?}") };
    let table = table1::combine(&[SiteAggregate::new("hospital-a", agg)], &variables, false).unwrap();
    assert!(table.scopes[0].variables.iter().any(|v| v.name == "smoking" && v.label == "Smoking"), "{table:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
