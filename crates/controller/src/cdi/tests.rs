//! The DataVolume controller's pure parts: claim rendering and sizing, the phase machine, progress parsing.

#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kubevirt_api::cdi::DataVolume;
use serde_json::json;

use super::claim::{self, ClaimError};
use super::decide::{Step, decide};

fn dv(spec: serde_json::Value) -> DataVolume {
    serde_json::from_value(
        json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
        "metadata": {"name": "disk", "namespace": "default", "uid": "dv-uid"}, "spec": spec}),
    )
    .unwrap()
}

fn local_class() -> StorageClass {
    serde_json::from_value(json!({"metadata": {"name": "local",
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubevirt-rs.io/local", "volumeBindingMode": "WaitForFirstConsumer"}))
    .unwrap()
}

fn pvc(phase: &str, annotations: serde_json::Value) -> PersistentVolumeClaim {
    serde_json::from_value(
        json!({"metadata": {"name": "disk", "namespace": "default", "uid": "pvc-uid",
        "annotations": annotations}, "spec": {"resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": phase}}),
    )
    .unwrap()
}

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(
        json!({"metadata": {"name": "importer-disk"}, "spec": {"nodeName": "n",
        "containers": [{"name": "importer"}]}, "status": status}),
    )
    .unwrap()
}

#[test]
fn a_storage_claim_is_completed_from_the_default_class_and_inflated() {
    let d = dv(json!({"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "10Gi"}}}}));
    let spec = claim::spec_for(&d, &[local_class()], &[], 0.06).unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("local"));
    assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
    let size = &spec.resources.unwrap().requests.unwrap()["storage"].0;
    assert_eq!(size, "11381663335", "upstream's 10Gi with 6% overhead");
    // spec.pvc is taken as written.
    let d = dv(
        json!({"source": {"blank": {}}, "pvc": {"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "10Gi"}}}}),
    );
    let spec = claim::spec_for(&d, &[], &[], 0.06).unwrap();
    assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"].0, "10Gi");
    assert!(spec.storage_class_name.is_none());
}

#[test]
fn claims_that_cannot_be_rendered_say_why_as_upstream() {
    let d = dv(json!({"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}));
    assert_eq!(
        claim::spec_for(&d, &[], &[], 0.06).unwrap_err(),
        ClaimError::NoClass
    );
    let mut other = local_class();
    other.provisioner = "example.com/unknown".into();
    assert_eq!(
        claim::spec_for(&d, &[other], &[], 0.06).unwrap_err().to_string(),
        "Spec is missing accessMode and volumeMode, cannot get access mode from StorageProfile local"
    );
    let none = dv(json!({"source": {"blank": {}}}));
    assert_eq!(
        claim::spec_for(&none, &[], &[], 0.06).unwrap_err(),
        ClaimError::NoTarget
    );
}

#[test]
fn the_claim_carries_the_import_as_annotations_and_is_owned_by_the_datavolume() {
    let d = dv(json!({"source": {"http": {"url": "http://x/disk.qcow2"}},
        "storage": {"resources": {"requests": {"storage": "1Gi"}}}}));
    let spec = claim::spec_for(&d, &[local_class()], &[], 0.06).unwrap();
    let c = claim::render(&d, spec);
    let anns = c.metadata.annotations.unwrap();
    assert_eq!(anns[claim::ann::SOURCE], "http");
    assert_eq!(anns[claim::ann::ENDPOINT], "http://x/disk.qcow2");
    assert_eq!(anns[claim::ann::CONTENT_TYPE], "kubevirt");
    let owner = &c.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("DataVolume", "dv-uid", Some(true))
    );
}

#[test]
fn the_phases_follow_the_claim_and_the_importer() {
    let d = dv(json!({"source": {"blank": {}}, "storage": {}}));
    let (st, steps) = decide(&d, None, true, None);
    assert_eq!((st.phase, st.bound.1.as_str()), ("Pending", "NotFound"));
    assert!(steps.is_empty());
    // WaitForFirstConsumer until a consumer (or the immediate-binding annotation).
    let pending = pvc("Pending", json!({}));
    let (st, steps) = decide(&d, Some(&pending), true, None);
    assert_eq!(st.phase, "WaitForFirstConsumer");
    assert!(steps.is_empty());
    let immediate = pvc("Pending", json!({claim::ann::IMMEDIATE: ""}));
    let (st, steps) = decide(&d, Some(&immediate), true, None);
    assert_eq!((st.phase, steps), ("ImportScheduled", vec![Step::CreatePod]));
    let bound = pvc("Bound", json!({}));
    let (st, steps) = decide(&d, Some(&bound), true, None);
    assert_eq!((st.phase, steps), ("ImportScheduled", vec![Step::CreatePod]));
    assert_eq!(
        st.bound,
        ("True", "Bound".to_string(), "PVC disk Bound".to_string())
    );
    // The importer runs, fails and is restarted, succeeds.
    let running = pod(
        json!({"phase": "Running", "containerStatuses": [{"name": "importer", "image": "i",
        "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
    );
    let (st, _) = decide(&d, Some(&bound), true, Some(&running));
    assert_eq!((st.phase, st.running.0), ("ImportInProgress", "True"));
    let failing = pod(
        json!({"phase": "Running", "containerStatuses": [{"name": "importer", "image": "i",
        "imageID": "", "ready": false, "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1,
            "message": "{\"message\":\"Unable to process data: Unable to connect to http data source: expected status code 200, got 404. Status: 404 Not Found\"}"}}}]}),
    );
    let (st, _) = decide(&d, Some(&bound), true, Some(&failing));
    assert_eq!(st.phase, "ImportInProgress");
    assert_eq!(st.restarts, 2);
    assert_eq!((st.running.0, st.running.1.as_str()), ("False", "Error"));
    assert!(st.running.2.contains("got 404"), "{}", st.running.2);
    let done = pod(json!({"phase": "Succeeded"}));
    let (st, steps) = decide(&d, Some(&bound), true, Some(&done));
    assert_eq!(st.phase, "Succeeded");
    assert_eq!(steps, vec![Step::MarkPopulated, Step::DeletePod]);
    assert_eq!(st.ready.0, "True");
    // Populated: Succeeded for good, without a pod.
    let populated = pvc("Bound", json!({claim::ann::POD_PHASE: "Succeeded"}));
    let (st, steps) = decide(&d, Some(&populated), true, None);
    assert_eq!((st.phase, steps), ("Succeeded", vec![]));
    let lost = pvc("Lost", json!({}));
    assert_eq!(decide(&d, Some(&lost), true, None).0.phase, "Failed");
}

#[test]
fn space_errors_are_told_as_upstream_tells_them() {
    let d = dv(json!({"source": {"blank": {}}, "storage": {}}));
    let bound = pvc("Bound", json!({}));
    let failing = pod(
        json!({"phase": "Running", "containerStatuses": [{"name": "importer", "image": "i",
        "imageID": "", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "message": "Unable to process data: virtual image size 2 is larger than the reported available storage 1. A larger PVC is required"}}}]}),
    );
    let (st, _) = decide(&d, Some(&bound), true, Some(&failing));
    assert!(
        st.running.2.starts_with("DataVolume too small to contain image"),
        "{}",
        st.running.2
    );
}

#[test]
fn progress_is_read_from_the_importers_metrics() {
    let text = "# TYPE kubevirt_cdi_import_progress_total counter\n\
        kubevirt_cdi_import_progress_total{ownerUID=\"other\"} 3\n\
        kubevirt_cdi_import_progress_total{ownerUID=\"dv-uid\"} 45.123\n";
    assert_eq!(super::progress::parse(text, "dv-uid").as_deref(), Some("45.12%"));
    assert_eq!(super::progress::parse(text, "none"), None);
}

#[test]
fn the_importer_pod_is_upstreams() {
    let d = dv(
        json!({"source": {"http": {"url": "https://x/d.img", "certConfigMap": "ca",
        "secretRef": "creds", "extraHeaders": ["X-A: 1"]}}, "storage": {}}),
    );
    let c = pvc("Bound", json!({}));
    let p = super::decide::importer_pod(&d, &c, "img", "0.06");
    assert_eq!(p.metadata.name.as_deref(), Some("importer-disk"));
    let spec = p.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("OnFailure"));
    let c = &spec.containers[0];
    let env: std::collections::BTreeMap<_, _> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.clone()))
        .collect();
    assert_eq!(env["IMPORTER_SOURCE"].value.as_deref(), Some("http"));
    assert_eq!(env["IMPORTER_IMAGE_SIZE"].value.as_deref(), Some("1Gi"));
    assert_eq!(env["IMPORTER_CERT_DIR"].value.as_deref(), Some("/certs"));
    assert_eq!(env["IMPORTER_EXTRA_HEADER_0"].value.as_deref(), Some("X-A: 1"));
    let key = env["IMPORTER_ACCESS_KEY_ID"]
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((key.name.as_str(), key.key.as_str()), ("creds", "accessKeyId"));
    let mounts: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(mounts, ["/data", "/certs"]);
}
