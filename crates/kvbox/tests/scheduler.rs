//! The box scheduler inside `kvbox server`: a pending pod is bound to the Ready node it fits; a pod no node fits gets
//! PodScheduled=False with the reason; a node that appears later takes it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

fn kubectl(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new("kubectl");
    cmd.args(args)
        .env("KUBECONFIG", dir.join("kubeconfig.yaml"))
        .env("HOME", dir.join("home"));
    let out = if let Some(input) = stdin {
        use std::io::Write as _;
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    } else {
        cmd.output().unwrap()
    };
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const NODE: &str = r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "NAME", "labels": {"kubevirt.io/schedulable": "true"}},
 "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}}"#;

fn pod(name: &str, selector: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
 "spec": {{"nodeSelector": {selector}, "containers": [{{"name": "c", "image": "x", "resources": {{"requests": {{"cpu": "100m", "memory": "1Gi"}}}}}}]}}}}"#
    )
}

#[test]
fn pending_pods_are_bound_or_told_why_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut server = common::start_server(dir, "127.0.0.1:0");
    kubectl(dir, &["create", "-f", "-"], Some(&NODE.replace("NAME", "box1")));
    kubectl(
        dir,
        &["create", "-f", "-"],
        Some(&pod("fits", r#"{"kubevirt.io/schedulable": "true"}"#)),
    );
    kubectl(
        dir,
        &["create", "-f", "-"],
        Some(&pod("picky", r#"{"zone": "nowhere"}"#)),
    );
    eventually("binding", || {
        kubectl(
            dir,
            &["get", "pod", "fits", "-o", "jsonpath={.spec.nodeName}"],
            None,
        ) == "box1"
    });
    eventually("the unschedulable reason", || {
        kubectl(
            dir,
            &[
                "get",
                "pod",
                "picky",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="PodScheduled")].message}"#,
            ],
            None,
        ) == "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    });
    // A node that matches arrives: the pod is placed there.
    let zoned = NODE.replace("NAME", "box2").replace(
        r#""kubevirt.io/schedulable": "true""#,
        r#""kubevirt.io/schedulable": "true", "zone": "nowhere""#,
    );
    kubectl(dir, &["create", "-f", "-"], Some(&zoned));
    eventually("binding to the new node", || {
        kubectl(
            dir,
            &["get", "pod", "picky", "-o", "jsonpath={.spec.nodeName}"],
            None,
        ) == "box2"
    });
    let _ = server.kill();
    let _ = server.wait();
}
