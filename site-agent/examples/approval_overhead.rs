//! What reading a study's approval costs per task, read afresh (`approval::load`: read, parse,
//! hash the plan) and through the agent's cache (`ApprovalCache`: one `stat` while the file is
//! unchanged). Each task reads it twice (keeping the task's bytes, then the approval gate).
//!
//! `cargo run --release -p site-agent --example approval_overhead -- WORK_DIR STUDY_ID`
//! (e.g. a demo site's `sites/hospital-a/work` and the demo's study id).

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, work, study] = args.as_slice() else {
        eprintln!("usage: approval_overhead WORK_DIR STUDY_ID");
        std::process::exit(2);
    };
    let work = std::path::Path::new(work);
    let n = 2_000;
    let start = Instant::now();
    for _ in 0..n {
        site_agent::approval::load(work, study).expect("an approved study");
    }
    let fresh = start.elapsed().as_secs_f64() / n as f64;
    let cache = site_agent::approval::ApprovalCache::default();
    let start = Instant::now();
    for _ in 0..n {
        cache.load(work, study).expect("an approved study");
    }
    let cached = start.elapsed().as_secs_f64() / n as f64;
    println!("approval read afresh: {:.1} µs; through the cache: {:.1} µs ({n} reads each)", fresh * 1e6, cached * 1e6);
}
