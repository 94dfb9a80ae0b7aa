//! Typed names for the states KubeVirt objects move through — VMI phase, VM run strategy and printableStatus,
//! migration phase, condition types and reasons — and the helpers every status writer uses for conditions and
//! phase transitions, so no loop matches on phase strings or rebuilds a condition list by hand.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::v1::{
    VirtualMachine, VirtualMachineCondition, VirtualMachineInstance, VirtualMachineInstanceCondition,
    VirtualMachineInstanceMigration, VirtualMachineInstanceMigrationCondition,
    VirtualMachineInstancePhaseTransitionTimestamp, VirtualMachineInstanceStatus,
};

/// An enum of API strings: `as_str` gives the wire form, `parse` reads it back (`None` for anything else).
macro_rules! api_strings {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The string the API uses.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }

            /// The value the API string names.
            #[must_use]
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

api_strings! {
    /// `VirtualMachineInstance.status.phase`.
    VmiPhase {
        /// No phase written yet (a VMI just created).
        Unset = "",
        /// Accepted; the launcher pod is not created or not scheduled yet.
        Pending = "Pending",
        /// The launcher pod exists and waits for a node.
        Scheduling = "Scheduling",
        /// The launcher pod runs on a node; that node's handler starts the domain.
        Scheduled = "Scheduled",
        /// The domain runs.
        Running = "Running",
        /// The domain ended on the guest's own shutdown (final).
        Succeeded = "Succeeded",
        /// The domain or its pod failed (final).
        Failed = "Failed",
        /// A migration target waiting for its source.
        WaitingForSync = "WaitingForSync",
        /// The state cannot be determined.
        Unknown = "Unknown",
    }
}

impl VmiPhase {
    /// The VMI's phase; a phase string this code does not know reads as `Unknown`.
    #[must_use]
    pub fn of(vmi: &VirtualMachineInstance) -> Self {
        let s = vmi.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        Self::parse(s).unwrap_or(Self::Unknown)
    }

    /// Succeeded or Failed: nothing moves a VMI out of these.
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }

    /// Before a node owns the VMI (unset, Pending, Scheduling).
    #[must_use]
    pub const fn is_before_scheduled(self) -> bool {
        matches!(self, Self::Unset | Self::Pending | Self::Scheduling)
    }
}

