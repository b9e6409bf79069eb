//! The binding state machine of SPEC section 13, and the per-instance attach/detach rules.
//!
//! `desired` is what the API asked for, `effective` what the instance last confirmed (at boot for
//! `sim` instances). The state shown to people is derived from the two, never set by hand.
//!
//! A password reset is part of the binding: it raises the desired password version, which the
//! next boot (or the agent's apply) makes effective, and it turns password login on even while a
//! key pair stays bound. A later attach turns it off again; a detach turns it on.

use crate::model::{Instance, InstanceStatus, OsType};
use crate::{CoreError, InstanceFailure};

/// What people see of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingState {
    None,
    PendingRestart,
    Applied,
    Failed,
    Drifted,
}

impl BindingState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::PendingRestart => "pending_restart",
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::Drifted => "drifted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::None,
            Self::PendingRestart,
            Self::Applied,
            Self::Failed,
            Self::Drifted,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// One instance's desired and effective binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub desired_key_pair_id: Option<String>,
    pub desired_password_login: bool,
    pub effective_key_pair_id: Option<String>,
    pub effective_password_login: bool,
    /// Raised by every password reset; 0 when the password was never reset (none, or the one the
    /// instance was created with).
    pub desired_password_version: i64,
    pub effective_password_version: i64,
    pub state: BindingState,
    pub error: Option<String>,
}

impl Default for Binding {
    fn default() -> Self {
        Self {
            desired_key_pair_id: None,
            desired_password_login: true,
            effective_key_pair_id: None,
            effective_password_login: true,
            desired_password_version: 0,
            effective_password_version: 0,
            state: BindingState::None,
            error: None,
        }
    }
}

impl Binding {
    /// Binds a key pair (replacing any other): password login goes off with it.
    pub fn bind(&mut self, key_pair_id: &str) {
        self.desired_key_pair_id = Some(key_pair_id.to_string());
        self.desired_password_login = false;
        self.derive();
    }

    /// Unbinds: password login comes back.
    pub fn unbind(&mut self) {
        self.desired_key_pair_id = None;
        self.desired_password_login = true;
        self.derive();
    }

    /// A password reset: the new password and password login, at the next boot.
    pub fn reset_password(&mut self) {
        self.desired_password_version += 1;
        self.desired_password_login = true;
        self.derive();
    }

    /// A simulated boot: the instance takes on what is desired.
    pub fn boot(&mut self) {
        self.effective_key_pair_id = self.desired_key_pair_id.clone();
        self.effective_password_login = self.desired_password_login;
        self.effective_password_version = self.desired_password_version;
        self.error = None;
        self.derive();
    }

    /// A host's agent applied the desired state and reports what is now in effect (`key_pair_id`
    /// is the key pair whose key it found, or a placeholder for a key it does not know;
    /// `password_version` the reset whose hash it found in the shadow file, if it says), or why
    /// the apply failed.
    pub fn host_applied(
        &mut self,
        key_pair_id: Option<String>,
        password_login: bool,
        password_version: Option<i64>,
        error: Option<String>,
    ) {
        if let Some(e) = error {
            self.state = BindingState::Failed;
            self.error = Some(e);
            return;
        }
        self.effective_key_pair_id = key_pair_id;
        self.effective_password_login = password_login;
        if let Some(v) = password_version {
            self.effective_password_version = v;
        }
        self.error = None;
        self.derive();
    }

    /// A periodic check: anything other than what the last apply confirmed is drift.
    pub fn host_checked(&mut self, key_pair_id: Option<String>, password_login: bool) {
        let same = key_pair_id == self.effective_key_pair_id
            && password_login == self.effective_password_login;
        if !same {
            self.state = BindingState::Drifted;
            self.error = Some(format!(
                "the host has key {} and password login {} instead of what was applied",
                key_pair_id.as_deref().unwrap_or("none"),
                if password_login { "on" } else { "off" }
            ));
        } else if self.state == BindingState::Drifted {
            self.error = None;
            self.derive();
        }
    }

    fn derive(&mut self) {
        let in_effect = self.desired_key_pair_id == self.effective_key_pair_id
            && self.desired_password_login == self.effective_password_login
            && self.desired_password_version == self.effective_password_version;
        self.state = if !in_effect {
            BindingState::PendingRestart
        } else if self.desired_key_pair_id.is_none() && self.desired_password_version == 0 {
            BindingState::None
        } else {
            BindingState::Applied
        };
    }
}

