"""The Python `kubernetes` client against kvbox server: CRUD and watch on a custom resource and on pods."""
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def main(kubeconfig: str) -> None:
    config.load_kube_config(config_file=kubeconfig)
    assert client.VersionApi().get_code().minor == "32"

    # Pods through the typed core API.
    core = client.CoreV1Api()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "py-pod", "labels": {"app": "py"}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    created = core.create_namespaced_pod("default", pod)
    assert created.metadata.uid
    pods = core.list_namespaced_pod("default", label_selector="app=py")
    assert [p.metadata.name for p in pods.items] == ["py-pod"]
    core.patch_namespaced_pod("py-pod", "default", {"metadata": {"labels": {"extra": "yes"}}})
    assert core.read_namespaced_pod("py-pod", "default").metadata.labels["extra"] == "yes"

    events = []
    w = watch.Watch()
    listed = threading.Event()

    def watch_pods():
        for ev in w.stream(core.list_namespaced_pod, "default", timeout_seconds=20):
            events.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "ADDED":
                listed.set()
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watch_pods)
    t.start()
    assert listed.wait(20), "the watch never delivered the existing pod"
    core.delete_namespaced_pod("py-pod", "default", grace_period_seconds=0, propagation_policy="Foreground")
    t.join(20)
    assert ("ADDED", "py-pod") in events and ("DELETED", "py-pod") in events, events

    # A KubeVirt custom resource through CustomObjectsApi.
    co = client.CustomObjectsApi()
    vm = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "py-vm"},
          "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}, "memory": {"guest": "64Mi"}}}}}}
    got = co.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", vm)
    assert got["spec"]["template"]["spec"]["domain"]["machine"]["type"] == "q35"
    co.patch_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", "py-vm",
                                      {"spec": {"runStrategy": "Manual"}})
    vms = co.list_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines")
    assert [v["spec"]["runStrategy"] for v in vms["items"]] == ["Manual"]
    rv = vms["metadata"]["resourceVersion"]

    seen = []
    w2 = watch.Watch()

    def watch_vms():
        for ev in w2.stream(co.list_namespaced_custom_object, "kubevirt.io", "v1", "default", "virtualmachines",
                            resource_version=rv, timeout_seconds=20):
            seen.append(ev["type"])
            if ev["type"] == "DELETED":
                w2.stop()

    t2 = threading.Thread(target=watch_vms)
    t2.start()
    co.delete_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", "py-vm")
    t2.join(20)
    # The VM controller may still be writing the VM's status: MODIFIED events may precede the deletion.
    assert seen and seen[-1] == "DELETED" and set(seen[:-1]) <= {"MODIFIED"}, seen

    try:
        co.get_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", "py-vm")
        raise AssertionError("deleted VM still readable")
    except ApiException as e:
        assert e.status == 404

    bad = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "bad"},
           "spec": {"template": {"spec": {"domain": {"devices": {}}}}}}
    try:
        co.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", bad)
        raise AssertionError("a VM without runStrategy was accepted")
    except ApiException as e:
        assert e.status == 422 and "RunStrategy must be specified" in e.body, e.body
    print("python client: ok")


if __name__ == "__main__":
    main(sys.argv[1])
