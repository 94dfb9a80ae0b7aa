//! Admission of one object the way the API server + KubeVirt's webhooks do it: defaults, then validation, against
//! what the cluster already holds (instancetypes, preferences, presets, VMIs, migrations, the KubeVirt CR, and the
//! volumes `inferFromVolume` reads).
//!
//! `kvbox admit` and the embedded API server both go through [`Cluster::admit`].

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, Time};
use serde_json::Value;

use crate::config::ClusterConfig;
use crate::defaults::{self, Env};
use crate::object::Object;
use crate::v1::{VirtualMachineInstance, VirtualMachineInstanceMigration, VirtualMachineInstancePreset};
use crate::v1beta1::{VirtualMachineInstancetypeSpec, VirtualMachinePreferenceSpec};
use crate::validate;

/// The result of admitting one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Accepted; the object as it would be stored, plus warnings for the client.
    Admitted {
        /// The defaulted object.
        object: Value,
        /// Admission warnings (deprecations, ignored lookups).
        warnings: Vec<String>,
    },
    /// Refused with field-level causes (HTTP 422).
    Invalid(Vec<StatusCause>),
    /// Refused without causes (HTTP 400), such as a migration of a VMI that does not exist.
    BadRequest(String),
}

type Key = (String, String);

/// What admission can see of the cluster.
#[derive(Debug, Default, Clone)]
pub struct Cluster {
    /// Cluster configuration (from the KubeVirt CR).
    pub config: ClusterConfig,
    instancetypes: BTreeMap<Key, VirtualMachineInstancetypeSpec>,
    cluster_instancetypes: BTreeMap<String, VirtualMachineInstancetypeSpec>,
    preferences: BTreeMap<Key, VirtualMachinePreferenceSpec>,
    cluster_preferences: BTreeMap<String, VirtualMachinePreferenceSpec>,
    presets: Vec<VirtualMachineInstancePreset>,
    vmis: BTreeMap<Key, VirtualMachineInstance>,
    migrations: Vec<VirtualMachineInstanceMigration>,
    volumes: crate::infer::Volumes,
}

fn ns(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (ns(meta), meta.name.clone().unwrap_or_default())
}

impl Cluster {
    /// Records an object that already exists (or was just admitted) so later objects can refer to it.
    pub fn record(&mut self, obj: &Object) {
        match obj {
            Object::Instancetype(o) => {
                self.instancetypes.insert(key(&o.metadata), o.spec.clone());
            }
            Object::ClusterInstancetype(o) => {
                self.cluster_instancetypes
                    .insert(o.metadata.name.clone().unwrap_or_default(), o.spec.clone());
            }
            Object::Preference(o) => {
                self.preferences.insert(key(&o.metadata), o.spec.clone());
            }
            Object::ClusterPreference(o) => {
                self.cluster_preferences
                    .insert(o.metadata.name.clone().unwrap_or_default(), o.spec.clone());
            }
            Object::Preset(o) => self.presets.push((**o).clone()),
            Object::Vmi(o) => {
                self.vmis.insert(key(&o.metadata), (**o).clone());
            }
            Object::Migration(o) => self.migrations.push((**o).clone()),
            Object::KubeVirt(o) => self.config = ClusterConfig::from_kubevirt(Some(o)),
            _ => {}
        }
    }

    /// Records a PVC, DataVolume, DataSource or VolumeSnapshot (what `inferFromVolume` reads); other kinds are
    /// ignored.
    pub fn record_volume(&mut self, obj: &Value) {
        self.volumes.record(obj);
    }

    fn instancetype(
        &self,
        namespace: &str,
        kind: Option<&str>,
        name: &str,
    ) -> Option<&VirtualMachineInstancetypeSpec> {
        match kind.map(str::to_ascii_lowercase).as_deref() {
            Some("virtualmachineinstancetype" | "virtualmachineinstancetypes") => {
                self.instancetypes.get(&(namespace.to_string(), name.to_string()))
            }
            _ => self.cluster_instancetypes.get(name),
        }
    }

    fn preference(
        &self,
        namespace: &str,
        kind: Option<&str>,
        name: &str,
    ) -> Option<&VirtualMachinePreferenceSpec> {
        match kind.map(str::to_ascii_lowercase).as_deref() {
            Some("virtualmachinepreference" | "virtualmachinepreferences") => {
                self.preferences.get(&(namespace.to_string(), name.to_string()))
            }
            _ => self.cluster_preferences.get(name),
        }
    }

