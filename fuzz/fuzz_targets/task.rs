//! Protocol decoding and task handling at a site: arbitrary bytes decoded as a coordinator
//! message and as a task; every task that decodes is handled by a site engine over a small
//! synthetic cohort, which must answer, refuse or fail — never panic.
#![no_main]
use std::sync::OnceLock;

use fedrad_shared::proto::{CoordinatorMessage, Task};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn engine() -> &'static site_agent::engine::SiteEngine {
    static ENGINE: OnceLock<std::sync::Arc<site_agent::engine::SiteEngine>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fedrad-fuzz-task-{}", std::process::id()));
        let mut spec = fedrad_synth::default_cohort(3, 40);
        spec.coarsen = 3.0;
        spec.hospitals.truncate(1);
        let cohort = fedrad_synth::generate(&spec, &dir.join("cohort"), &|| {}).expect("cohort");
        let cfg = site_agent::config::SiteConfig {
            site_id: "hospital-a".into(),
            coordinator: "http://localhost:1".into(),
            coordinator_name: None,
            manifest: cohort.manifests[0].1.clone(),
            work_dir: dir.join("work"),
            tls: None,
            insecure_plaintext: true,
            policy: Default::default(),
            clinical: Default::default(),
            max_message_bytes: 1 << 20,
            networks_dir: None,
        };
        site_agent::load_engine(cfg).expect("engine")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = CoordinatorMessage::decode(data);
    if let Ok(task) = Task::decode(data) {
        let reply = engine().handle(&task);
        assert_eq!(reply.task_id, task.task_id);
    }
});
