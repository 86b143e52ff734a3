//! Method research: trains the deep-feature encoder on one or more sites' crops in process
//! and prints the loss per round, to choose learning rates and rounds.
//!
//! `cargo run --release -p site-agent --example encoder_probe -- SEQ LR ROUNDS BATCH EPOCHS MANIFEST...`
use std::path::PathBuf;

use fedrad_shared::algorithms::encoder::Architecture;
use fedrad_shared::algorithms::fedavg::{self, LocalTraining, Sample};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seq = &args[1];
    let lr: f64 = args[2].parse().unwrap();
    let rounds: u32 = args[3].parse().unwrap();
    let batch: u32 = args[4].parse().unwrap();
    let epochs: u32 = args[5].parse().unwrap();
    let arch = Architecture::default();
    let mut sites = Vec::new();
    for manifest in &args[6..] {
        let dir = PathBuf::from(manifest).parent().unwrap().to_path_buf();
        let text = std::fs::read_to_string(manifest).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
        let (ci, cm) = (col(&format!("{seq}_image")), col(&format!("{seq}_mask")));
        let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
        let roi = header.iter().position(|h| *h == format!("{seq}_roi"));
        let pairs: Vec<site_agent::manifest::ImagePair> =
            rows.iter().map(|r| site_agent::manifest::ImagePair { image: dir.join(&r[ci]), mask: dir.join(&r[cm]), roi: roi.map(|c| r[c].clone()) }).collect();
        let t = std::time::Instant::now();
        let crops = site_agent::deep::crop_all(&pairs, &arch);
        eprintln!("{manifest}: {} crops in {:.2} s", crops.len(), t.elapsed().as_secs_f64());
        sites.push(rows.iter().zip(crops).filter_map(|(r, c)| Some(Sample { patient_id: r[0].clone(), crop: c.ok()? })).collect::<Vec<_>>());
    }
    let all: Vec<&Sample> = sites.iter().flatten().collect();
    let baseline: f64 = all
        .iter()
        .map(|s| {
            let t = fedrad_shared::algorithms::encoder::target_of(&arch, &s.crop);
            t.iter().map(|v| v * v).sum::<f64>() / t.len() as f64
        })
        .sum::<f64>()
        / all.len() as f64;
    println!("predicting zero: loss {baseline:.4}");
    let t = LocalTraining { epochs, batch_size: batch, learning_rate: lr, momentum: 0.9, proximal_mu: 0.0, mask_fraction: 0.25, seed: 1 };
    let start = std::time::Instant::now();
    let (w, history) = fedavg::simulate(&arch, &arch.initial_weights(1), &sites, &t, rounds);
    for h in &history {
        println!("round {}: loss at start {:.4}, training {:.4}", h.round, h.loss_at_start, h.mean_training_loss);
    }
    println!("{:.2} s per round", start.elapsed().as_secs_f64() / rounds.max(1) as f64);
    let e = fedrad_shared::algorithms::encoder::embed(&arch, &w, &sites[0][0].crop);
    let zero = e.iter().filter(|v| **v == 0.0).count();
    println!("embedding: {} of {} units zero for the first patient", zero, e.len());
}
