//! Principle 1 as a test on the wire contract itself: walk every message a site can send
//! (everything reachable from `SiteMessage`) and check that none can carry a patient
//! identifier, free text beyond a fixed whitelist, or opaque bytes. Numbers reach the
//! coordinator only inside `Aggregate`, whose `patient_count` the site checks against its
//! policy before sending.

use std::collections::{BTreeMap, BTreeSet};

/// message name -> [(type, field name)]
fn parse(proto: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut stack: Vec<String> = Vec::new();
    for raw in proto.lines() {
        let line = raw.split("//").next().unwrap().trim();
        if let Some(rest) = line.strip_prefix("message ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            out.entry(name.clone()).or_default();
            stack.push(name);
        } else if line.starts_with("enum ") || line.starts_with("oneof ") || line.starts_with("service ") {
            stack.push(String::new());
        } else if line == "}" {
            stack.pop();
        } else if line.contains('=') && line.ends_with(';') {
            let Some(msg) = stack.iter().rev().find(|s| !s.is_empty()) else { continue };
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() >= 2 && words[1] == "=" {
                continue; // an enum value
            }
            let (ty, name) = if words[0] == "repeated" { (words[1], words[2]) } else { (words[0], words[1]) };
            out.get_mut(msg).unwrap().push((ty.to_string(), name.to_string()));
        }
    }
    out
}

fn reachable(messages: &BTreeMap<String, Vec<(String, String)>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_string()];
    while let Some(m) = todo.pop() {
        if !seen.insert(m.clone()) {
            continue;
        }
        for (ty, _) in &messages[&m] {
            if messages.contains_key(ty) {
                todo.push(ty.clone());
            }
        }
    }
    seen
}

/// Every way the contract lets a site send something other than aggregates.
fn violations(proto: &str) -> Vec<String> {
    let messages = parse(proto);
    assert!(messages.len() > 10, "parser found too few messages");
    let from_site = reachable(&messages, "SiteMessage");
    assert!(from_site.contains("Aggregate") && from_site.contains("Tensor"));
    // `audit_head` is the hash of the site's own audit entry (64 hex digits), nothing else.
    let allowed_strings: BTreeSet<&str> = ["protocol", "site_id", "agent_version", "task_id", "name", "detail", "audit_head"].into();
    // The secure-sum key in the hello: an X25519 public key and the site's signature over it,
    // derived from its certificate key, never from its data (`shared::secure_sum`).
    // And the site's ECDSA signature over its answer (a hash of the study, plan, task and the
    // aggregate, `shared::secure_sum::answer_message`), which every other site verifies when
    // the coordinator forwards the answer: bytes that are not that signature are refused there.
    let allowed_bytes: BTreeSet<&str> = ["MaskingKey.public_key", "MaskingKey.signature", "TaskReply.signature"].into();
    let forbidden = ["patient", "subject", "mrn", "label", "score", "row", "record", "image", "voxel"];
    let mut v = Vec::new();
    for m in &from_site {
        for (ty, name) in &messages[m] {
            if ty == "bytes" && !allowed_bytes.contains(format!("{m}.{name}").as_str()) {
                v.push(format!("{m}.{name}: opaque bytes could carry anything"));
            }
            if ty == "string" && !allowed_strings.contains(name.as_str()) {
                v.push(format!("{m}.{name}: a new free-text field in a site message"));
            }
            if name != "patient_count" && forbidden.iter().any(|f| name.contains(f)) {
                v.push(format!("{m}.{name}: field name suggests per-patient data"));
            }
        }
    }
    if !messages["Aggregate"].iter().any(|(_, n)| n == "patient_count") {
        v.push("Aggregate must state how many patients it summarises".into());
    }
    v
}

const CONTRACT: &str = include_str!("../../proto/fedrad/v1/fedrad.proto");

#[test]
fn nothing_a_site_sends_can_carry_a_patient_row_or_identifier() {
    let v = violations(CONTRACT);
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn the_check_catches_identifiers_free_text_and_blobs() {
    for (anchor, added) in [
        ("  RefusalReason reason = 1;", "  string patient_id = 7;"),
        ("  uint64 patient_count = 1;", "  repeated double scores = 8;"),
        ("  string detail = 1;", "  bytes payload = 5;"),
        ("  uint64 min_count = 1;", "  string comment = 2;"),
    ] {
        assert!(CONTRACT.contains(anchor), "anchor {anchor:?} moved");
        let doctored = CONTRACT.replacen(anchor, &format!("{anchor}\n{added}"), 1);
        assert!(!violations(&doctored).is_empty(), "adding {added:?} went unnoticed");
    }
}