/// Whether a key pair can be bound to (or unbound from) this instance.
pub fn check_bindable(instance: &Instance) -> Result<(), InstanceFailure> {
    if instance.os_type == OsType::Windows {
        return Err(InstanceFailure::Windows);
    }
    if !instance.io_optimized {
        return Err(InstanceFailure::NotIoOptimized);
    }
    if !instance.agent_installed {
        return Err(InstanceFailure::NoAgent);
    }
    match instance.status {
        InstanceStatus::Running | InstanceStatus::Stopped => Ok(()),
        _ => Err(InstanceFailure::IncorrectStatus),
    }
}

/// Whether the password can be reset now: both vendors refuse it in a transitional status
/// (Alibaba names Starting, Volcengine allows only Running and Stopped; keyplane takes the latter
/// for both). Windows is allowed: the reset sets the Administrator password.
pub fn check_resettable(instance: &Instance) -> Result<(), CoreError> {
    match instance.status {
        InstanceStatus::Running | InstanceStatus::Stopped => Ok(()),
        _ => Err(CoreError::IncorrectInstanceStatus),
    }
}

/// A power operation on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Start,
    Stop,
    Reboot,
}

/// The transitional status and the final status of `op` from `from`, or why it is not allowed.
pub fn transition(
    from: InstanceStatus,
    op: Power,
) -> Result<(InstanceStatus, InstanceStatus), CoreError> {
    use InstanceStatus::*;
    match (op, from) {
        (Power::Start, Stopped) => Ok((Starting, Running)),
        (Power::Stop, Running) => Ok((Stopping, Stopped)),
        (Power::Reboot, Running) => Ok((Rebooting, Running)),
        _ => Err(CoreError::IncorrectInstanceStatus),
    }
}

