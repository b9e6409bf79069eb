//! Authorization: what the verified caller may do. The root AccessKey acts for the whole account; a
//! RAM user's AccessKey acts with the user's policies (SPEC section 6).
//!
//! Every action is mapped to its RAM action in its dialect's table ([`crate::actions`]). The
//! pipeline's gate refuses a write whose caller has no Allow for it at all; operations then check
//! each resource (`instance/{id}`, `keypair/{name}`), and listings keep only what may be seen
//! ([`crate::ops::visible`]). This module only answers questions: it reads and writes nothing.

use keyplane_core::ram::{self, Context, Policy};
use keyplane_core::CoreError;

use crate::auth::{Caller, Principal};

impl Caller {
    pub fn is_root(&self) -> bool {
        self.principal == Principal::Root
    }

    /// `root` or `user/<name>`, for the audit log.
    pub fn principal_name(&self) -> String {
        match &self.principal {
            Principal::Root => "root".into(),
            Principal::User(u) => format!("user/{u}"),
        }
    }

    fn context(&self) -> Context {
        Context {
            source_ip: self.source_ip,
            now: chrono::Utc::now(),
            os_user: None,
        }
    }

    /// [`Caller::check`] for a grant call: the `keyplane:OsUser` condition key is `os_user`.
    pub fn check_for_user(
        &self,
        action: &str,
        resource: &str,
        os_user: &str,
    ) -> Result<(), CoreError> {
        let ctx = Context {
            os_user: Some(os_user.to_string()),
            ..self.context()
        };
        if self.is_root() || ram::evaluate(self.policies(), action, resource, &ctx).allowed() {
            Ok(())
        } else {
            Err(CoreError::Forbidden {
                action: action.into(),
                resource: resource.into(),
            })
        }
    }

    fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Whether the caller may do `action` (`ecs:AttachKeyPair`) on `resource` (an ARN).
    pub fn allowed(&self, action: &str, resource: &str) -> bool {
        self.is_root()
            || ram::evaluate(self.policies(), action, resource, &self.context()).allowed()
    }

    pub fn check(&self, action: &str, resource: &str) -> Result<(), CoreError> {
        if self.allowed(action, resource) {
            Ok(())
        } else {
            Err(CoreError::Forbidden {
                action: action.into(),
                resource: resource.into(),
            })
        }
    }

    /// The gate in front of an action.
    pub fn may_attempt(&self, action: &str) -> bool {
        self.is_root() || ram::may_attempt(self.policies(), action, &self.context())
    }

    pub fn keypair_arn(&self, region: &str, name: &str) -> String {
        ram::ecs_arn(region, &self.account_id, "keypair", name)
    }

    pub fn instance_arn(&self, region: &str, id: &str) -> String {
        ram::ecs_arn(region, &self.account_id, "instance", id)
    }
}
