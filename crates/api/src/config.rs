//! The cluster configuration admission reads: the KubeVirt CR's `spec.configuration` over upstream's defaults.

use crate::v1::{KubeVirt, KubeVirtConfiguration};

/// Upstream's GA feature gates: always on, whatever the configuration says.
const GA: &[&str] = &[
    "AutoResourceLimitsGate",
    "BochsDisplayForEFIGuests",
    "CPUNodeDiscovery",
    "ClusterProfiler",
    "CommonInstancetypesDeploymentGate",
    "DisableCustomSELinuxPolicy",
    "DynamicPodInterfaceNaming",
    "EnableVirtioFsConfigVolumes",
    "ExpandDisks",
    "GPU",
    "HotplugNICs",
    "InstancetypeReferencePolicy",
    "LibvirtHooksServerAndClient",
    "LiveMigration",
    "LiveUpdateNADRef",
    "MigrationPriorityQueue",
    "NUMA",
    "NetworkBindingPlugins",
    "NonRoot",
    "PSA",
    "PanicDevices",
    "PersistentReservation",
    "SRIOVLiveMigration",
    "SecureExecution",
    "VMExport",
    "VMLiveUpdateFeatures",
    "VMPersistentState",
    "VideoConfig",
    "VmiMemoryOverheadReport",
    "VolumeMigration",
    "VolumesUpdateStrategy",
];

/// Upstream's Beta feature gates: on unless listed in `disabledFeatureGates`.
const BETA: &[&str] = &[
    "DecentralizedLiveMigration",
    "DeclarativeHotplugVolumes",
    "ExternalNetResourceInjection",
    "GPUsWithDRA",
    "HostDevicesWithDRA",
    "ImageVolume",
    "KubevirtSeccompProfile",
    "NodeRestriction",
    "OptOutRoleAggregation",
    "PasstBinding",
    "PodSecondaryInterfaceNamingUpgrade",
    "RebootPolicy",
    "Snapshot",
    "Template",
    "WorkloadEncryptionSEV",
];

/// Cluster-wide settings with upstream's defaults filled in.
#[derive(Clone, Debug, Default)]
pub struct ClusterConfig {
    cfg: KubeVirtConfiguration,
}

impl ClusterConfig {
    /// Reads the configuration of a KubeVirt CR (or upstream's defaults for `None`).
    #[must_use]
    pub fn from_kubevirt(kv: Option<&KubeVirt>) -> Self {
        Self {
            cfg: kv
                .and_then(|kv| kv.spec.configuration.clone())
                .unwrap_or_default(),
        }
    }

    /// Whether a feature gate is enabled, as upstream's `featuregate.IsEnabled`: GA gates always, listed gates,
    /// Beta gates unless disabled; Alpha, deprecated and discontinued gates only when listed.
    #[must_use]
    pub fn gate(&self, name: &str) -> bool {
        if GA.contains(&name) {
            return true;
        }
        let dev = self.cfg.developer_configuration.as_ref();
        let listed = |l: Option<&Vec<String>>| l.is_some_and(|l| l.iter().any(|g| g == name));
        if listed(dev.and_then(|d| d.feature_gates.as_ref())) {
            return true;
        }
        BETA.contains(&name) && !listed(dev.and_then(|d| d.disabled_feature_gates.as_ref()))
    }

    /// Whether SCSI persistent reservation is enabled: `persistentReservationConfiguration.enabled` when set, else
    /// whether the gate is listed (upstream's `PersistentReservationEnabled`, which ignores the gate's GA state).
    #[must_use]
    pub fn persistent_reservation(&self) -> bool {
        if let Some(enabled) = self
            .cfg
            .persistent_reservation_configuration
            .as_ref()
            .and_then(|p| p.enabled)
        {
            return enabled;
        }
        self.cfg
            .developer_configuration
            .as_ref()
            .and_then(|d| d.feature_gates.as_ref())
            .is_some_and(|g| g.iter().any(|g| g == "PersistentReservation"))
    }

    /// `developerConfiguration.useEmulation`.
    #[must_use]
    pub fn use_emulation(&self) -> bool {
        self.cfg
            .developer_configuration
            .as_ref()
            .and_then(|d| d.use_emulation)
            .unwrap_or(false)
    }

