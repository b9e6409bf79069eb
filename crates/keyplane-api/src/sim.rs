//! Simulated instances as RunInstances creates them, the same for both dialects.

use keyplane_core::binding::Binding;
use keyplane_core::model::{Image, Instance, InstanceStatus, KeyPair, OsType, Provider, Tag};
use keyplane_core::{ids, CoreError};

/// What a RunInstances call asks for, once each dialect has parsed its own parameter names.
pub struct Launch<'a> {
    pub account_id: &'a str,
    pub region_id: &'a str,
    pub zone_id: &'a str,
    pub image: &'static Image,
    pub instance_type: &'a str,
    pub amount: usize,
    pub name: Option<&'a str>,
    pub host_name: Option<&'a str>,
    pub description: &'a str,
    pub key_pair: Option<&'a KeyPair>,
    pub has_password: bool,
    pub io_optimized: bool,
    pub tags: Vec<Tag>,
}

/// Builds the instances, Running, with a key pair given at creation already in effect (it is
/// applied at the first boot).
pub fn build(l: &Launch<'_>) -> Result<Vec<Instance>, CoreError> {
    if l.key_pair.is_some() && l.image.os_type == OsType::Windows {
        return Err(CoreError::invalid(
            "KeyPairName",
            "Windows instances cannot use an SSH key pair.",
        ));
    }
    let now = keyplane_core::model::now();
    Ok((0..l.amount)
        .map(|_| {
            let id = ids::new_instance_id();
            let mut binding = Binding::default();
            if let Some(kp) = l.key_pair {
                binding.bind(&kp.id);
            }
            binding.boot();
            Instance {
                name: l.name.unwrap_or(&id).to_string(),
                host_name: l.host_name.unwrap_or(&id).to_string(),
                description: l.description.to_string(),
                id,
                account_id: l.account_id.to_string(),
                region_id: l.region_id.to_string(),
                zone_id: l.zone_id.to_string(),
                image_id: l.image.id.to_string(),
                instance_type: l.instance_type.to_string(),
                os_type: l.image.os_type,
                os_name: l.image.os_name.to_string(),
                status: InstanceStatus::Running,
                io_optimized: l.io_optimized,
                agent_installed: l.image.agent_installed,
                login_user: match l.image.os_type {
                    OsType::Windows => "Administrator",
                    OsType::Linux => "root",
                }
                .to_string(),
                provider: Provider::Sim,
                has_password: l.has_password,
                created_at: now,
                started_at: Some(now),
                key_pair_name: l.key_pair.map(|k| k.name.clone()),
                binding,
                tags: l.tags.clone(),
            }
        })
        .collect())
}

/// When a transition started now completes, or None for at once.
pub fn done_at(delay: std::time::Duration) -> Option<chrono::DateTime<chrono::Utc>> {
    (!delay.is_zero())
        .then(|| chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default())
}