/// Parses a JSON array of instance IDs (`["i-a","i-b"]`), de-duplicated in first-seen order; the
/// cap is enforced while parsing (see [`crate::json_list`]).
pub fn parse_id_list(raw: &str, max: usize) -> Result<Vec<String>, CoreError> {
    use crate::json_list::{parse, ListError, ListRule};
    parse(raw, ListRule { max, trim: true }).map_err(|e| match e {
        ListError::Malformed => CoreError::InvalidInstanceIds,
        ListError::TooMany => CoreError::TooManyInstanceIds(max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_is_pending_until_a_boot_applies_it() {
        let mut b = Binding::default();
        assert_eq!(b.state, BindingState::None);
        b.bind("kp-1");
        assert_eq!(b.state, BindingState::PendingRestart);
        assert!(!b.desired_password_login);
        b.boot();
        assert_eq!(b.state, BindingState::Applied);
        assert!(!b.effective_password_login);
        b.bind("kp-2");
        assert_eq!(b.state, BindingState::PendingRestart);
        b.unbind();
        assert_eq!(b.state, BindingState::PendingRestart);
        assert!(b.desired_password_login);
        b.boot();
        assert_eq!(b.state, BindingState::None);
    }

    #[test]
    fn host_reports_confirm_fail_or_drift() {
        let mut b = Binding::default();
        b.bind("kp-1");
        b.host_applied(None, true, None, Some("sshd -t failed".into()));
        assert_eq!(
            (b.state, b.error.as_deref()),
            (BindingState::Failed, Some("sshd -t failed"))
        );
        b.host_applied(Some("kp-1".into()), false, None, None);
        assert_eq!(b.state, BindingState::Applied);
        b.host_checked(Some("kp-1".into()), false);
        assert_eq!(b.state, BindingState::Applied);
        b.host_checked(Some("unknown:SHA256:x".into()), false);
        assert_eq!(b.state, BindingState::Drifted);
        b.host_checked(Some("kp-1".into()), false);
        assert_eq!(
            b.state,
            BindingState::Applied,
            "drift that is undone by hand heals"
        );
        b.bind("kp-2");
        b.host_checked(Some("kp-1".into()), false);
        assert_eq!(
            b.state,
            BindingState::PendingRestart,
            "not drift: the host still has what it applied"
        );
        b.host_applied(Some("kp-2".into()), false, None, None);
        assert_eq!(b.state, BindingState::Applied);
    }

    #[test]
    fn a_password_reset_turns_password_login_on_beside_the_key_at_the_next_boot() {
        let mut b = Binding::default();
        b.bind("kp-1");
        b.boot();
        assert!(!b.effective_password_login);
        b.reset_password();
        assert_eq!(b.state, BindingState::PendingRestart);
        assert!(b.desired_password_login, "both the key and the password");
        assert_eq!(b.desired_key_pair_id.as_deref(), Some("kp-1"));
        assert!(
            !b.effective_password_login,
            "the old state holds until the restart"
        );
        b.boot();
        assert_eq!(b.state, BindingState::Applied);
        assert!(b.effective_password_login);
        assert_eq!(b.effective_password_version, 1);
        b.bind("kp-2");
        assert!(
            !b.desired_password_login,
            "an attach after the reset turns it off"
        );
        b.reset_password();
        b.unbind();
        b.boot();
        assert!(b.effective_password_login);
        assert_eq!(
            (b.state, b.effective_password_version),
            (BindingState::Applied, 2),
            "a reset password stays managed (and confirmed) without a key"
        );
    }

    #[test]
    fn a_host_confirms_a_reset_only_by_reporting_its_version() {
        let mut b = Binding::default();
        b.reset_password();
        b.host_applied(None, true, None, None);
        assert_eq!(
            b.state,
            BindingState::PendingRestart,
            "no version, no confirmation"
        );
        b.host_applied(None, true, None, Some("chpasswd failed".into()));
        assert_eq!(b.state, BindingState::Failed);
        b.host_applied(None, true, Some(1), None);
        assert_eq!(b.state, BindingState::Applied);
    }

    #[test]
    fn attach_then_detach_before_a_reboot_is_nothing_pending() {
        let mut b = Binding::default();
        b.bind("kp-1");
        b.unbind();
        assert_eq!(b.state, BindingState::None);
    }

    #[test]
    fn id_lists_are_json_arrays_of_strings_deduplicated() {
        assert_eq!(
            parse_id_list(r#"["i-a","i-b","i-a"]"#, 50).unwrap(),
            vec!["i-a", "i-b"]
        );
        for bad in ["i-a", "[]", "{}", "[1]", r#"[""]"#, "[\"i-a\"", "null"] {
            assert_eq!(
                parse_id_list(bad, 50),
                Err(CoreError::InvalidInstanceIds),
                "{bad}"
            );
        }
        let fifty: Vec<String> = (0..50).map(|i| format!("i-{i}")).collect();
        let mut with_dupe = fifty.clone();
        with_dupe.push("i-0".into());
        assert_eq!(
            parse_id_list(&serde_json::to_string(&with_dupe).unwrap(), 50)
                .unwrap()
                .len(),
            50
        );
        let mut fifty_one = fifty;
        fifty_one.push("i-x".into());
        assert_eq!(
            parse_id_list(&serde_json::to_string(&fifty_one).unwrap(), 50),
            Err(CoreError::TooManyInstanceIds(50))
        );
    }

    #[test]
    fn only_linux_io_optimized_instances_with_the_agent_running_or_stopped_are_bindable() {
        use crate::model::{Instance, Provider};
        let base = Instance {
            id: "i-1".into(),
            account_id: "1".into(),
            region_id: "r".into(),
            zone_id: "z".into(),
            name: "n".into(),
            host_name: "h".into(),
            description: String::new(),
            image_id: "img".into(),
            instance_type: "t".into(),
            os_type: OsType::Linux,
            os_name: "linux".into(),
            status: InstanceStatus::Running,
            io_optimized: true,
            agent_installed: true,
            login_user: "root".into(),
            provider: Provider::Sim,
            has_password: false,
            password_hash: None,
            created_at: chrono::Utc::now(),
            started_at: None,
            key_pair_name: None,
            binding: Binding::default(),
            tags: vec![],
        };
        let with = |f: &dyn Fn(&mut Instance)| {
            let mut i = base.clone();
            f(&mut i);
            check_bindable(&i)
        };
        assert_eq!(with(&|_| {}), Ok(()));
        assert_eq!(with(&|i| i.status = InstanceStatus::Stopped), Ok(()));
        assert_eq!(
            with(&|i| i.os_type = OsType::Windows),
            Err(InstanceFailure::Windows)
        );
        assert_eq!(
            with(&|i| i.io_optimized = false),
            Err(InstanceFailure::NotIoOptimized)
        );
        assert_eq!(
            with(&|i| i.agent_installed = false),
            Err(InstanceFailure::NoAgent)
        );
        for s in [
            InstanceStatus::Pending,
            InstanceStatus::Starting,
            InstanceStatus::Stopping,
            InstanceStatus::Rebooting,
        ] {
            assert_eq!(
                with(&|i| i.status = s),
                Err(InstanceFailure::IncorrectStatus)
            );
        }
    }

    #[test]
    fn power_transitions_follow_the_vendor_status_model() {
        use InstanceStatus::*;
        assert_eq!(transition(Stopped, Power::Start), Ok((Starting, Running)));
        assert_eq!(transition(Running, Power::Stop), Ok((Stopping, Stopped)));
        assert_eq!(transition(Running, Power::Reboot), Ok((Rebooting, Running)));
        for (from, op) in [
            (Running, Power::Start),
            (Stopped, Power::Stop),
            (Stopped, Power::Reboot),
            (Pending, Power::Start),
            (Stopping, Power::Reboot),
        ] {
            assert_eq!(
                transition(from, op),
                Err(CoreError::IncorrectInstanceStatus)
            );
        }
    }
}
