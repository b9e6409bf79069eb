//! The story every backend must pass: the same calls, the same results. Backends run it from their
//! own tests (`tests/sqlite.rs`, `tests/postgres.rs`) through `tests/common/mod.rs`. This module
//! has the fixtures; each submodule a part of the story.

mod accounts;
mod audit;
mod emulator;
mod grants;
mod resources;
mod security;

pub use accounts::*;
pub use audit::*;
pub use emulator::*;
pub use grants::*;
pub use resources::*;
pub use security::*;

use chrono::Utc;
use keyplane_core::binding::{Binding, BindingState, Power};
use keyplane_core::model::{
    FingerprintQuery, Instance, InstanceStatus, KeyPair, OsType, Provider, Tag,
};
use keyplane_core::{ids, CoreError, InstanceFailure};

use crate::{
    parse_ts, ts, AccessKeyRecord, AuditFilter, AuditRecord, BindAudit, BindOp, InstanceFilter,
    InstanceResult, KeyPairFilter, Page, PolicyRecord, RegistrationToken, Store, StoredResponse,
    TokenClaim, User,
};

const REGION: &str = "cn-hangzhou";

/// Bootstraps a fresh store and returns its account.
pub async fn account(store: &dyn Store) -> String {
    let key = AccessKeyRecord {
        id: "LTAIconformance".into(),
        account_id: ids::new_account_id(),
        user_name: None,
        secret: "secret".into(),
        active: true,
    };
    let account = store.bootstrap(&key).await.unwrap();
    assert_eq!(
        store.bootstrap(&key).await.unwrap(),
        account,
        "bootstrap is idempotent"
    );
    assert_eq!(
        store.access_key(&key.id).await.unwrap().unwrap().account_id,
        account
    );
    account
}

pub fn key_pair(account: &str, name: &str, md5: &str) -> KeyPair {
    KeyPair {
        id: ids::new_key_pair_id(),
        account_id: account.into(),
        region_id: REGION.into(),
        name: name.into(),
        public_key: format!("ssh-ed25519 AAAA{name}"),
        fingerprint_sha256: format!("SHA256:{name}"),
        fingerprint_md5: md5.into(),
        resource_group_id: String::new(),
        description: String::new(),
        created_at: keyplane_core::model::now(),
        updated_at: None,
        tags: vec![],
    }
}

pub fn instance(account: &str, status: InstanceStatus, os: OsType) -> Instance {
    Instance {
        id: ids::new_instance_id(),
        account_id: account.into(),
        region_id: REGION.into(),
        zone_id: "cn-hangzhou-h".into(),
        name: "web".into(),
        host_name: "web".into(),
        description: String::new(),
        image_id: "img".into(),
        instance_type: "ecs.g7.large".into(),
        os_type: os,
        os_name: "os".into(),
        status,
        io_optimized: true,
        agent_installed: true,
        login_user: "root".into(),
        provider: Provider::Sim,
        has_password: false,
        password_hash: None,
        created_at: keyplane_core::model::now(),
        started_at: None,
        key_pair_name: None,
        binding: Binding::default(),
        tags: vec![Tag {
            key: "env".into(),
            value: "test".into(),
        }],
    }
}

const MD5_A: &str = "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff";

/// A minimal audit record of `action` in `account`.
pub(crate) fn audit_record(account: &str, action: &str) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: keyplane_core::model::now(),
        account_id: account.into(),
        principal: "root".into(),
        access_key_id: "LTAIx".into(),
        source_ip: "127.0.0.1".into(),
        dialect: "aliyun".into(),
        action: action.into(),
        resources: Vec::new(),
        result: "OK".into(),
        status: 200,
        request_id: "R".into(),
        client_token: String::new(),
        instance_results: Vec::new(),
        injected: Vec::new(),
    }
}
