//! The VM's network sync: hot-plug, link states, unplug and the clean-up after it.

#![allow(clippy::unwrap_used)]

use kubevirt_api::v1::{VirtualMachine, VirtualMachineInstance};
use serde_json::{Value, json};

use super::{template_interfaces, vmi_interfaces};

fn vm(ifaces: Value, nets: Value) -> VirtualMachine {
    serde_json::from_value(
        json!({"metadata": {"name": "vm"}, "spec": {"runStrategy": "Always",
        "template": {"spec": {"domain": {"devices": {"interfaces": ifaces}}, "networks": nets}}}}),
    )
    .unwrap()
}

fn vmi(ifaces: Value, nets: Value, reported: &[&str]) -> VirtualMachineInstance {
    let status: Vec<Value> = reported.iter().map(|n| json!({"name": n})).collect();
    serde_json::from_value(json!({"metadata": {"name": "vm"},
        "spec": {"domain": {"devices": {"interfaces": ifaces}}, "networks": nets},
        "status": {"interfaces": status}}))
    .unwrap()
}

fn names(list: &[impl serde::Serialize]) -> Vec<String> {
    list.iter()
        .map(|x| {
            let v = serde_json::to_value(x).unwrap();
            let state = v["state"].as_str().map(|s| format!(":{s}")).unwrap_or_default();
            format!("{}{state}", v["name"].as_str().unwrap())
        })
        .collect()
}

const POD: &str = r#"{"name": "default", "pod": {}}"#;

fn pod() -> Value {
    serde_json::from_str(POD).unwrap()
}

#[test]
fn a_bridge_interface_added_to_the_template_is_hot_plugged_with_its_network() {
    let running = vmi(
        json!([{"name": "default", "masquerade": {}}]),
        json!([pod()]),
        &["default"],
    );
    let t = vm(
        json!([{"name": "default", "masquerade": {}}, {"name": "sec", "bridge": {}}, {"name": "m", "masquerade": {}}]),
        json!([pod(), {"name": "sec", "multus": {"networkName": "nad"}}, {"name": "m", "multus": {"networkName": "x"}}]),
    );
    let (ifaces, nets) = vmi_interfaces(&t, &running).unwrap();
    assert_eq!(
        names(&ifaces),
        ["default", "sec"],
        "only bridge interfaces are hot-plugged"
    );
    assert_eq!(names(&nets), ["default", "sec"]);
}

#[test]
fn link_states_follow_the_template_and_an_unplugged_interface_goes_once_unreported() {
    let both = json!([{"name": "default", "masquerade": {}}, {"name": "sec", "bridge": {}}]);
    let nets = json!([pod(), {"name": "sec", "multus": {"networkName": "nad"}}]);
    let running = vmi(both.clone(), nets.clone(), &["default", "sec"]);
    assert_eq!(vmi_interfaces(&vm(both.clone(), nets.clone()), &running), None);
    let down = vm(
        json!([{"name": "default", "masquerade": {}, "state": "down"}, {"name": "sec", "bridge": {}, "state": "absent"}]),
        nets.clone(),
    );
    let (ifaces, _) = vmi_interfaces(&down, &running).unwrap();
    assert_eq!(names(&ifaces), ["default:down", "sec:absent"]);
    // The node agent unplugged it (no status entry): the spec lets it go, then the template.
    let unplugged = vmi(serde_json::to_value(&ifaces).unwrap(), nets.clone(), &["default"]);
    let (ifaces, nets_left) = vmi_interfaces(&down, &unplugged).unwrap();
    assert_eq!(
        (names(&ifaces), names(&nets_left)),
        (vec!["default:down".to_string()], vec!["default".to_string()])
    );
    assert_eq!(
        template_interfaces(&down, Some(&unplugged)),
        None,
        "still in the VMI's spec"
    );
    let gone = vmi(
        serde_json::to_value(&ifaces).unwrap(),
        serde_json::to_value(&nets_left).unwrap(),
        &["default"],
    );
    let (t_ifaces, t_nets) = template_interfaces(&down, Some(&gone)).unwrap();
    assert_eq!(
        (names(&t_ifaces), names(&t_nets)),
        (vec!["default:down".to_string()], vec!["default".to_string()])
    );
    // An unplugged interface is never plugged back by a later state.
    let back = vm(both, nets);
    let (ifaces, _) = vmi_interfaces(
        &back,
        &vmi(
            json!([{"name": "default", "masquerade": {}}, {"name": "sec", "bridge": {}, "state": "absent"}]),
            json!([pod(), {"name": "sec", "multus": {"networkName": "nad"}}]),
            &["default", "sec"],
        ),
    )
    .map_or((Vec::new(), Vec::new()), |x| x);
    assert!(ifaces.is_empty(), "nothing changes: {ifaces:?}");
}
