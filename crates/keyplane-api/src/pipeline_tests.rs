//! The pipeline's steps and their order, without a network: a probe dialect whose handlers count
//! their runs, over a real SQLite store.

use std::cell::Cell;
use std::sync::Arc;

use keyplane_store::{AuditFilter, Page, Store};

use super::*;
use crate::acs::render::Format;
use crate::actions::{READS, WRITES};
use crate::auth::Principal;

thread_local! {
    /// Handler runs on this test's thread (`#[tokio::test]` runs on one).
    static RUNS: Cell<usize> = const { Cell::new(0) };
}

fn runs() -> usize {
    RUNS.with(Cell::get)
}

/// A write that reaches the store: it imports the key pair `KeyPairName` with the call's record.
async fn probe_write(ctx: &Ctx<'_>) -> Result<Reply, CoreError> {
    RUNS.with(|r| r.set(r.get() + 1));
    let name = keyplane_core::names::KeyPairName::parse(
        ctx.p.required("KeyPairName")?,
        keyplane_core::names::NameRule::AlibabaImport,
    )?;
    let extras = crate::ops::keypairs::Extras {
        resource_group_id: String::new(),
        description: String::new(),
        tags: Vec::new(),
    };
    let kp = crate::ops::keypairs::import(ctx, name, Ok(PUBLIC_KEY), Ok(extras)).await?;
    Ok(crate::reply::obj([("KeyPairId", kp.id.into())]).into())
}

async fn probe_read(_: &Ctx<'_>) -> Result<Reply, CoreError> {
    RUNS.with(|r| r.set(r.get() + 1));
    Ok(crate::reply::Fields::new().into())
}

static PROBE: &[Action<Handler>] = &[
    Action {
        name: "ProbeWrite",
        ram: "ecs:ImportKeyPair",
        writes: WRITES,
        handler: |c| Box::pin(probe_write(c)),
    },
    Action {
        name: "ProbeRead",
        ram: "ecs:DescribeKeyPairs",
        writes: READS,
        handler: |c| Box::pin(probe_read(c)),
    },
];

const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbQ0UQ3zBUoTrlLDxBlzkYp2XH3dyVu/FOzBc2b0JcE probe";

fn probe() -> crate::acs::Acs {
    crate::acs::Acs {
        name: "probe",
        version: "probe",
        actions: PROBE,
        strict: false,
        tokens: Some("probe"),
        host: "test".into(),
        format: Format::Json,
    }
}

struct Fixture {
    state: Arc<AppState>,
    account: String,
    _dir: tempfile::TempDir,
}

async fn fixture(throttle_per_second: u32, throttle_burst: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let store: Arc<dyn Store> = Arc::new(
        keyplane_store::sqlite::SqliteStore::open(path.to_str().unwrap())
            .await
            .unwrap(),
    );
    let config = crate::ServerConfig {
        throttle_per_second,
        throttle_burst,
        ..Default::default()
    };
    let root_key = keyplane_store::AccessKeyRecord {
        id: "LTAIprobe".into(),
        account_id: keyplane_core::ids::new_account_id(),
        user_name: None,
        secret: config.server_key.seal("LTAIprobe", "secret"),
        active: true,
    };
    let account = store.bootstrap(&root_key).await.unwrap();
    Fixture {
        state: AppState::new(store, config).await.unwrap(),
        account,
        _dir: dir,
    }
}

impl Fixture {
    fn caller(&self, principal: Principal) -> Caller {
        Caller {
            account_id: self.account.clone(),
            access_key_id: "LTAIprobe".into(),
            principal,
            source_ip: None,
            policies: vec![],
        }
    }

    /// One call of `action` through [`run`]; its status and body.
    async fn call(&self, caller: &Caller, action: &str, params: &[(&str, &str)]) -> (u16, String) {
        self.call_in(&probe(), caller, action, params).await
    }