    /// Defaults and validates `obj` as a create; on success the object is recorded as existing.
    ///
    pub fn admit(&mut self, obj: Object, now: Time, new_uuid: &mut dyn FnMut() -> String) -> Outcome {
        let mut warnings = Vec::new();
        let config = self.config.clone();
        let env = &mut Env {
            config: &config,
            now,
            new_uuid,
        };
        let (obj, causes) = match obj {
            Object::Vmi(vmi) => match self.vmi(vmi, env, &mut warnings) {
                Ok(done) => done,
                Err(refused) => return refused,
            },
            Object::Vm(vm) => match self.vm(vm, &config, &mut warnings) {
                Ok(done) => done,
                Err(refused) => return refused,
            },
            Object::ReplicaSet(rs) => {
                let causes = validate::replicaset(&rs, &config);
                (Object::ReplicaSet(rs), causes)
            }
            Object::Pool(p) => {
                let causes = validate::pool(&p, &config);
                (Object::Pool(p), causes)
            }
            Object::Migration(mut m) => {
                defaults::default_migration(&mut m);
                let name = m.spec.vmi_name.clone().unwrap_or_default();
                let vmi = self.vmis.get(&(ns(&m.metadata), name));
                match validate::migration_create(&m, &config, vmi, &self.migrations) {
                    Ok(causes) => (Object::Migration(m), causes),
                    Err(msg) => return Outcome::BadRequest(msg),
                }
            }
            Object::Instancetype(o) => {
                let causes = validate::instancetype(&o.spec);
                (Object::Instancetype(o), causes)
            }
            Object::ClusterInstancetype(o) => {
                let causes = validate::instancetype(&o.spec);
                (Object::ClusterInstancetype(o), causes)
            }
            Object::Preference(o) => {
                let causes = validate::preference(&o.spec);
                (Object::Preference(o), causes)
            }
            Object::ClusterPreference(o) => {
                let causes = validate::preference(&o.spec);
                (Object::ClusterPreference(o), causes)
            }
            Object::MigrationPolicy(o) => {
                let causes = validate::migration_policy(&o, &config);
                (Object::MigrationPolicy(o), causes)
            }
            Object::DataVolume(o) => {
                let causes = validate::datavolume(&o);
                (Object::DataVolume(o), causes)
            }
            Object::Preset(o) => {
                warnings.push(defaults::preset::DEPRECATION_WARNING.to_string());
                (Object::Preset(o), Vec::new())
            }
            other => (other, Vec::new()),
        };
        if !causes.is_empty() {
            return Outcome::Invalid(causes);
        }
        match obj.to_value() {
            Ok(object) => {
                self.record(&obj);
                Outcome::Admitted { object, warnings }
            }
            Err(e) => Outcome::BadRequest(e.to_string()),
        }
    }

    /// A new VMI: its presets, then its defaults, then validation.
    fn vmi(
        &self,
        mut vmi: Box<crate::v1::VirtualMachineInstance>,
        env: &mut Env<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<(Object, Vec<StatusCause>), Outcome> {
        match defaults::apply_presets(&mut vmi, &self.presets) {
            Ok(o) => warnings.extend(o.warnings),
            Err(e) => return Err(Outcome::Invalid(vec![bare_cause(e.to_string())])),
        }
        if let Err(e) = defaults::vmi::default_vmi(&mut vmi, env) {
            return Err(Outcome::BadRequest(e.to_string()));
        }
        let causes = validate::vmi_create(&vmi, env.config);
        Ok((Object::Vmi(vmi), causes))
    }

    /// A new VM: its instancetype and preference inferred and looked up (a missing one is a warning, as upstream),
    /// its defaults, then validation against them.
    fn vm(
        &self,
        mut vm: Box<crate::v1::VirtualMachine>,
        config: &ClusterConfig,
        warnings: &mut Vec<String>,
    ) -> Result<(Object, Vec<StatusCause>), Outcome> {
        if vm.spec.running.is_some() {
            warnings.push("spec.running is deprecated, please use spec.runStrategy instead.".to_string());
        }
        let causes = crate::infer::validate_matchers(&vm);
        if !causes.is_empty() {
            return Err(Outcome::Invalid(causes));
        }
        crate::infer::infer(&mut vm, &self.volumes).map_err(Outcome::BadRequest)?;
        let namespace = ns(&vm.metadata);
        let it = vm.spec.instancetype.as_ref().and_then(|m| {
            let name = m.name.as_deref()?;
            let found = self.instancetype(&namespace, m.kind.as_deref(), name);
            if found.is_none() {
                warnings.push(format!(
                    "ignoring err \"instancetype {name:?} not found\" when looking for instance type"
                ));
            }
            found
        });
        let pref = vm.spec.preference.as_ref().and_then(|m| {
            let name = m.name.as_deref()?;
            let found = self.preference(&namespace, m.kind.as_deref(), name);
            if found.is_none() {
                warnings.push(format!(
                    "ignoring err \"preference {name:?} not found\" when looking for preference"
                ));
            }
            found
        });
        defaults::default_vm(&mut vm, config, pref);
        let mut causes = Vec::new();
        if it.is_some() || pref.is_some() {
            causes = validate::vm_instancetype(&vm, it, pref);
        }
        if causes.is_empty() {
            causes = validate::vm(&vm, config, true);
        }
        Ok((Object::Vm(vm), causes))
    }
}

fn bare_cause(message: String) -> StatusCause {
    StatusCause {
        field: None,
        message: Some(message),
        reason: None,
    }
}