/// Whether the object's `phase` string is Succeeded or Failed (the final phases of VMIs, pods and migrations).
#[must_use]
pub fn is_final_phase(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

api_strings! {
    /// `VirtualMachine.spec.runStrategy`.
    RunStrategy {
        /// Always a VMI: a finished one is replaced.
        Always = "Always",
        /// A VMI that failed is replaced; one that succeeded stays down.
        RerunOnFailure = "RerunOnFailure",
        /// Only start/stop requests act.
        Manual = "Manual",
        /// No VMI.
        Halted = "Halted",
        /// One VMI, never replaced.
        Once = "Once",
        /// A decentralized migration's receiver.
        WaitAsReceiver = "WaitAsReceiver",
    }
}

impl RunStrategy {
    /// The strategy a VM behaves by: `runStrategy`, else Always for `running: true`, else Halted. `None` for a
    /// strategy string this code does not know (admission refuses those).
    #[must_use]
    pub fn of(vm: &VirtualMachine) -> Option<Self> {
        Self::parse(crate::defaults::effective_run_strategy(&vm.spec))
    }
}

api_strings! {
    /// `VirtualMachine.status.printableStatus` (the STATUS column of `kubectl get vm`).
    PrintableStatus {
        /// No VMI (the default).
        Stopped = "Stopped",
        /// Its volumes are being provisioned.
        Provisioning = "Provisioning",
        /// The VMI is on its way to Running.
        Starting = "Starting",
        /// The VMI runs.
        Running = "Running",
        /// The VMI is paused.
        Paused = "Paused",
        /// The VMI is being stopped.
        Stopping = "Stopping",
        /// The VM is being deleted.
        Terminating = "Terminating",
        /// Starts keep failing; the next waits.
        CrashLoopBackOff = "CrashLoopBackOff",
        /// The VMI is migrating.
        Migrating = "Migrating",
        /// None of the above.
        Unknown = "Unknown",
        /// The launcher pod cannot be scheduled.
        ErrorUnschedulable = "ErrorUnschedulable",
        /// The launcher's image cannot be pulled.
        ErrImagePull = "ErrImagePull",
        /// Pulling the launcher's image backs off.
        ImagePullBackOff = "ImagePullBackOff",
        /// A PVC the VM uses does not exist.
        ErrorPvcNotFound = "ErrorPvcNotFound",
        /// A DataVolume the VM uses failed.
        DataVolumeError = "DataVolumeError",
        /// A PVC waits for its volume to bind.
        WaitingForVolumeBinding = "WaitingForVolumeBinding",
        /// A receiver VM waits for its migration.
        WaitingForReceiver = "WaitingForReceiver",
    }
}

api_strings! {
    /// `VirtualMachineInstanceMigration.status.phase`.
    MigrationPhase {
        /// No phase written yet.
        Unset = "",
        /// Accepted.
        Pending = "Pending",
        /// Waiting for a decentralized source or target.
        WaitingForSync = "WaitingForSync",
        /// The target pod waits for a node.
        Scheduling = "Scheduling",
        /// The target pod runs on a node.
        Scheduled = "Scheduled",
        /// The target is being prepared.
        PreparingTarget = "PreparingTarget",
        /// The target is ready to receive.
        TargetReady = "TargetReady",
        /// Memory is being copied.
        Running = "Running",
        /// Done (final).
        Succeeded = "Succeeded",
        /// Failed (final).
        Failed = "Failed",
    }
}

impl MigrationPhase {
    /// The migration's phase; an unknown string reads as Pending's predecessor, `Unset`.
    #[must_use]
    pub fn of(m: &VirtualMachineInstanceMigration) -> Self {
        let s = m.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        Self::parse(s).unwrap_or(Self::Unset)
    }

    /// Succeeded or Failed.
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

api_strings! {
    /// Condition types of VMs, VMIs and migrations (those this code writes or reads).
    ConditionType {
        /// The guest is up (VMI: its domain runs; VM: mirrors its VMI's).
        Ready = "Ready",
        /// The VMI is paused.
        Paused = "Paused",
        /// Copied from the launcher pod's PodScheduled.
        PodScheduled = "PodScheduled",
        /// Whether the handler could apply the VMI to its domain.
        Synchronized = "Synchronized",
        /// A VM's controller could not act on it.
        Failure = "Failure",
        /// The guest agent answers.
        AgentConnected = "AgentConnected",
        /// The agent-propagated access credentials are applied.
        AccessCredentialsSynchronized = "AccessCredentialsSynchronized",
        /// The VMI can be live-migrated.
        LiveMigratable = "LiveMigratable",
        /// The VM's spec changed in a way only a restart applies.
        RestartRequired = "RestartRequired",
        /// Every DataVolume of the VMI is ready.
        DataVolumesReady = "DataVolumesReady",
        /// The VMI's WaitForFirstConsumer volumes are being provisioned (a placeholder pod is scheduled).
        Provisioning = "Provisioning",
    }
}

/// Condition reasons this code writes (upstream's strings).
pub mod reason {
    /// VM Ready=False while it has no VMI.
    pub const VMI_NOT_EXISTS: &str = "VMINotExists";
    /// VMI Ready=False once its domain ended.
    pub const POD_TERMINATING: &str = "PodTerminating";
    /// VMI Paused=True after a pause request.
    pub const PAUSED_BY_USER: &str = "PausedByUser";
    /// VMI Failed: its launcher pod failed.
    pub const POD_FAILED: &str = "PodFailed";
    /// VMI Failed: its launcher pod is gone.
    pub const POD_NOT_EXISTS: &str = "PodNotExists";
    /// VM Failure: creating the VMI failed.
    pub const FAILED_CREATE: &str = "FailedCreate";
    /// VMI Synchronized=False: the domain could not be defined or started.
    pub const SYNC_FAILED: &str = "Synchronizing with the Domain failed.";
    /// Image pull trouble of the launcher pod, mirrored in Synchronized=False.
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    /// See [`ERR_IMAGE_PULL`].
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    /// PodScheduled=False of a pod no node fits.
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// DataVolumesReady=True.
    pub const ALL_DVS_READY: &str = "AllDVsReady";
    /// DataVolumesReady=False.
    pub const NOT_ALL_DVS_READY: &str = "NotAllDVsReady";
    /// Synchronized=False: a claim the VMI names does not exist.
    pub const FAILED_PVC_NOT_FOUND: &str = "FailedPvcNotFound";
}

/// The fields every KubeVirt condition type shares.
pub trait Condition: Clone {
    /// A condition of `kind` with `status` ("True"/"False"/"Unknown") and nothing else set.
    fn new(kind: ConditionType, status: &str) -> Self;
    /// `type`.
    fn kind(&self) -> &str;
    /// `status`.
    fn status(&self) -> &str;
    /// `reason`.
    fn reason(&self) -> Option<&str>;
    /// `message`.
    fn message(&self) -> Option<&str>;
    /// `lastTransitionTime`.
    fn transition_time(&self) -> Option<&Time>;
    /// Sets `lastTransitionTime`.
    fn set_transition_time(&mut self, at: Option<Time>);
    /// Sets `reason`.
    fn set_reason(&mut self, reason: Option<String>);
    /// Sets `message`.
    fn set_message(&mut self, message: Option<String>);

    /// With `reason` set.
    #[must_use]
    fn with_reason(mut self, reason: &str) -> Self {
        self.set_reason(Some(reason.to_string()));
        self
    }

    /// With `message` set.
    #[must_use]
    fn with_message(mut self, message: &str) -> Self {
        self.set_message(Some(message.to_string()));
        self
    }
}

macro_rules! condition_impl {
    ($t:ty) => {
        impl Condition for $t {
            fn new(kind: ConditionType, status: &str) -> Self {
                Self {
                    r#type: kind.as_str().to_string(),
                    status: status.to_string(),
                    ..Self::default()
                }
            }
            fn kind(&self) -> &str {
                &self.r#type
            }
            fn status(&self) -> &str {
                &self.status
            }
            fn reason(&self) -> Option<&str> {
                self.reason.as_deref()
            }
            fn message(&self) -> Option<&str> {
                self.message.as_deref()
            }
            fn transition_time(&self) -> Option<&Time> {
                self.last_transition_time.as_ref()
            }
            fn set_transition_time(&mut self, at: Option<Time>) {
                self.last_transition_time = at;
            }
            fn set_reason(&mut self, reason: Option<String>) {
                self.reason = reason;
            }
            fn set_message(&mut self, message: Option<String>) {
                self.message = message;
            }
        }
    };
}

condition_impl!(VirtualMachineCondition);
condition_impl!(VirtualMachineInstanceCondition);
condition_impl!(VirtualMachineInstanceMigrationCondition);

/// The condition of `kind` in `list`.
#[must_use]
pub fn find<C: Condition>(list: Option<&[C]>, kind: ConditionType) -> Option<&C> {
    list?.iter().find(|c| c.kind() == kind.as_str())
}

/// Whether the condition of `kind` in `list` has status True.
#[must_use]
pub fn is_true<C: Condition>(list: Option<&[C]>, kind: ConditionType) -> bool {
    find(list, kind).is_some_and(|c| c.status() == "True")
}

/// Puts `cond` in `list` in place of any of its type. Its `lastTransitionTime` is kept from the one it replaces when
/// the status stays the same, else it is `now` (unless `cond` brings its own).
pub fn set<C: Condition>(list: &mut Vec<C>, mut cond: C, now: &Time) {
    let old = list.iter().position(|c| c.kind() == cond.kind());
    if cond.transition_time().is_none() {
        let kept = old
            .map(|i| &list[i])
            .filter(|o| o.status() == cond.status())
            .and_then(|o| o.transition_time().cloned());
        cond.set_transition_time(Some(kept.unwrap_or_else(|| now.clone())));
    }
    match old {
        Some(i) => list[i] = cond,
        None => list.push(cond),
    }
}

/// Removes the condition of `kind` from `list`; whether there was one.
pub fn remove<C: Condition>(list: &mut Vec<C>, kind: ConditionType) -> bool {
    let before = list.len();
    list.retain(|c| c.kind() != kind.as_str());
    list.len() != before
}

/// Moves `status` to phase `to` at `now`, recording the transition in `phaseTransitionTimestamps`.
pub fn enter_phase(status: &mut VirtualMachineInstanceStatus, to: VmiPhase, now: &Time) {
    status.phase = Some(to.as_str().to_string());
    status
        .phase_transition_timestamps
        .get_or_insert_with(Vec::new)
        .push(VirtualMachineInstancePhaseTransitionTimestamp {
            phase: Some(to.as_str().to_string()),
            phase_transition_timestamp: Some(now.clone()),
        });
}

/// Whether the VMI was ever Running (now, or by its recorded transitions).
#[must_use]
pub fn reached_running(vmi: &VirtualMachineInstance) -> bool {
    VmiPhase::of(vmi) == VmiPhase::Running
        || vmi.status.as_ref().is_some_and(|s| {
            s.phase_transition_timestamps
                .iter()
                .flatten()
                .any(|t| t.phase.as_deref() == Some(VmiPhase::Running.as_str()))
        })
}

/// `now` at whole seconds (the precision `metav1.Time` serialises with).
#[must_use]
pub fn now_seconds() -> Time {
    let t = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(t.as_second()).unwrap_or(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn strings_round_trip() {
        for p in VmiPhase::ALL {
            assert_eq!(VmiPhase::parse(p.as_str()), Some(*p));
        }
        for s in RunStrategy::ALL {
            assert_eq!(RunStrategy::parse(&s.to_string()), Some(*s));
        }
        for s in PrintableStatus::ALL {
            assert_eq!(PrintableStatus::parse(s.as_str()), Some(*s));
        }
        for p in MigrationPhase::ALL {
            assert_eq!(MigrationPhase::parse(p.as_str()), Some(*p));
        }
        assert_eq!(VmiPhase::parse("Runing"), None);
        let mut vmi = VirtualMachineInstance::default();
        assert_eq!(VmiPhase::of(&vmi), VmiPhase::Unset);
        vmi.status = Some(crate::v1::VirtualMachineInstanceStatus {
            phase: Some("Bogus".into()),
            ..Default::default()
        });
        assert_eq!(VmiPhase::of(&vmi), VmiPhase::Unknown);
    }

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_stays() {
        let mut list: Vec<VirtualMachineInstanceCondition> = Vec::new();
        set(&mut list, Condition::new(ConditionType::Ready, "False"), &at(10));
        set(
            &mut list,
            VirtualMachineInstanceCondition::new(ConditionType::Ready, "False").with_reason("X"),
            &at(20),
        );
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].transition_time(), Some(&at(10)));
        assert_eq!(list[0].reason(), Some("X"));
        set(&mut list, Condition::new(ConditionType::Ready, "True"), &at(30));
        assert_eq!(list[0].transition_time(), Some(&at(30)));
        assert!(is_true(Some(&list), ConditionType::Ready));
        set(&mut list, Condition::new(ConditionType::Paused, "True"), &at(40));
        assert_eq!(list.len(), 2);
        assert!(remove(&mut list, ConditionType::Paused));
        assert!(!remove(&mut list, ConditionType::Paused));
        assert!(find(Some(&list), ConditionType::Paused).is_none());
    }

    #[test]
    fn transitions_append() {
        let mut st = VirtualMachineInstanceStatus::default();
        enter_phase(&mut st, VmiPhase::Scheduling, &at(1));
        enter_phase(&mut st, VmiPhase::Running, &at(2));
        let two = st.phase_transition_timestamps.clone().unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].phase.as_deref(), Some("Running"));
        assert_eq!(st.phase.as_deref(), Some("Running"));
        st.phase = Some("Failed".into());
        let vmi = VirtualMachineInstance {
            status: Some(st),
            ..Default::default()
        };
        assert!(reached_running(&vmi));
    }
}