    async fn call_in(
        &self,
        dialect: &crate::acs::Acs,
        caller: &Caller,
        action: &str,
        params: &[(&str, &str)],
    ) -> (u16, String) {
        let pairs: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let meta = Meta {
            request_id: keyplane_core::ids::new_request_id(),
            action: action.into(),
            ..Meta::default()
        };
        let ctx = Ctx::new(
            &self.state,
            caller,
            Params::new(&pairs, &[]),
            &meta,
            "probe",
            None,
        );
        let response = run(dialect, &ctx, &meta).await;
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The audit log's results, oldest first.
    async fn audited(&self) -> Vec<(String, String)> {
        let filter = AuditFilter {
            account_id: Some(self.account.clone()),
            ..Default::default()
        };
        let page = Page::Offset {
            offset: 0,
            limit: 100,
        };
        let mut records = self
            .state
            .store
            .list_audit(&filter, page)
            .await
            .unwrap()
            .items;
        records.sort_by_key(|r| r.seq);
        records.into_iter().map(|r| (r.action, r.result)).collect()
    }

    async fn key_pair_exists(&self, name: &str) -> bool {
        let store = &self.state.store;
        let found = store.key_pair_by_name(&self.account, "cn-hangzhou", name);
        found.await.unwrap().is_some()
    }
}

fn write(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("RegionId", "cn-hangzhou".into()),
        ("KeyPairName", name.into()),
    ]
}

fn refs<'a>(p: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    p.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn a_throttled_call_is_audited_as_throttled_and_changes_nothing() {
    let f = fixture(1, 1).await;
    let root = f.caller(Principal::Root);
    let (status, _) = f.call(&root, "ProbeWrite", &refs(&write("first"))).await;
    assert_eq!(status, 200);
    let (status, body) = f.call(&root, "ProbeWrite", &refs(&write("second"))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"Throttling\""), "{body}");
    assert_eq!(runs(), 1, "the throttled call never ran its handler");
    assert!(!f.key_pair_exists("second").await);
    assert_eq!(
        f.audited().await,
        [
            ("ProbeWrite".to_string(), "OK".to_string()),
            ("ProbeWrite".to_string(), "Throttling".to_string()),
        ],
        "one record per call: the change once, the throttled call as a denial"
    );
}

#[tokio::test]
async fn a_ram_denied_write_never_reaches_its_handler_or_the_store() {
    let f = fixture(1000, 1000).await;
    let user = f.caller(Principal::User("alice".into()));
    let (status, body) = f.call(&user, "ProbeWrite", &refs(&write("k"))).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Forbidden.RAM"), "{body}");
    assert_eq!(runs(), 0);
    assert!(!f.key_pair_exists("k").await);
    assert_eq!(
        f.audited().await,
        [("ProbeWrite".to_string(), "Forbidden.RAM".to_string())]
    );
    // A read is not gated: it runs, and answers with what the caller may see.
    let (status, _) = f.call(&user, "ProbeRead", &[]).await;
    assert_eq!((status, runs()), (200, 1));
}

#[tokio::test]
async fn a_replayed_client_token_gets_the_first_answer_without_running_the_handler() {
    let f = fixture(1000, 1000).await;
    let root = f.caller(Principal::Root);
    let mut params = write("once");
    params.push(("ClientToken", "token-1".into()));
    let first = f.call(&root, "ProbeWrite", &refs(&params)).await;
    let again = f.call(&root, "ProbeWrite", &refs(&params)).await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(again, first, "the stored answer, byte for byte");
    assert_eq!(runs(), 1, "the replay never reached the handler");
    // Other parameters under the same token are refused, and do not run either.
    let mut other = write("other");
    other.push(("ClientToken", "token-1".into()));
    let (status, body) = f.call(&root, "ProbeWrite", &refs(&other)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(runs(), 1);
    assert!(!f.key_pair_exists("other").await);
}

#[tokio::test]
async fn an_unknown_action_is_refused_after_the_throttle_and_never_audited_as_a_write() {
    let f = fixture(1000, 1000).await;
    let root = f.caller(Principal::Root);
    let (status, body) = f.call(&root, "NoSuchAction", &[]).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("InvalidAction.NotFound"), "{body}");
    assert_eq!(runs(), 0);
    assert!(f.audited().await.is_empty());
}

#[tokio::test]
async fn a_strict_dialect_gates_reads_and_audits_unknown_actions() {
    let f = fixture(1000, 1000).await;
    let strict = crate::acs::Acs {
        strict: true,
        ..probe()
    };
    let user = f.caller(Principal::User("alice".into()));
    let (status, body) = f.call_in(&strict, &user, "ProbeRead", &[]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        runs(),
        0,
        "the RAM API has no partial listing: a read is gated too"
    );
    let root = f.caller(Principal::Root);
    let (status, _) = f.call_in(&strict, &root, "NoSuchAction", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(
        f.audited().await,
        [
            ("ProbeRead".to_string(), "Forbidden.RAM".to_string()),
            (
                "NoSuchAction".to_string(),
                "InvalidAction.NotFound".to_string()
            ),
        ]
    );
}