    /// The default architecture for new VMIs.
    #[must_use]
    pub fn default_architecture(&self) -> String {
        self.cfg
            .architecture_configuration
            .as_ref()
            .and_then(|a| a.default_architecture.clone())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "amd64".to_string())
    }

    fn arch_config(&self, arch: &str) -> Option<&crate::v1::ArchSpecificConfiguration> {
        let a = self.cfg.architecture_configuration.as_ref()?;
        match arch {
            "arm64" => a.arm64.as_ref(),
            "s390x" => a.s390x.as_ref(),
            _ => a.amd64.as_ref(),
        }
    }

    /// `permittedHostDevices.pciHostDevices` as resource name → PCI vendor selector (entries missing either are
    /// skipped, as upstream).
    #[must_use]
    pub fn permitted_pci_selectors(&self) -> std::collections::BTreeMap<&str, &str> {
        self.cfg
            .permitted_host_devices
            .as_ref()
            .and_then(|p| p.pci_host_devices.as_ref())
            .into_iter()
            .flatten()
            .filter(|d| !d.resource_name.is_empty() && !d.pci_vendor_selector.is_empty())
            .map(|d| (d.resource_name.as_str(), d.pci_vendor_selector.as_str()))
            .collect()
    }

    /// `instancetype.referencePolicy`: `reference` (the default), `expand` or `expandAll`.
    #[must_use]
    pub fn instancetype_reference_policy(&self) -> String {
        self.cfg
            .instancetype
            .as_ref()
            .and_then(|i| i.reference_policy.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "reference".to_string())
    }

    /// Machine type for `arch` (`q35` on amd64).
    #[must_use]
    pub fn machine_type(&self, arch: &str) -> String {
        if let Some(m) = self.cfg.machine_type.as_ref().filter(|m| !m.is_empty()) {
            return m.clone();
        }
        if let Some(m) = self
            .arch_config(arch)
            .and_then(|c| c.machine_type.clone())
            .filter(|m| !m.is_empty())
        {
            return m;
        }
        match arch {
            "arm64" => "virt",
            "s390x" => "s390-ccw-virtio",
            _ => "q35",
        }
        .to_string()
    }

    /// Allowed machine-type globs for `arch`.
    #[must_use]
    pub fn emulated_machines(&self, arch: &str) -> Vec<String> {
        if let Some(m) = self.cfg.emulated_machines.as_ref().filter(|m| !m.is_empty()) {
            return m.clone();
        }
        if let Some(m) = self
            .arch_config(arch)
            .and_then(|c| c.emulated_machines.clone())
            .filter(|m| !m.is_empty())
        {
            return m;
        }
        match arch {
            "arm64" => vec!["virt*".to_string()],
            "s390x" => vec!["s390-ccw-virtio*".to_string()],
            _ => vec!["q35*".to_string(), "pc-q35*".to_string()],
        }
    }

    /// `cpuModel`, empty when unset.
    #[must_use]
    pub fn cpu_model(&self) -> Option<&str> {
        self.cfg.cpu_model.as_deref().filter(|m| !m.is_empty())
    }

    /// `cpuRequest` when it differs from upstream's default 100m.
    #[must_use]
    pub fn custom_cpu_request(&self) -> Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
        self.cfg.cpu_request.as_ref().filter(|q| q.0 != "100m")
    }

    /// The cluster eviction strategy (`None` by default).
    #[must_use]
    pub fn eviction_strategy(&self) -> String {
        self.cfg
            .eviction_strategy
            .clone()
            .unwrap_or_else(|| "None".to_string())
    }

    /// The binding of the automatically added pod interface (`bridge` unless configured).
    #[must_use]
    pub fn default_network_interface(&self) -> String {
        self.cfg
            .network
            .as_ref()
            .and_then(|n| n.default_network_interface.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "bridge".to_string())
    }

    /// `network.permitBridgeInterfaceOnPodNetwork` (true by default).
    #[must_use]
    pub fn permit_bridge_on_pod_network(&self) -> bool {
        self.cfg
            .network
            .as_ref()
            .and_then(|n| n.permit_bridge_interface_on_pod_network)
            .unwrap_or(true)
    }

    /// Whether VM changes roll out live (`LiveUpdate`, the default) rather than staged.
    #[must_use]
    pub fn live_update(&self) -> bool {
        self.cfg
            .vm_rollout_strategy
            .as_deref()
            .is_none_or(|s| s == "LiveUpdate")
    }

    /// `liveUpdateConfiguration`: (maxHotplugRatio, maxCpuSockets, maxGuest).
    #[must_use]
    pub fn live_update_limits(
        &self,
    ) -> (
        i64,
        Option<i64>,
        Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    ) {
        match self.cfg.live_update_configuration.as_ref() {
            None => (4, None, None),
            Some(l) => (
                l.max_hotplug_ratio.filter(|r| *r > 0).unwrap_or(4),
                l.max_cpu_sockets,
                l.max_guest.as_ref(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(configuration: serde_json::Value) -> ClusterConfig {
        let kv: KubeVirt = serde_json::from_value(serde_json::json!({"metadata": {"name": "kubevirt"},
            "spec": {"configuration": configuration}}))
        .unwrap();
        ClusterConfig::from_kubevirt(Some(&kv))
    }

    #[test]
    fn gates_follow_their_maturity() {
        let c = config(serde_json::json!({"developerConfiguration": {
            "featureGates": ["HostDevices"], "disabledFeatureGates": ["NUMA", "Snapshot"]}}));
        assert!(c.gate("GPU"), "GA: always on");
        assert!(c.gate("NUMA"), "GA: disabling has no effect");
        assert!(c.gate("NodeRestriction"), "Beta: on by default");
        assert!(!c.gate("Snapshot"), "Beta: off when disabled");
        assert!(c.gate("HostDevices"), "Alpha: on when listed");
        assert!(!c.gate("Sidecar"), "Alpha: off otherwise");
        assert!(!ClusterConfig::default().gate("Macvtap"), "discontinued");
    }

    #[test]
    fn persistent_reservation_prefers_its_configuration() {
        let gate = serde_json::json!({"developerConfiguration": {"featureGates": ["PersistentReservation"]}});
        assert!(config(gate).persistent_reservation());
        assert!(!ClusterConfig::default().persistent_reservation());
        assert!(
            !config(
                serde_json::json!({"developerConfiguration": {"featureGates": ["PersistentReservation"]},
                "persistentReservationConfiguration": {"enabled": false}})
            )
            .persistent_reservation()
        );
    }
}
