//! virt-api's admission webhooks, as a cluster uses them: AdmissionReviews posted the way kube-apiserver posts them
//! (TLS to the `virt-api.kubevirt.svc` certificate, trusting the APIService's CA bundle) get upstream's answers —
//! a JSONPatch of the defaults, 422s with the causes, restricted updates — and a ValidatingWebhookConfiguration
//! registered by Service (as virt-operator registers them) is called by box mode's API server for a kubectl patch;
//! APIServices carry kube-aggregator's `Available` condition.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/node.rs"]
mod node;

use std::process::{Command, Stdio};

use base64::Engine as _;
use node::{NodeBox, eventually};
use serde_json::{Value, json};

struct VirtApi {
    ip: String,
    port: String,
    ca: std::path::PathBuf,
}

fn virt_api(b: &NodeBox) -> VirtApi {
    eventually("virt-api's endpoints", 60, || {
        !b.get("endpoints virt-api -n kubevirt", "{.subsets[0].addresses[0].ip}")
            .is_empty()
    });
    let bundle = b.get("apiservice v1.subresources.kubevirt.io", "{.spec.caBundle}");
    let ca = b.dir().join("virt-api-ca.pem");
    std::fs::write(
        &ca,
        base64::engine::general_purpose::STANDARD
            .decode(bundle.trim())
            .unwrap(),
    )
    .unwrap();
    VirtApi {
        ip: b.get("endpoints virt-api -n kubevirt", "{.subsets[0].addresses[0].ip}"),
        port: b.get("endpoints virt-api -n kubevirt", "{.subsets[0].ports[0].port}"),
        ca,
    }
}

/// POSTs an AdmissionReview for `request` to `path`, as kube-apiserver does; the response part.
fn review(api: &VirtApi, path: &str, mut request: Value) -> Value {
    request["uid"] = json!("d7b6f2a4-0000-4000-8000-000000000001");
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--cacert"])
        .arg(&api.ca)
        .args([
            "--resolve",
            &format!("virt-api.kubevirt.svc:{}:{}", api.port, api.ip),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
            &format!("https://virt-api.kubevirt.svc:{}{path}", api.port),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(body.to_string().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "d7b6f2a4-0000-4000-8000-000000000001");
    v["response"].clone()
}

fn vmi(name: &str) -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "default", "labels": {"webhook-test": "yes"}},
        "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}},
            "volumes": [{"name": "root", "containerDisk": {"image": "kubevirt-rs/test-guest:latest"}}]}})
}

fn create(kind: &str, resource: &str, obj: &Value) -> Value {
    json!({"kind": {"group": "kubevirt.io", "version": "v1", "kind": kind},
        "resource": {"group": "kubevirt.io", "version": "v1", "resource": resource},
        "operation": "CREATE", "namespace": "default", "name": obj["metadata"]["name"],
        "userInfo": {"username": "alice"}, "object": obj})
}

