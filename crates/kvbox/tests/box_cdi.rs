//! CDI DataVolumes through kubectl on a box: imports over http and https in every format the importer takes (raw,
//! gzip and xz streamed; qcow2 and compressed qcow2 through scratch), a blank disk, a clone of a claim, the failures
//! upstream reports (a 404, an image larger than its claim, a corrupt qcow2, an untrusted certificate, a claim
//! larger than the node, a missing class), progress reaching 100.0%, and nothing left behind once the DataVolumes
//! are deleted; VMs from dataVolumeTemplates; `virtctl image-upload`; a second node's own volumes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/agent.rs"]
mod agent;
#[path = "common/files.rs"]
mod files;
#[path = "common/guest.rs"]
mod guest;
#[path = "common/node.rs"]
mod node;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use node::{NodeBox, eventually, test_disk};

fn apply(b: &NodeBox, yaml: &str) {
    b.kubectl_in(&["apply", "-f", "-"], Some(yaml));
}

/// A DataVolume bound at once (the importer is the claim's first consumer).
fn datavolume(name: &str, source: &str, size: &str) -> String {
    format!(
        "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata:\n  name: {name}\n  annotations: {{cdi.kubevirt.io/storage.bind.immediate.requested: \"\"}}\nspec:\n  source: {source}\n  storage:\n    resources: {{requests: {{storage: {size}}}}}\n"
    )
}

fn phase(b: &NodeBox, dv: &str) -> String {
    b.get(&format!("dv {dv}"), "{.status.phase} {.status.progress}")
}

/// The claim's disk image on the node.
fn disk_of(b: &NodeBox, claim: &str) -> PathBuf {
    let uid = b.get(&format!("pvc {claim}"), "{.metadata.uid}");
    b.dir()
        .join("volumes")
        .join(format!("pvc-{uid}"))
        .join("disk.img")
}

/// A CA, and a server certificate and key it signed for `ip` (PEM).
fn tls_identity(ip: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![ip.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// The image files the test's server offers, made from the test guest's qcow2.
fn images(dir: &Path) -> Vec<u8> {
    let qcow2 = test_disk();
    std::fs::copy(&qcow2, dir.join("disk.qcow2")).unwrap();
    let raw = dir.join("disk.raw");
    let ok = std::process::Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&qcow2)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(ok.success());
    let bytes = std::fs::read(&raw).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    std::fs::write(dir.join("disk.raw.gz"), gz.finish().unwrap()).unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&bytes).unwrap();
    std::fs::write(dir.join("disk.raw.xz"), xz.finish().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(&qcow2).unwrap()).unwrap();
    std::fs::write(dir.join("disk.qcow2.gz"), gz.finish().unwrap()).unwrap();
    // A qcow2 header and then nonsense.
    let mut corrupt = std::fs::read(&qcow2).unwrap()[..4].to_vec();
    corrupt.extend(std::iter::repeat_n(0x5a, 1 << 20));
    std::fs::write(dir.join("corrupt.qcow2"), corrupt).unwrap();
    bytes
}

fn assert_holds(disk: &Path, raw: &[u8]) {
    let got = std::fs::read(disk).unwrap();
    assert!(
        got.len() >= raw.len(),
        "{} is {} bytes",
        disk.display(),
        got.len()
    );
    assert!(
        got[..raw.len()] == *raw,
        "{} does not hold the image",
        disk.display()
    );
    assert!(
        got[raw.len()..].iter().all(|b| *b == 0),
        "the grown part is not empty"
    );
}

