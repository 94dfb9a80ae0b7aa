//! The control plane's request budget, checked on every run without depending on timing: ten minimal VMIs are
//! created on one box server and brought to Running, and the API requests served meanwhile (`apiserver_request_total`
//! at `/metrics`: controllers, scheduler, handler, pod runtime and this test's own create and wait) divided by the
//! VMIs must stay within [`BUDGET`]. Today's figure is ~11 per VMI (`scripts/bench-density`, 100 VMIs); a regression
//! such as a loop that re-lists or re-writes on every event shows up here as a multiple of it. The control plane's
//! CPU time per VMI is printed as information only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/node.rs"]
mod node;

use node::NodeBox;

/// Most API requests one VMI may cost from create to Running (12.6-12.9 measured with ten, where the test's own
/// kubectl discovery and wait weigh more than among the benchmark's hundred; some room).
const BUDGET: f64 = 15.0;
const VMIS: usize = 10;

/// Requests served so far, per `apiserver_request_total` series (verb, resource, code).
fn requests(b: &NodeBox) -> std::collections::BTreeMap<String, f64> {
    b.kubectl(&["get", "--raw", "/metrics"])
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse::<f64>().ok()?))
        })
        .collect()
}

/// The server process's CPU time (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn minimal_vmis() -> String {
    let items: Vec<serde_json::Value> = (0..VMIS)
        .map(|i| {
            serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                "metadata": {"name": format!("budget-{i}"), "labels": {"budget": "run"}},
                "spec": {"domain": {"devices": {}, "memory": {"guest": "32Mi"},
                    "resources": {"requests": {"cpu": "10m"}}}}})
        })
        .collect();
    items
        .iter()
        .map(|v| serde_norway::to_string(v).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn api_requests_per_vmi_stay_within_budget() {
    let b = NodeBox::start(35, &[]);
    let pid = b.child.as_ref().unwrap().id();
    // Settled: the node registered and the server's own start-up writes done.
    node::eventually("the node is Ready", 60, || {
        b.get("node box0", "{.status.conditions[?(@.type=='Ready')].status}") == "True"
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (before, cpu_before) = (requests(&b), cpu_ticks(pid));
    b.kubectl_in(&["create", "-f", "-"], Some(&minimal_vmis()));
    b.kubectl(&[
        "wait",
        "vmi",
        "-l",
        "budget=run",
        "--for=jsonpath={.status.phase}=Running",
        "--timeout=240s",
    ]);
    let (after, cpu_after) = (requests(&b), cpu_ticks(pid));
    let mut deltas: Vec<(f64, &String)> = after
        .iter()
        .map(|(k, v)| (v - before.get(k).copied().unwrap_or(0.0), k))
        .filter(|(d, _)| *d > 0.0)
        .collect();
    deltas.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total: f64 = deltas.iter().map(|(d, _)| d).sum();
    #[allow(clippy::cast_precision_loss)]
    let per_vmi = total / VMIS as f64;
    // Linux reports CPU time in USER_HZ ticks, 100 a second on every architecture this runs on.
    #[allow(clippy::cast_precision_loss)]
    let cpu_ms = (cpu_after - cpu_before) as f64 * 10.0 / VMIS as f64;
    let top = deltas
        .iter()
        .take(12)
        .map(|(d, k)| format!("  {d:>5} {k}"))
        .collect::<Vec<_>>()
        .join("\n");
    println!(
        "API requests per VMI: {per_vmi:.1} (budget {BUDGET}); control plane CPU per VMI: {cpu_ms:.0} ms\n{top}"
    );
    assert!(
        per_vmi <= BUDGET,
        "{per_vmi:.1} API requests per VMI exceed the budget of {BUDGET}: a loop is reading or writing more than it \
         did. The most frequent requests:\n{top}"
    );
    b.kubectl(&[
        "delete",
        "vmi",
        "-l",
        "budget=run",
        "--wait=true",
        "--timeout=120s",
    ]);
}
