//! Per-patient inference time of a study-supplied ONNX network with FedRad's runtime (tract),
//! on one thread and over all cores (`scripts/bench_onnx.py` makes a ResNet-18-shaped file):
//!
//! `cargo run --release -p site-agent --example onnx_bench -- /tmp/bench-onnx/resnet18.onnx`
use site_agent::onnx::{InputRecipe, Intensity, Network};

fn main() {
    let path = std::env::args().nth(1).expect("an .onnx file");
    let bytes = std::fs::read(&path).unwrap();
    let recipe = InputRecipe { size: 224, channels: 3, field_mm: 64.0, intensity: Intensity::Imagenet };
    let t = std::time::Instant::now();
    let net = Network::from_bytes(&bytes, &recipe).unwrap();
    println!("{path}: loaded and optimised in {:.2} s", t.elapsed().as_secs_f64());
    let input: Vec<f32> = (0..3 * 224 * 224).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    net.run(&input).unwrap();
    let runs = 10;
    let t = std::time::Instant::now();
    for _ in 0..runs {
        net.run(&input).unwrap();
    }
    println!("tract, one thread: {:.0} ms per patient", t.elapsed().as_secs_f64() / runs as f64 * 1e3);
    let batch: Vec<Vec<f32>> = (0..2 * rayon::current_num_threads()).map(|_| input.clone()).collect();
    let t = std::time::Instant::now();
    let out = net.run_all(&batch);
    assert!(out.iter().all(|o| o.as_ref().is_ok_and(|v| v.len() == 1000)));
    println!("tract, {} threads: {:.0} ms per patient", rayon::current_num_threads(), t.elapsed().as_secs_f64() / batch.len() as f64 * 1e3);
}