#[test]
fn datavolumes_import_over_http_blank_and_clone_and_fail_as_upstream() {
    let b = NodeBox::start(49, &[]);
    let served = tempfile::tempdir().unwrap();
    let raw = images(served.path());
    // Importers reach the test's servers at the pod gateway (the node's address on the pod network, there once the
    // first pod's sandbox made the bridge).
    let ranged = files::serve("0.0.0.0:0".parse().unwrap(), served.path().to_path_buf(), true);
    let plain = files::serve("0.0.0.0:0".parse().unwrap(), served.path().to_path_buf(), false);
    let url = |port: u16, file: &str| format!("{{http: {{url: \"http://10.251.49.1:{port}/{file}\"}}}}");
    // An https server whose certificate chains to a CA of the test's own (a certConfigMap brings it).
    let (ca, cert, key) = tls_identity("10.251.49.1");
    let secure = files::serve_tls(
        "0.0.0.0:0".parse().unwrap(),
        served.path().to_path_buf(),
        &cert,
        &key,
    );
    let ca_map = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-ca"},
        "data": {"ca.pem": ca}});
    apply(&b, &ca_map.to_string());
    let https = format!("https://10.251.49.1:{secure}/disk.raw.gz");

    let good = [
        ("raw", url(plain, "disk.raw")),
        ("gz", url(plain, "disk.raw.gz")),
        ("xz", url(plain, "disk.raw.xz")),
        ("qcow2", url(ranged, "disk.qcow2")),
        ("qcow2-noranges", url(plain, "disk.qcow2")),
        ("qcow2-gz", url(ranged, "disk.qcow2.gz")),
        (
            "https",
            format!("{{http: {{url: \"{https}\", certConfigMap: test-ca}}}}"),
        ),
    ];
    for (name, source) in &good {
        apply(&b, &datavolume(name, source, "128Mi"));
    }
    apply(&b, &datavolume("blank", "{blank: {}}", "32Mi"));
    for (name, _) in &good {
        eventually(&format!("DataVolume {name} Succeeded"), 240, || {
            phase(&b, name) == "Succeeded 100.0%"
        });
        assert_holds(&disk_of(&b, name), &raw);
        assert_eq!(
            b.get(
                &format!("dv {name}"),
                "{.status.conditions[?(@.type==\"Ready\")].status}"
            ),
            "True"
        );
    }
    eventually("the blank disk", 120, || phase(&b, "blank") == "Succeeded 100.0%");
    let blank = std::fs::metadata(disk_of(&b, "blank")).unwrap();
    assert_eq!(blank.len(), 32 << 20, "a blank disk is the size asked for");
    // The importers are gone once done; the claims stay, bound.
    eventually("no importer pods", 60, || {
        b.get("pods -l cdi.kubevirt.io=importer", "{.items[*].metadata.name}")
            .is_empty()
    });
    assert_eq!(b.get("pvc raw", "{.status.phase}"), "Bound");
    let table = b.kubectl(&["get", "dv", "raw"]);
    assert!(table.starts_with("NAME"), "{table}");
    for col in ["PHASE", "PROGRESS", "RESTARTS", "AGE"] {
        assert!(table.contains(col), "{table}");
    }
    assert!(table.contains("Succeeded") && table.contains("100.0%"), "{table}");
    let events = b.kubectl(&["get", "events", "--field-selector", "involvedObject.name=raw"]);
    for reason in ["ImportScheduled", "ImportSucceeded"] {
        assert!(events.contains(reason), "{events}");
    }

    // A clone of a claim on the same node.
    apply(
        &b,
        &datavolume("copy", "{pvc: {namespace: default, name: raw}}", "128Mi"),
    );
    eventually("the clone", 120, || phase(&b, "copy") == "Succeeded 100.0%");
    assert_holds(&disk_of(&b, "copy"), &raw);

    // Failures: the importer is restarted with a rising count, the DataVolume stays in progress and says why.
    let failing = [
        (
            "missing",
            url(plain, "nothere.img"),
            "128Mi",
            "expected status code 200, got 404",
        ),
        (
            "toosmall",
            url(plain, "disk.raw"),
            "16Mi",
            "DataVolume too small to contain image",
        ),
        ("corrupt", url(ranged, "corrupt.qcow2"), "128Mi", "qemu-img"),
        (
            "untrusted",
            format!("{{http: {{url: \"{https}\"}}}}"),
            "128Mi",
            "certificate",
        ),
    ];
    for (name, source, size, _) in &failing {
        apply(&b, &datavolume(name, source, size));
    }
    for (name, _, _, message) in &failing {
        eventually(&format!("{name} restarted with the error"), 120, || {
            let out = b.get(
                &format!("dv {name}"),
                "{.status.phase}|{.status.restartCount}|{.status.conditions[?(@.type==\"Running\")].reason}|{.status.conditions[?(@.type==\"Running\")].message}",
            );
            let f: Vec<&str> = out.split('|').collect();
            f.len() == 4
                && f[0] == "ImportInProgress"
                && f[1].parse::<u32>().unwrap_or(0) >= 1
                && f[2] == "Error"
                && f[3].contains(message)
        });
    }
    // A claim larger than the node's free space: the provisioner refuses it, the DataVolume waits for its claim.
    apply(&b, &datavolume("huge", "{blank: {}}", "100Ti"));
    eventually("the huge claim refused", 60, || {
        b.kubectl(&["get", "events", "--field-selector", "involvedObject.name=huge"])
            .contains("not enough space on node box0")
    });
    assert_eq!(
        b.get(
            "dv huge",
            "{.status.phase} {.status.conditions[?(@.type==\"Bound\")].reason}"
        ),
        "ImportScheduled Pending"
    );
    // No class to render a claim with: the DataVolume says so and nothing is created.
    apply(
        &b,
        "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {name: noclass}\nspec:\n  source: {blank: {}}\n  storage: {storageClassName: nosuch, resources: {requests: {storage: 1Mi}}}\n",
    );
    eventually("the claim stays Pending without its class", 60, || {
        b.get("dv noclass", "{.status.phase}") == "Pending"
            || b.get("pvc noclass", "{.status.phase}") == "Pending"
    });

    // Deleting the DataVolumes removes claims, importer pods, volumes and their directories.
    let dirs: Vec<PathBuf> = ["raw", "missing", "toosmall", "copy", "https"]
        .iter()
        .map(|n| disk_of(&b, n).parent().unwrap().to_path_buf())
        .collect();
    b.kubectl(&["delete", "dv", "--all", "--wait=false"]);
    eventually("every claim, importer and volume gone", 120, || {
        b.get("pvc", "{.items[*].metadata.name}").is_empty()
            && b.get("pods", "{.items[*].metadata.name}").is_empty()
            && b.get("pv", "{.items[*].metadata.name}").is_empty()
            && dirs.iter().all(|d| !d.exists())
    });
    let pods_dir = b.dir().join("pods");
    eventually("no pod directories", 60, || {
        std::fs::read_dir(&pods_dir).map_or(true, |d| d.count() == 0)
    });
}

