//! Study-supplied ONNX networks: FedRad's inference (tract) against onnxruntime's outputs on
//! fixed inputs (made by `scripts/make_onnx_fixtures.py`), the SHA-256 check that refuses a
//! tampered file, and the site task that stores a network's outputs as deep features.

use fedrad_shared::proto::{self, RefusalReason, task, task_reply};
use site_agent::onnx::{InputRecipe, Intensity, Network, NetworkError};

mod common;

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

#[test]
fn onnx_networks_give_onnxruntimes_outputs() {
    for (name, channels, size) in [("tiny_cnn_3ch", 3, 32), ("tiny_cnn_1ch", 1, 16)] {
        let bytes = std::fs::read(fixtures().join(format!("{name}.onnx"))).unwrap();
        let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join(format!("{name}.expected.json"))).unwrap()).unwrap();
        let recipe = InputRecipe { size, channels, field_mm: 64.0, intensity: Intensity::Zscore };
        let net = Network::from_bytes(&bytes, &recipe).unwrap();
        let inputs = expected["inputs"].as_array().unwrap();
        let outputs = expected["outputs"].as_array().unwrap();
        assert!(!inputs.is_empty());
        for (x, y) in inputs.iter().zip(outputs) {
            let x: Vec<f32> = x.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            let y: Vec<f64> = y.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let got = net.run(&x).unwrap();
            assert_eq!(got.len(), y.len(), "{name}");
            for (a, b) in got.iter().zip(&y) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{name}: {a} vs onnxruntime {b}");
            }
        }
    }
}

#[test]
fn onnx_a_tampered_or_misnamed_network_is_refused() {
    let dir = common::fresh_dir("onnx-tamper");
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(fixtures().join("tiny_cnn_3ch.onnx")).unwrap();
    let sha = site_agent::audit::sha256_hex(&bytes);
    std::fs::write(dir.join("net.onnx"), &bytes).unwrap();
    let recipe = InputRecipe { size: 32, channels: 3, field_mm: 64.0, intensity: Intensity::Imagenet };
    assert!(Network::load(&dir, "net.onnx", &sha, &recipe).is_ok());
    let mut tampered = bytes.clone();
    let k = tampered.len() - 10;
    tampered[k] ^= 0x01;
    std::fs::write(dir.join("net.onnx"), &tampered).unwrap();
    let err = Network::load(&dir, "net.onnx", &sha, &recipe).err().expect("a tampered file is refused");
    assert!(matches!(err, NetworkError::HashMismatch { .. }), "{err}");
    assert!(err.to_string().contains("tampered"), "{err}");
    assert!(matches!(Network::load(&dir, "../net.onnx", &sha, &recipe), Err(NetworkError::BadName(_))));
    assert!(matches!(Network::load(&dir, "absent.onnx", &sha, &recipe), Err(NetworkError::Unreadable { .. })));
    // A valid hash of a file that is not a network: a load error, not a panic.
    std::fs::write(dir.join("junk.onnx"), b"not a network").unwrap();
    let junk_sha = site_agent::audit::sha256_hex(b"not a network");
    assert!(matches!(Network::load(&dir, "junk.onnx", &junk_sha, &recipe), Err(NetworkError::Load { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn onnx_embed_task_stores_the_networks_outputs_as_deep_features() {
    let dir = common::fresh_dir("onnx-embed");
    let cohort = common::one_hospital(&dir.join("cohort"), 5, 30);
    let cfg = common::local_config(&cohort.manifests[0].1, &dir);
    let networks = cfg.networks_dir();
    std::fs::create_dir_all(&networks).unwrap();
    let bytes = std::fs::read(fixtures().join("tiny_cnn_3ch.onnx")).unwrap();
    let sha = site_agent::audit::sha256_hex(&bytes);
    // A tampered file under the approved name first.
    let mut tampered = bytes.clone();
    tampered[10] ^= 1;
    std::fs::write(networks.join("tiny.onnx"), &tampered).unwrap();
    let plan = common::approve(&cfg, "onnx", |s| {
        s.deep.source = fedrad_shared::plan::DeepSource::Onnx;
        s.deep.onnx = Some(fedrad_shared::plan::OnnxNetwork {
            file: "tiny.onnx".into(),
            sha256: sha.clone(),
            input_size: 32,
            channels: 3,
            field_mm: 64.0,
            intensity: "imagenet".into(),
        });
    });
    let engine = site_agent::load_engine(cfg).unwrap();
    let handle = |id: &str, sha: &str| {
        let kind = task::Kind::OnnxEmbed(proto::OnnxEmbedTask {
            sequence: "t2".into(),
            file_name: "tiny.onnx".into(),
            sha256: sha.into(),
            input_size: 32,
            channels: 3,
            field_mm: 64.0,
            intensity: "imagenet".into(),
        });
        engine.handle(&common::task(&plan, id, Some(kind)))
    };
    let refused = |id: &str, sha: &str| match handle(id, sha).outcome {
        Some(task_reply::Outcome::Refusal(r)) => {
            assert_eq!(RefusalReason::try_from(r.reason).unwrap(), RefusalReason::InvalidParameters);
            r.detail
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    // Another network than the plan's: refused by the plan.
    assert!(refused("other", &"0".repeat(64)).contains("study plan"));
    // The plan's network, but the file on disk does not hash to it: refused, named, nothing written.
    let detail = refused("wrong", &sha);
    assert!(detail.contains("SHA-256") && detail.contains("tiny.onnx"), "{detail}");
    std::fs::write(networks.join("tiny.onnx"), &bytes).unwrap();
    let table_path = dir.join("work/studies/onnx/features/t2.deep.csv");
    assert!(!table_path.exists());
    let agg = match handle("right", &sha).outcome {
        Some(task_reply::Outcome::Aggregate(a)) => a,
        other => panic!("expected an aggregate, got {other:?}"),
    };
    let value = |name: &str| agg.tensors.iter().find(|t| t.name == name).unwrap().values.clone();
    assert_eq!(value("embedded"), vec![engine.cohort.records.len() as f64]);
    assert_eq!(value("dimension"), vec![10.0]);
    // Each stored row is the network applied to that patient's crop.
    let recipe = InputRecipe { size: 32, channels: 3, field_mm: 64.0, intensity: Intensity::Imagenet };
    let net = Network::from_bytes(&bytes, &recipe).unwrap();
    let table = std::fs::read_to_string(&table_path).unwrap();
    assert_eq!(table.lines().next().unwrap(), "patient_id,deep_0000,deep_0001,deep_0002,deep_0003,deep_0004,deep_0005,deep_0006,deep_0007,deep_0008,deep_0009");
    let folder = cohort.manifests[0].1.parent().unwrap();
    for line in table.lines().skip(1).take(3) {
        let mut cells = line.split(',');
        let id = cells.next().unwrap();
        let stored: Vec<f64> = cells.map(|c| c.parse().unwrap()).collect();
        let crop = site_agent::deep::crop_files(
            &site_agent::manifest::ImagePair {
                image: folder.join(format!("images/{id}_t2.nii.gz")),
                mask: folder.join(format!("images/{id}_t2_mask.nii.gz")),
                roi: None,
            },
            &recipe.crop_architecture(),
        )
        .unwrap();
        assert_eq!(stored, net.run(&recipe.input(&crop)).unwrap(), "{id}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
