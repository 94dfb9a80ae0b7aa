//! Randomised mutations of the upstream examples (a node replaced by a random value of another shape, or removed)
//! go through decoding, defaulting and validation: every outcome is a decode error, a refusal or an admission —
//! never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubevirt_api::admission::Cluster;
use kubevirt_api::object::Object;
use serde_json::{Value, json};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn random_value(r: &mut Rng) -> Value {
    match r.below(9) {
        0 => Value::Null,
        1 => json!(r.next().is_multiple_of(2)),
        2 => json!(-(r.below(1000) as i64)),
        3 => json!(r.next()),
        4 => json!(["", "ide", "-1Gi", "1e999", "Always", &"x".repeat(3000)][r.below(6)]),
        5 => json!([]),
        6 => json!({}),
        7 => json!([{"name": ""}, {"name": ""}]),
        _ => json!({"name": "root", "bootOrder": -1, "capacity": "lots"}),
    }
}

/// Every JSON pointer in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            pointers(
                x,
                format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                out,
            )
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| pointers(x, format!("{at}/{i}"), out)),
        _ => {}
    }
}

#[test]
fn mutated_examples_never_panic() {
    let mut r = Rng(0x2545_F491_4F6C_DD1D);
    let docs: Vec<Value> = testing::example_files()
        .iter()
        .flat_map(|p| testing::load_docs(p))
        .collect();
    let now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
        serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
    let mut outcomes = [0usize; 2];
    for round in 0..3000 {
        let mut doc = docs[round % docs.len()].clone();
        for _ in 0..1 + r.below(3) {
            let mut ptrs = Vec::new();
            pointers(&doc, String::new(), &mut ptrs);
            let p = ptrs[r.below(ptrs.len())].clone();
            if p.is_empty() || p == "/apiVersion" || p == "/kind" {
                continue;
            }
            if r.below(4) == 0 {
                let (parent, last) = p.rsplit_once('/').unwrap();
                if let Some(Value::Object(m)) = doc.pointer_mut(parent) {
                    m.remove(last);
                }
            } else if let Some(slot) = doc.pointer_mut(&p) {
                *slot = random_value(&mut r);
            }
        }
        match Object::from_value(doc) {
            Err(_) => outcomes[0] += 1,
            Ok(obj) => {
                let mut ids = || "00000000-0000-4000-8000-000000000001".to_string();
                let _ = Cluster::default().admit(obj, now.clone(), &mut ids);
                outcomes[1] += 1;
            }
        }
    }
    assert!(
        outcomes[0] > 100 && outcomes[1] > 100,
        "both paths exercised: {outcomes:?}"
    );
}
