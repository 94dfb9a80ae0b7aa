//! Client-certificate authentication: `kvbox kubeconfig` issues certificates from the server's CA; kubectl uses them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn kvbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvbox"))
        .args(args)
        .output()
        .unwrap()
}

fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .output()
        .expect("kubectl must be installed (scripts/test installs it)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn client_certificates_authenticate_users_and_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = common::start_server(&data, "127.0.0.1:0");
    let (alice, bob) = (tmp.path().join("alice.yaml"), tmp.path().join("bob.yaml"));
    let d = data.to_str().unwrap();
    let out = kvbox(&[
        "kubeconfig",
        "--data-dir",
        d,
        "--user",
        "alice",
        "--group",
        "system:masters",
        "-o",
        alice.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&alice).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let out = kvbox(&[
        "kubeconfig",
        "--data-dir",
        d,
        "--user",
        "bob",
        "--group",
        "devs",
        "--group",
        "ops",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(&bob, &out.stdout).unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("token:"));

    // The subject is the identity: CN the user, O the groups.
    let who = kubectl(
        tmp.path(),
        &bob,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo}"],
    );
    assert!(who.status.success(), "{}", text(&who));
    let who = text(&who);
    assert!(
        who.contains("\"username\":\"bob\"")
            && who.contains("\"devs\"")
            && who.contains("\"ops\"")
            && who.contains("system:authenticated"),
        "{who}"
    );

    // system:masters writes; another group reads only.
    let created = kubectl(
        tmp.path(),
        &alice,
        &["create", "configmap", "by-alice", "--from-literal=a=b"],
    );
    assert!(created.status.success(), "{}", text(&created));
    let read = kubectl(tmp.path(), &bob, &["get", "configmap", "by-alice", "-o", "name"]);
    assert_eq!(text(&read).trim(), "configmap/by-alice");
    let denied = kubectl(tmp.path(), &bob, &["delete", "configmap", "by-alice"]);
    assert!(!denied.status.success());
    assert!(
        text(&denied).contains("User \"bob\" cannot delete resource \"configmaps\""),
        "{}",
        text(&denied)
    );

    // A certificate from another CA does not get in.
    let other = tmp.path().join("other");
    let mut other_server = common::start_server(&other, "127.0.0.1:0");
    let stranger = kvbox(&[
        "kubeconfig",
        "--data-dir",
        other.to_str().unwrap(),
        "--user",
        "eve",
        "--group",
        "system:masters",
    ]);
    assert!(stranger.status.success());
    let ours = std::fs::read_to_string(&alice).unwrap();
    let server_line = ours.lines().find(|l| l.trim().starts_with("server:")).unwrap();
    let ca_line = ours
        .lines()
        .find(|l| l.trim().starts_with("certificate-authority-data:"))
        .unwrap();
    let eve: String = String::from_utf8_lossy(&stranger.stdout)
        .lines()
        .map(|l| {
            if l.trim().starts_with("server:") {
                server_line
            } else if l.trim().starts_with("certificate-authority-data:") {
                ca_line
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let eve_path = tmp.path().join("eve.yaml");
    std::fs::write(&eve_path, eve).unwrap();
    let refused = kubectl(tmp.path(), &eve_path, &["get", "configmaps"]);
    assert!(!refused.status.success(), "{}", text(&refused));

    // Bad input: no CA in the directory, empty user.
    let missing = kvbox(&[
        "kubeconfig",
        "--data-dir",
        tmp.path().join("none").to_str().unwrap(),
        "--user",
        "x",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("ca.crt"), "{}", text(&missing));
    let empty = kvbox(&["kubeconfig", "--data-dir", d, "--user", ""]);
    assert!(
        text(&empty).contains("user name must not be empty"),
        "{}",
        text(&empty)
    );

    for s in [&mut server, &mut other_server] {
        let _ = s.kill();
        let _ = s.wait();
    }
}