/// Upstream's `vm-alpine-datavolume.yaml` with its image served over http here (instead of a registry) and set to
/// run: the VM creates its DataVolume, the WaitForFirstConsumer claim gets the VM's node through a placeholder pod,
/// the import runs there, the VM boots from the imported disk; what the guest writes survives a stop and start and
/// a `kill -9` of the server; deleting the VM removes the DataVolume, claim and volume.
#[test]
fn a_vm_boots_from_its_datavolume_template_and_keeps_its_writes() {
    let mut b = NodeBox::start(50, &[]);
    let served = tempfile::tempdir().unwrap();
    std::fs::copy(test_disk(), served.path().join("disk.qcow2")).unwrap();
    let port = files::serve("0.0.0.0:0".parse().unwrap(), served.path().to_path_buf(), true);
    let text = std::fs::read_to_string(testing::examples().join("vm-alpine-datavolume.yaml")).unwrap();
    let mut vm: serde_json::Value = serde_norway::from_str(&text).unwrap();
    vm["spec"]["dataVolumeTemplates"][0]["spec"]["source"] =
        serde_json::json!({"http": {"url": format!("http://10.251.50.1:{port}/disk.qcow2")}});
    vm["spec"]["runStrategy"] = serde_json::json!("Always");
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm.to_string()));
    let printable = node::Watch::start(&b, "vm vm-alpine-datavolume", "{.status.printableStatus}");
    assert_eq!(
        b.get("dv alpine-dv", "{.metadata.ownerReferences[0].kind}"),
        "VirtualMachine"
    );
    let (uid, _, _) = guest::running(&b, "vm-alpine-datavolume");
    assert_eq!(
        b.get("dv alpine-dv", "{.status.phase} {.status.progress}"),
        "Succeeded 100.0%"
    );
    assert_eq!(
        b.get(
            "vmi vm-alpine-datavolume",
            "{.status.conditions[?(@.type==\"DataVolumesReady\")].status}"
        ),
        "True"
    );
    let seen = printable.seen();
    assert!(seen.iter().any(|s| s == "Provisioning"), "{seen:?}");
    assert!(seen.iter().any(|s| s == "Running"), "{seen:?}");
    // The claim landed on the VM's node, the placeholder pod is gone.
    assert_eq!(
        b.get(
            "pvc alpine-dv",
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        "box0"
    );
    eventually("the placeholder pod gone", 60, || {
        b.get(
            "pods",
            "{.items[*].metadata.annotations.kubevirt\\.io/ephemeral-provisioning}",
        )
        .is_empty()
    });
    // The disk was grown to the claim: the guest writes 1 GiB in, past the imported image.
    let disk = disk_of(&b, "alpine-dv");
    assert!(
        std::fs::metadata(&disk).unwrap().len() > 1 << 30,
        "the disk was not grown to the claim"
    );
    guest::in_guest(
        &b,
        &uid,
        "echo KEPT-ON-THE-DV | dd of=/dev/vda bs=512 seek=2097152 count=1 conv=sync 2>/dev/null && sync && echo WROTE''-IT",
        "WROTE-IT",
        60,
    );
    // The claim is the limit: writing past the end of the disk fails in the guest and the image does not grow.
    let size = std::fs::metadata(&disk).unwrap().len();
    guest::in_guest(
        &b,
        &uid,
        "dd if=/dev/zero of=/dev/vda bs=1M seek=1920 count=64 2>&1 | grep -o 'No space left' | sed 's/^/FULL: /'",
        "FULL: No space left",
        60,
    );
    assert_eq!(
        std::fs::metadata(&disk).unwrap().len(),
        size,
        "the disk image grew"
    );
    let read_back = |b: &NodeBox, uid: &str| {
        guest::in_guest(
            b,
            uid,
            "dd if=/dev/vda bs=512 skip=2097152 count=1 2>/dev/null | head -c 14 | sed 's/^/READ: /'; echo",
            "READ: KEPT-ON-THE-DV",
            60,
        );
    };
    let restart = |b: &NodeBox, old: &str| -> String {
        for strategy in ["Halted", "Always"] {
            let patch = format!(r#"{{"spec": {{"runStrategy": "{strategy}"}}}}"#);
            b.kubectl(&[
                "patch",
                "vm",
                "vm-alpine-datavolume",
                "--type",
                "merge",
                "-p",
                &patch,
            ]);
            if strategy == "Halted" {
                eventually("the VMI gone", 90, || {
                    b.get("vmi vm-alpine-datavolume", "{.metadata.uid}").is_empty()
                });
            }
        }
        eventually("a new VMI", 60, || {
            let now = b.get("vmi vm-alpine-datavolume", "{.metadata.uid}");
            !now.is_empty() && now != old
        });
        guest::running(b, "vm-alpine-datavolume").0
    };
    let uid = restart(&b, &uid);
    read_back(&b, &uid);
    // The server dies and comes back: the DataVolume is still Succeeded (no second import), the data still there.
    b.kill9();
    b.run();
    eventually("the server back", 60, || {
        !b.get("dv alpine-dv", "{.status.phase}").is_empty()
    });
    assert_eq!(b.get("dv alpine-dv", "{.status.phase}"), "Succeeded");
    let uid = restart(&b, &uid);
    read_back(&b, &uid);
    assert!(
        b.get("pods -l cdi.kubevirt.io=importer", "{.items[*].metadata.name}")
            .is_empty(),
        "the import ran again"
    );
    // Deleting the VM takes its DataVolume, claim and volume with it.
    let dir = disk.parent().unwrap().to_path_buf();
    b.kubectl(&["delete", "vm", "vm-alpine-datavolume", "--wait=false"]);
    eventually("DataVolume, claim and volume gone", 120, || {
        b.get("dv", "{.items[*].metadata.name}").is_empty()
            && b.get("pvc", "{.items[*].metadata.name}").is_empty()
            && b.get("pv", "{.items[*].metadata.name}").is_empty()
            && !dir.exists()
    });
}

fn virtctl(b: &NodeBox, args: &[&str]) -> (bool, String) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_kvbox")).with_file_name("virtctl");
    let out = std::process::Command::new(bin)
        .env("KUBECONFIG", b.dir().join("kubeconfig.yaml"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `curl` to the upload proxy: the HTTP status.
fn proxy_status(b: &NodeBox, auth: Option<&str>) -> String {
    let url = b.get("cdiconfig config", "{.status.uploadProxyURL}");
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "--data-binary",
        "x",
    ]);
    if let Some(a) = auth {
        cmd.args(["-H", &format!("Authorization: {a}")]);
    }
    let out = cmd.arg(format!("https://{url}/v1beta1/upload")).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `virtctl image-upload` as a user types it: the DataVolume is made, its upload server becomes ready, the image
/// goes through the upload proxy (trusted through CDIConfig's CA) with a progress bar, and the claim holds it; the
/// proxy refuses missing and forged tokens; a WaitForFirstConsumer volume needs `--force-bind`; a finished volume
/// takes no second upload.
#[test]
fn virtctl_image_upload_fills_a_datavolume_through_the_upload_proxy() {
    let b = NodeBox::start(51, &[]);
    let dir = tempfile::tempdir().unwrap();
    let raw = images(dir.path());
    let qcow2 = dir.path().join("disk.qcow2");
    let qcow2 = qcow2.to_str().unwrap();
    eventually("the upload proxy published", 30, || {
        !b.get("cdiconfig config", "{.status.uploadProxyURL}").is_empty()
    });
    let (ok, out) = virtctl(
        &b,
        &[
            "image-upload",
            "dv",
            "up",
            "--size",
            "128Mi",
            "--image-path",
            qcow2,
            "--force-bind",
        ],
    );
    assert!(ok, "{out}");
    for line in [
        "DataVolume default/up created",
        "Uploading data to https://",
        "Uploading data completed successfully, waiting for processing to complete",
        "Processing completed successfully",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    eventually("the DataVolume Succeeded", 60, || {
        phase(&b, "up") == "Succeeded 100.0%"
    });
    assert_holds(&disk_of(&b, "up"), &raw);
    let events = b.kubectl(&["get", "events", "--field-selector", "involvedObject.name=up"]);
    for reason in ["UploadScheduled", "UploadReady", "UploadSucceeded"] {
        assert!(events.contains(reason), "{events}");
    }
    // A compressed raw image streams straight in (and --insecure skips the certificate check).
    let gz = dir.path().join("disk.raw.gz");
    let (ok, out) = virtctl(
        &b,
        &[
            "image-upload",
            "dv",
            "upgz",
            "--size",
            "128Mi",
            "--image-path",
            gz.to_str().unwrap(),
            "--force-bind",
            "--insecure",
        ],
    );
    assert!(ok, "{out}");
    assert_holds(&disk_of(&b, "upgz"), &raw);

    let (ok, out) = virtctl(&b, &["image-upload", "dv", "up", "--image-path", qcow2]);
    assert!(!ok);
    assert!(
        out.contains("PVC up already successfully imported/cloned/updated"),
        "{out}"
    );
    let (ok, out) = virtctl(
        &b,
        &[
            "image-upload",
            "dv",
            "wffc",
            "--size",
            "64Mi",
            "--image-path",
            qcow2,
        ],
    );
    assert!(!ok);
    assert!(
        out.contains("cannot upload to DataVolume in WaitForFirstConsumer phase, make sure the PVC is Bound, or use force-bind flag"),
        "{out}"
    );
    let (ok, out) = virtctl(&b, &["image-upload", "dv", "nosize", "--image-path", qcow2]);
    assert!(!ok);
    assert!(
        out.contains("when creating a resource, the size must be specified"),
        "{out}"
    );
    // The proxy: no token 400, a forged one 401.
    assert_eq!(proxy_status(&b, None), "400");
    assert_eq!(proxy_status(&b, Some("Bearer abc.def.ghi")), "401");
    // Deleting the DataVolumes leaves nothing behind.
    b.kubectl(&["delete", "dv", "--all", "--wait=false"]);
    eventually("every claim, pod and volume gone", 120, || {
        b.get("pvc", "{.items[*].metadata.name}").is_empty()
            && b.get("pods", "{.items[*].metadata.name}").is_empty()
            && b.get("pv", "{.items[*].metadata.name}").is_empty()
    });
}

/// WaitForFirstConsumer on two nodes: a VM pinned to a `kvbox agent` node gets its DataVolume's claim provisioned by
/// that node's local provisioner, in that node's data directory, and imported there; the claim binds only once the
/// VM's placeholder pod is scheduled.
#[test]
fn a_second_node_provisions_and_imports_its_own_vms_volume() {
    let b = NodeBox::start(52, &[]);
    let a = agent::Agent::start(&b, "cdi-agent", 53);
    eventually("the agent node ready", 60, || {
        b.get(
            "node cdi-agent",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
    let mut vmi: serde_json::Value = serde_json::from_str(&guest::vmi("pinned", "masquerade")).unwrap();
    let spec = vmi["spec"].as_object_mut().unwrap();
    spec.insert(
        "nodeSelector".into(),
        serde_json::json!({"kubernetes.io/hostname": "cdi-agent"}),
    );
    spec["domain"]["devices"]["disks"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "data", "disk": {"bus": "virtio"}}));
    spec["volumes"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "data", "dataVolume": {"name": "pinned-data"}}));
    let vm = serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "pinned"}, "spec": {"runStrategy": "Always",
            "dataVolumeTemplates": [{"metadata": {"name": "pinned-data"},
                "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "64Mi"}}}}}],
            "template": {"spec": vmi["spec"]}}});
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm.to_string()));
    eventually("the DataVolume Succeeded", 120, || {
        phase(&b, "pinned-data") == "Succeeded 100.0%"
    });
    let pv = b.get("pvc pinned-data", "{.spec.volumeName}");
    assert_eq!(
        b.get(
            &format!("pv {pv}"),
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"
        ),
        "cdi-agent"
    );
    assert_eq!(
        b.get(
            "pvc pinned-data",
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        "cdi-agent"
    );
    let disk = a.dir.path().join("volumes").join(&pv).join("disk.img");
    assert!(
        disk.exists(),
        "{} missing: the agent's provisioner did not make the volume",
        disk.display()
    );
    assert!(
        !b.dir().join("volumes").join(&pv).exists(),
        "the server's node made it"
    );
    eventually("the VMI scheduled on the agent", 120, || {
        b.get("vmi pinned", "{.status.nodeName}") == "cdi-agent"
    });
    b.kubectl(&["delete", "vm", "pinned", "--wait=false"]);
    eventually("volume gone from the agent", 120, || {
        b.get("pv", "{.items[*].metadata.name}").is_empty() && !disk.exists()
    });
}
