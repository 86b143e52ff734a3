//! The example configs in deploy/ are what the README tells people to copy: they must parse.

use std::path::Path;

#[test]
fn deploy_examples_parse_with_the_real_loaders() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let site = site_agent::config::SiteConfig::load(&root.join("site.example.toml")).unwrap();
    assert_eq!(site.site_id, "hospital-a");
    assert_eq!(site.policy.min_count, 5);
    assert_eq!((site.policy.max_concurrent_tasks, site.policy.max_study_disk_bytes), (2, 2 << 30));
    assert_eq!(site.server_name(), "coordinator.example.org");
    coordinator::config::CoordinatorConfig::load(&root.join("coordinator.example.toml")).unwrap();
    let study = coordinator::config::StudyConfig::load(&root.join("study.example.toml")).unwrap();
    assert_eq!(study.table1_variables().unwrap().len(), 7);
    // The example spells out the NPC dictionary: the same plan as a study file without it.
    assert_eq!(study.variables, fedrad_shared::clinical::npc_dictionary());
    let mut implicit = study.clone();
    implicit.variables.clear();
    assert_eq!(implicit.plan().unwrap().sha256(), study.plan().unwrap().sha256());
    assert_eq!(study.selection.lasso.folds, 10);
    assert_eq!(study.selection.lasso.family, fedrad_shared::algorithms::glm::GlmFamily::Binomial);
    assert_eq!(study.clinical_model.entry_p, 0.05);
}

#[test]
fn study_selection_mistakes_are_named() {
    let dir = std::env::temp_dir().join(format!("fedrad-study-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("study.toml");
    let base = "study_id = \"s\"\noutput_dir = \"out\"\nseed = 1\nsites = [\"hospital-a\"]\n";
    // The documented spelling of λ_1se is accepted.
    std::fs::write(&p, format!("{base}[selection]\nselect_at = \"lambda_1se\"\n")).unwrap();
    let s = coordinator::config::StudyConfig::load(&p).unwrap();
    assert_eq!(s.selection.select_at, coordinator::config::SelectAt::Lambda1se);
    for (extra, needle) in [
        ("[selection.lasso]\nfolds = 1\n", "folds"),
        ("[selection.lasso]\nmixing = 0\n", "mixing"),
        ("[selection.lasso]\nlambda = 3\n", "unknown field"),
        ("[selection]\nsequences = [\"flair\"]\n", "flair"),
        ("[selection]\nunivariate = { test = \"anova\" }\n", "anova"),
        ("[models]\nclassifiers = [\"knn\"]\n", "knn"),
        ("[[variables]]\nname = \"sex\"\nkind = \"categorical\"\nlevels = [\"m\"]\n", "two or more distinct"),
        ("[[variables]]\nname = \"age\"\nkind = \"continuous\"\nresolution = 0\n", "resolution must be positive"),
        ("[[variables]]\nname = \"patient_id\"\nkind = \"continuous\"\nresolution = 1\n", "fixed manifest column"),
        ("[[variables]]\nname = \"age\"\nkind = \"continuous\"\nresolution = 1\n[table1]\nvariables = [\"sex\"]\n", "unknown variable `sex`"),
        ("[models]\nsearch = { enabled = true, c = [] }\n", "models.search.c"),
        ("[models]\nforest = { trees = 0 }\n", "forest.trees"),
        ("[models]\nboosting = { learning_rate = 2.0 }\n", "boosting.learning_rate"),
        ("[models]\nlogistic = { c = -1 }\n", "models.logistic.c"),
        ("[models]\nrbf_svm = { features = 0 }\n", "models.rbf_svm"),
        ("[deep]\ncrop = 30\n", "deep.crop"),
        ("[deep]\nlearning_rate = 0\n", "deep.learning_rate"),
        ("[deep]\nrounds = 0\n", "deep.rounds"),
        ("[deep]\nlayers = 3\n", "unknown field"),
    ] {
        std::fs::write(&p, format!("{base}{extra}")).unwrap();
        let err = coordinator::config::StudyConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_mistakes_are_errors_that_name_the_problem() {
    let dir = std::env::temp_dir().join(format!("fedrad-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("site.toml");
    let base = "site_id = \"hospital-a\"\nmanifest = \"m.csv\"\nwork_dir = \"w\"\n";
    for (extra, needle) in [
        ("coordinator = \"http://x:1\"\n", "insecure_plaintext"),
        ("coordinator = \"https://x:1\"\n", "[tls]"),
        ("coordinator = \"https://x:1\"\nmin_count = 3\n", "unknown field"),
        ("coordinator = \"https://x:1\"\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n[policy]\nmin_count = 0\n", "min_count"),
    ] {
        std::fs::write(&p, format!("{base}{extra}")).unwrap();
        let err = site_agent::config::SiteConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    let s = dir.join("study.toml");
    std::fs::write(&s, "study_id = \"x\"\noutput_dir = \"o\"\nseed = 1\nsites = [\"a\"]\n[split]\ntraining_fraction = 1.5\n").unwrap();
    assert!(coordinator::config::StudyConfig::load(&s).unwrap_err().to_string().contains("training_fraction"));
    std::fs::write(&s, "study_id = \"x\"\noutput_dir = \"o\"\nseed = 1\nsites = [\"a\"]\n[table1]\nvariables = [\"shoe_size\"]\n").unwrap();
    assert!(coordinator::config::StudyConfig::load(&s).unwrap_err().to_string().contains("shoe_size"));
    let _ = std::fs::remove_dir_all(&dir);
}
