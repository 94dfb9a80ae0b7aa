//! `kvbox server` driven by the real kubectl, as a user would: apply the upstream examples, get with printer columns,
//! jsonpath, label/annotate/scale/patch, server-side apply, watch, delete, read-only and anonymous access, restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Self {
        Self {
            child: common::start_server(dir, "127.0.0.1:0"),
            dir: dir.to_path_buf(),
        }
    }

    fn stop(mut self) {
        // SIGTERM: the server shuts down cleanly.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "kvbox server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kubectl(&self, kubeconfig: &str, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.dir.join(kubeconfig))
            .env("HOME", self.dir.join("home"))
            .output()
            .expect("kubectl must be installed (scripts/test installs it)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl("kubeconfig.yaml", args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn examples() -> PathBuf {
    common::examples()
}

#[test]
fn kubectl_against_kvbox_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let server = Server::start(&dir);

    // kvbox server created the kubevirt namespace and a default KubeVirt CR; the gates fixture enables the feature
    // gates two examples need, as upstream's example cluster does.
    // `kubectl create` sends protobuf bodies.
    server.ok(&["create", "namespace", "protobuf-ns"]);
    server.ok(&["create", "configmap", "settings", "--from-literal=a=b"]);
    server.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ]);
    assert_eq!(
        server.ok(&["get", "secret", "creds", "-o", "jsonpath={.data.password}"]),
        "czNjcmV0"
    );
    server.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    assert_eq!(
        server.ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.type}/{.spec.ports[0].port}/{.spec.ports[0].targetPort}/{.spec.selector.app}"
        ]),
        "ClusterIP/80/8080/web"
    );
    server.ok(&["create", "service", "nodeport", "np", "--tcp=443:https"]);
    assert_eq!(
        server.ok(&[
            "get",
            "svc",
            "np",
            "-o",
            "jsonpath={.spec.type}/{.spec.ports[0].targetPort}"
        ]),
        "NodePort/https"
    );
    server.ok(&["create", "role", "reader", "--verb=get,list", "--resource=pods"]);
    server.ok(&["create", "rolebinding", "reads", "--role=reader", "--user=alice"]);
    server.ok(&[
        "create",
        "clusterrole",
        "viewer",
        "--verb=get",
        "--resource=nodes",
    ]);
    server.ok(&[
        "create",
        "clusterrolebinding",
        "views",
        "--clusterrole=viewer",
        "--group=devs",
    ]);
    assert_eq!(
        server.ok(&[
            "get",
            "rolebinding",
            "reads",
            "-o",
            "jsonpath={.roleRef.name}/{.subjects[0].name}"
        ]),
        "reader/alice"
    );
    assert_eq!(
        server.ok(&[
            "get",
            "clusterrole",
            "viewer",
            "-o",
            "jsonpath={.rules[0].verbs[0]}/{.rules[0].resources[0]}"
        ]),
        "get/nodes"
    );
    server.ok(&[
        "apply",
        "-f",
        repo.join("crates/api/tests/fixtures/kubevirt-gates.yaml")
            .to_str()
            .unwrap(),
    ]);

    let ex = examples();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&ex)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| (p.file_name().unwrap() == "migration-job.yaml", p.clone()));
    for f in &files {
        let out = server.ok(&["apply", "-f", f.to_str().unwrap()]);
        assert!(out.contains("created"), "{}: {out}", f.display());
    }

    let vmis = server.ok(&["get", "vmis"]);
    let header = vmis.lines().next().unwrap();
    for col in ["NAME", "AGE", "PHASE", "IP", "NODENAME", "READY"] {
        assert!(header.contains(col), "{header}");
    }
    // The VMI controller moves new VMIs from Pending to Scheduling once their launcher pods exist.
    assert!(
        vmis.contains("vmi-fedora") && (vmis.contains("Pending") || vmis.contains("Scheduling")),
        "{vmis}"
    );
    assert!(
        server
            .ok(&["get", "vmi", "-o", "wide"])
            .lines()
            .next()
            .unwrap()
            .contains("LIVE-MIGRATABLE")
    );
    assert_eq!(
        server.ok(&[
            "get",
            "vmi",
            "vmi-fedora",
            "-o",
            "jsonpath={.spec.domain.machine.type}"
        ]),
        "q35"
    );
    assert!(
        server
            .ok(&["get", "vm", "vm-cirros", "-o", "yaml"])
            .contains("kubevirt.io/pci-topology-version")
    );
    assert!(server.ok(&["api-resources"]).contains("virtualmachineinstances"));

    // Re-applying unchanged is a no-op; labels, annotations, patches, scale.
    assert!(
        server
            .ok(&["apply", "-f", ex.join("vm-cirros.yaml").to_str().unwrap()])
            .contains("unchanged")
    );
    server.ok(&["label", "vmi", "vmi-fedora", "tier=gold"]);
    server.ok(&["annotate", "vmi", "vmi-fedora", "note=hello"]);
    assert!(
        server
            .ok(&["get", "vmi", "-l", "tier=gold", "-o", "name"])
            .contains("vmi-fedora")
    );
    server.ok(&[
        "patch",
        "vm",
        "vm-cirros",
        "--type=merge",
        "-p",
        r#"{"spec":{"runStrategy":"Manual"}}"#,
    ]);
    server.ok(&[
        "patch",
        "vm",
        "vm-cirros",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/runStrategy","value":"Manual"}]"#,
    ]);
    server.ok(&["scale", "vmirs", "vmi-replicaset-cirros", "--replicas=4"]);
    assert_eq!(
        server.ok(&[
            "get",
            "vmirs",
            "vmi-replicaset-cirros",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "4"
    );
    server.ok(&[
        "apply",
        "--server-side",
        "-f",
        ex.join("csmall.yaml").to_str().unwrap(),
        "--force-conflicts",
    ]);

    // Server-side apply of every example (into a namespace of its own: creates through apply patches).
    server.ok(&["create", "namespace", "ssa"]);
    for f in files
        .iter()
        .filter(|f| f.file_name().unwrap() != "migration-job.yaml")
    {
        server.ok(&["apply", "--server-side", "-n", "ssa", "-f", f.to_str().unwrap()]);
    }
    assert!(
        server
            .ok(&["get", "vmis", "-n", "ssa", "-o", "name"])
            .contains("vmi-fedora")
    );
    // A field another manager changed conflicts until the applier forces it back.
    let owned = tmp.path().join("owned.yaml");
    std::fs::write(
        &owned,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  namespace: ssa\ndata:\n  k: mine\n",
    )
    .unwrap();
    server.ok(&["apply", "--server-side", "-f", owned.to_str().unwrap()]);
    server.ok(&[
        "patch",
        "-n",
        "ssa",
        "cm",
        "owned",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"k":"theirs"}}"#,
    ]);
    let conflict = server.kubectl(
        "kubeconfig.yaml",
        &["apply", "--server-side", "-f", owned.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(!conflict.status.success());
    assert!(
        err.contains("conflict with \"kubectl-patch\"") && err.contains(".data.k"),
        "{err}"
    );
    server.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        owned.to_str().unwrap(),
    ]);
    assert_eq!(
        server.ok(&["get", "-n", "ssa", "cm", "owned", "-o", "jsonpath={.data.k}"]),
        "mine"
    );

    // describe, explain, -o json, an edit-style replace, a strategic patch on a built-in.
    assert!(
        server
            .ok(&["describe", "vm", "vm-cirros"])
            .contains("Run Strategy")
    );
    assert!(
        server
            .ok(&["explain", "vmi.spec.domain.devices"])
            .contains("autoattachGraphicsDevice")
    );
    let json: serde_json::Value =
        serde_json::from_str(&server.ok(&["get", "vm", "vm-cirros", "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "VirtualMachine");
    let mut edited = json.clone();
    edited["metadata"]["labels"]["edited"] = serde_json::json!("yes");
    let edited_path = tmp.path().join("edited.json");
    std::fs::write(&edited_path, edited.to_string()).unwrap();
    server.ok(&["replace", "-f", edited_path.to_str().unwrap()]);
    assert_eq!(
        server.ok(&[
            "get",
            "vm",
            "vm-cirros",
            "-o",
            "jsonpath={.metadata.labels.edited}"
        ]),
        "yes"
    );
    server.ok(&["patch", "configmap", "settings", "-p", r#"{"data":{"b":"c"}}"#]);
    assert_eq!(
        server.ok(&["get", "configmap", "settings", "-o", "jsonpath={.data.b}"]),
        "c"
    );

    // A third-party CRD: established synchronously, then its objects are served.
    let crd = tmp.path().join("crd.json");
    std::fs::write(&crd, r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"gadgets.example.com"},"spec":{"group":"example.com","scope":"Namespaced","names":{"plural":"gadgets","singular":"gadget","kind":"Gadget"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"size":{"type":"integer"}}}}}}}]}}"#).unwrap();
    server.ok(&["apply", "-f", crd.to_str().unwrap()]);
    server.ok(&[
        "wait",
        "--for=condition=established",
        "crd/gadgets.example.com",
        "--timeout=10s",
    ]);
    let gadget = tmp.path().join("gadget.json");
    std::fs::write(
        &gadget,
        r#"{"apiVersion":"example.com/v1","kind":"Gadget","metadata":{"name":"g1"},"spec":{"size":3}}"#,
    )
    .unwrap();
    server.ok(&["apply", "-f", gadget.to_str().unwrap()]);
    assert_eq!(
        server.ok(&["get", "gadget", "g1", "-o", "jsonpath={.spec.size}"]),
        "3"
    );

    // Deletion with each propagation policy; `wait --for=delete` sees it go.
    for (i, cascade) in ["background", "foreground", "orphan"].iter().enumerate() {
        let name = format!("owner-{i}");
        server.ok(&["create", "configmap", &name, "--from-literal=a=b"]);
        server.ok(&[
            "delete",
            "configmap",
            &name,
            &format!("--cascade={cascade}"),
            "--wait=false",
        ]);
        server.ok(&[
            "wait",
            "--for=delete",
            &format!("configmap/{name}"),
            "--timeout=20s",
        ]);
    }

    // An invalid object is refused with upstream's field paths.
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachineInstance","metadata":{"name":"bad"},"spec":{"domain":{"devices":{"disks":[{"name":"d","disk":{"bus":"ide"}}]},"memory":{"guest":"64Mi"}},"volumes":[{"name":"d","emptyDisk":{"capacity":"1Gi"}}]}}"#).unwrap();
    let out = server.kubectl("kubeconfig.yaml", &["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.domain.devices.disks[0].disk.bus: IDE bus is not supported"),
        "{err}"
    );

    // Watch sees an object come and go.
    let cm = tmp.path().join("cm.json");
    std::fs::write(
        &cm,
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"watched"},"data":{"a":"b"}}"#,
    )
    .unwrap();
    let mut watch = Command::new("timeout")
        .args([
            "20",
            "kubectl",
            "get",
            "configmaps",
            "-w",
            "--output-watch-events",
        ])
        .env("KUBECONFIG", dir.join("kubeconfig.yaml"))
        .env("HOME", dir.join("home"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the watch's output as it comes; act only once its initial list (existing configmaps) has arrived.
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let out = watch.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        })
    };
    let until = |pred: &dyn Fn(&[String]) -> bool, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pred(&lines.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "kubectl get -w never showed {what}: {:?}",
                lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    until(&|l| l.iter().any(|x| x.contains("settings")), "the initial list");
    server.ok(&["apply", "-f", cm.to_str().unwrap()]);
    until(
        &|l| l.iter().any(|x| x.contains("ADDED") && x.contains("watched")),
        "the creation",
    );
    server.ok(&["label", "configmap", "watched", "touched=yes"]);
    until(
        &|l| l.iter().any(|x| x.contains("MODIFIED") && x.contains("watched")),
        "the modification",
    );
    server.ok(&["delete", "configmap", "watched"]);
    until(
        &|l| l.iter().any(|x| x.contains("DELETED") && x.contains("watched")),
        "the deletion",
    );
    // TERM reaches `timeout`, which passes it on to kubectl (a KILL would orphan kubectl).
    let _ = Command::new("kill")
        .args(["-TERM", &watch.id().to_string()])
        .status();
    let _ = watch.wait();
    let _ = reader.join();
    let seen = lines.lock().unwrap().join("\n");
    assert!(
        seen.contains("ADDED") && seen.contains("watched") && seen.contains("DELETED"),
        "{seen}"
    );

    // The read-only identity reads but cannot write; no token is no access.
    assert_eq!(server.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    let cannot = server.kubectl("kubeconfig-view.yaml", &["auth", "can-i", "delete", "vmis"]);
    assert!(
        String::from_utf8_lossy(&cannot.stdout).starts_with("no"),
        "{}",
        String::from_utf8_lossy(&cannot.stdout)
    );
    let view = server.kubectl("kubeconfig-view.yaml", &["get", "vmis", "-o", "name"]);
    assert!(view.status.success());
    let denied = server.kubectl("kubeconfig-view.yaml", &["apply", "-f", cm.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let anon = std::fs::read_to_string(dir.join("kubeconfig.yaml"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("token:"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        dir.join("kubeconfig-anon.yaml"),
        anon.replace("user:\n", "user: {}\n"),
    )
    .unwrap();
    let out = server.kubectl("kubeconfig-anon.yaml", &["get", "vmis"]);
    assert!(!out.status.success());

    // State survives a restart.
    server.stop();
    let server = Server::start(&dir);
    assert!(
        server
            .ok(&["get", "vmi", "vmi-fedora", "-o", "name"])
            .contains("vmi-fedora")
    );
    server.stop();
}