#[test]
fn admission_reviews_get_upstreams_answers() {
    let b = NodeBox::start(33, &[]);
    let api = virt_api(&b);

    // The availability check: virt-api's APIServices become Available; one whose Service is missing does not.
    b.kubectl_in(
        &["apply", "-f", "-"],
        Some(r#"{"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.nowhere.example.com"},
            "spec": {"group": "nowhere.example.com", "version": "v1", "groupPriorityMinimum": 100, "versionPriority": 10,
                "service": {"namespace": "default", "name": "gone"}}}"#),
    );
    eventually("APIService conditions", 60, || {
        let t = b.kubectl(&["get", "apiservices"]);
        t.lines().any(|l| {
            l.starts_with("v1.subresources.kubevirt.io")
                && l.contains("kubevirt/virt-api")
                && l.contains(" True ")
        }) && t
            .lines()
            .any(|l| l.starts_with("v1.nowhere.example.com") && l.contains("False (ServiceNotFound)"))
    });
    b.kubectl(&["delete", "apiservice", "v1.nowhere.example.com"]);

    // Mutating: a JSONPatch that turns the VMI into its defaulted form.
    let original = vmi("web");
    let r = review(
        &api,
        "/virtualmachineinstances-mutate",
        create("VirtualMachineInstance", "virtualmachineinstances", &original),
    );
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["patchType"], "JSONPatch");
    let patch: json_patch::Patch = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut defaulted = original.clone();
    json_patch::patch(&mut defaulted, &patch).unwrap();
    assert_eq!(defaulted["spec"]["domain"]["machine"]["type"], "q35");
    assert_eq!(
        defaulted["spec"]["domain"]["devices"]["disks"][0]["name"], "root",
        "a disk for the volume"
    );
    assert_eq!(defaulted["spec"]["domain"]["memory"]["guest"], "64Mi");

    // Validating: a defaulted VMI passes; a bad one gets 422 with the causes.
    let ok = review(
        &api,
        "/virtualmachineinstances-validate-create",
        create("VirtualMachineInstance", "virtualmachineinstances", &defaulted),
    );
    assert_eq!(ok["allowed"], true, "{ok}");
    let mut bad = defaulted.clone();
    bad["spec"]["domain"]["devices"]["disks"][0]["name"] = json!("elsewhere");
    let no = review(
        &api,
        "/virtualmachineinstances-validate-create",
        create("VirtualMachineInstance", "virtualmachineinstances", &bad),
    );
    assert_eq!(no["allowed"], false);
    assert_eq!(no["status"]["code"], 422);
    assert_eq!(no["status"]["reason"], "Invalid");
    let causes = no["status"]["details"]["causes"].as_array().unwrap();
    assert!(
        causes
            .iter()
            .any(|c| c["field"].as_str().unwrap_or_default().contains("disks[0].name")),
        "{no}"
    );
    assert!(
        no["status"]["message"].as_str().unwrap().contains("elsewhere"),
        "{no}"
    );

    // VM: create with an unknown run strategy refused; migration spec updates refused.
    let vm = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "v", "namespace": "default"},
        "spec": {"runStrategy": "Sometimes", "template": {"spec": original["spec"].clone()}}});
    let r = review(
        &api,
        "/virtualmachines-validate",
        create("VirtualMachine", "virtualmachines", &vm),
    );
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"].as_str().unwrap().contains("Sometimes"),
        "{r}"
    );
    let mig = |node: &str| {
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": "m", "namespace": "default"}, "spec": {"vmiName": node}})
    };
    let mut upd = create(
        "VirtualMachineInstanceMigration",
        "virtualmachineinstancemigrations",
        &mig("a"),
    );
    upd["operation"] = json!("UPDATE");
    upd["oldObject"] = mig("b");
    let r = review(&api, "/migration-validate-update", upd);
    assert_eq!(
        r["status"]["message"],
        "update of Migration object's spec is restricted"
    );

    // VMI updates: a user may not change the spec; KubeVirt's service accounts may.
    let mut upd = create("VirtualMachineInstance", "virtualmachineinstances", &defaulted);
    upd["operation"] = json!("UPDATE");
    let mut old = defaulted.clone();
    old["spec"]["terminationGracePeriodSeconds"] = json!(5);
    upd["oldObject"] = old;
    let r = review(&api, "/virtualmachineinstances-validate-update", upd.clone());
    assert_eq!(
        r["status"]["message"], "update of VMI object is restricted",
        "{r}"
    );
    upd["userInfo"]["username"] = json!("system:serviceaccount:kubevirt:kubevirt-controller");
    assert_eq!(
        review(&api, "/virtualmachineinstances-validate-update", upd.clone())["allowed"],
        true
    );
    // NodeRestriction (on by default): a handler's token must name its node, the VMI's.
    upd["userInfo"]["username"] = json!("system:serviceaccount:kubevirt:kubevirt-handler");
    upd["oldObject"]["status"] = json!({"nodeName": "node-a"});
    let r = review(&api, "/virtualmachineinstances-validate-update", upd.clone());
    assert_eq!(
        r["status"]["message"], "Node restriction failed, virt-handler service account is missing node name",
        "{r}"
    );
    upd["userInfo"]["extra"] = json!({"authentication.kubernetes.io/node-name": ["node-b"]});
    let r = review(&api, "/virtualmachineinstances-validate-update", upd.clone());
    assert_eq!(
        r["status"]["message"],
        "Node restriction, virt-handler is only allowed to modify VMIs it owns"
    );
    upd["userInfo"]["extra"] = json!({"authentication.kubernetes.io/node-name": ["node-a"]});
    assert_eq!(
        review(&api, "/virtualmachineinstances-validate-update", upd)["allowed"],
        true
    );

    // Registered by Service as virt-operator does, box mode's API server calls it for a kubectl patch.
    let bundle = b.get("apiservice v1.subresources.kubevirt.io", "{.spec.caBundle}");
    let config = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "virt-api-validator"},
        "webhooks": [{"name": "virtualmachineinstances-update-validator.kubevirt.io",
            "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
            "objectSelector": {"matchLabels": {"webhook-test": "yes"}},
            "rules": [{"operations": ["UPDATE"], "apiGroups": ["kubevirt.io"], "apiVersions": ["v1"],
                "resources": ["virtualmachineinstances"]}],
            "clientConfig": {"caBundle": bundle.trim(),
                "service": {"namespace": "kubevirt", "name": "virt-api", "port": 443,
                    "path": "/virtualmachineinstances-validate-update"}}}]});
    b.kubectl_in(&["apply", "-f", "-"], Some(&config.to_string()));
    let mut pending = vmi("held");
    pending["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "nowhere"});
    b.kubectl_in(&["apply", "-f", "-"], Some(&pending.to_string()));
    let (ok, _, err) = b.try_kubectl(
        &[
            "patch",
            "vmi",
            "held",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"terminationGracePeriodSeconds":7}}"#,
        ],
        None,
    );
    assert!(!ok, "the webhook should refuse the spec change");
    assert!(
        err.contains("admission webhook \"virtualmachineinstances-update-validator.kubevirt.io\" denied the request: update of VMI object is restricted"),
        "{err}"
    );
    b.kubectl(&["label", "vmi", "held", "extra=1"]);
    assert_eq!(b.get("vmi held", "{.metadata.labels.extra}"), "1");
}
