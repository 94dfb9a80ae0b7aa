//! `kvbox admit` and `kvbox crds` driven as a user runs them: exit codes, messages, output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kvbox(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvbox"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.unwrap_or("").to_string();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn admits_every_upstream_example() {
    let dir = testing::shared_dir().join("fixtures/upstream-examples");
    let gates = repo().join("crates/api/tests/fixtures/kubevirt-gates.yaml");
    let mut args = vec!["admit".to_string(), "-f".into(), gates.display().to_string()];
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| (p.file_name().unwrap() == "migration-job.yaml", p.clone()));
    for f in &files {
        args.push("-f".into());
        args.push(f.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kvbox(&args, None);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let docs = text(&out.stdout).matches("\n---\n").count() + 1;
    assert_eq!(docs, 21, "20 examples + the KubeVirt CR");
    assert!(text(&out.stdout).contains("kubevirt.io/foregroundDeleteVirtualMachine"));
}

#[test]
fn violations_exit_1_with_kind_name_field_message() {
    let vmi = "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: bad}\nspec:\n  domain:\n    devices:\n      disks: [{name: root, disk: {bus: ide}}]\n  volumes: [{name: root, containerDisk: {image: cirros}}]\n";
    let out = kvbox(&["admit", "-f", "-"], Some(vmi));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "VirtualMachineInstance/bad: spec.domain.devices.disks[0].disk.bus: IDE bus is not supported"
        ),
        "{err}"
    );
    assert!(
        err.contains("VirtualMachineInstance/bad: no memory requested"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn wrong_field_types_name_the_path() {
    let vmi = "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: typed}\nspec:\n  domain:\n    devices:\n      disks: [{name: root, bootOrder: first}]\n";
    let out = kvbox(&["admit", "-f", "-"], Some(vmi));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("VirtualMachineInstance/typed: spec.domain.devices.disks[0].bootOrder: invalid type"),
        "{err}"
    );
}

#[test]
fn unparseable_input_exits_2_with_line_and_column() {
    let out = kvbox(&["admit", "-f", "-"], Some("apiVersion: v1\nkind: [unclosed\n"));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("line ") && err.contains("column "), "{err}");
    let out = kvbox(
        &["admit", "-f", "-"],
        Some("{\"apiVersion\": \"v1\",\n \"kind\": }"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("line 2 column"),
        "{}",
        text(&out.stderr)
    );
    let out = kvbox(&["admit", "-f", "/nonexistent/file.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/file.yaml"));
}

#[test]
fn other_groups_pass_through_and_json_output_is_a_list() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n";
    let out = kvbox(&["admit", "-o", "json", "-f", "-"], Some(cm));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(
        v["items"][0],
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}})
    );
}

#[test]
fn hostile_input_is_an_error_not_a_crash() {
    // 10,000 disks.
    let mut disks = String::new();
    for i in 0..10_000 {
        disks.push_str(&format!("      - name: d{i}\n"));
    }
    let vmi = format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: many}}\nspec:\n  domain:\n    memory: {{guest: 128Mi}}\n    devices:\n      disks:\n{disks}"
    );
    let out = kvbox(&["admit", "-f", "-"], Some(&vmi));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("spec.domain.devices.disks: Too many: 10000: must have at most 256 items"),
        "{}",
        &text(&out.stderr)[..500.min(out.stderr.len())]
    );
    // Deep nesting.
    let deep = format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: deep}}\nspec: {}{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let out = kvbox(&["admit", "-f", "-"], Some(&deep));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Malformed quantities, unknown enum values, empty names.
    let vmi = "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: odd}\nspec:\n  evictionStrategy: Whenever\n  domain:\n    memory: {guest: 12XiB}\n    resources: {requests: {memory: 1..2Gi}}\n    devices:\n      disks: [{name: ''}]\n";
    let out = kvbox(&["admit", "-f", "-"], Some(vmi));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for want in [
        "spec.domain.memory.guest: spec.domain.memory.guest '12XiB': quantities must match the regular expression",
        "spec.domain.resources.requests.memory: spec.domain.resources.requests.memory '1..2Gi': quantities must match",
        "spec.evictionStrategy: spec.evictionStrategy is set with an unrecognized option: Whenever",
        "spec.domain.devices.disks.domain.devices.disks[0].name: a lowercase RFC 1123 label",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
}

#[test]
fn crds_output_is_the_checked_in_copy() {
    let out = kvbox(&["crds"], None);
    assert!(out.status.success());
    let checked_in = std::fs::read_to_string(repo().join("crates/api/crds/crds.yaml")).unwrap();
    assert!(
        text(&out.stdout) == checked_in,
        "`kvbox crds` differs from crates/api/crds/crds.yaml: regenerate it"
    );
    assert_eq!(checked_in.matches("kind: CustomResourceDefinition").count(), 18);
}

#[test]
fn a_directory_is_read_in_name_order() {
    // kubectl's order puts migration-job.yaml before the VMI it migrates, so the migration is refused, as upstream does.
    let dir = testing::shared_dir().join("fixtures/upstream-examples");
    let gates = repo().join("crates/api/tests/fixtures/kubevirt-gates.yaml");
    let out = kvbox(
        &[
            "admit",
            "-f",
            gates.to_str().unwrap(),
            "-f",
            dir.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(
        err.trim(),
        "VirtualMachineInstanceMigration/migration-job: the VMI \"default/vmi-migratable\" does not exist",
        "{err}"
    );
}
