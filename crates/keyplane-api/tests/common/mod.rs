//! One fixture for every integration test: a real server on port 0 over a fresh store, and a
//! client that signs like the SDKs do (V3 by default, V1 on request).
//!
//! The store is a SQLite file, or, when `KEYPLANE_API_TEST_POSTGRES` names a PostgreSQL
//! superuser URL, a fresh PostgreSQL database (scripts/test.sh runs these tests both ways).

#![allow(dead_code)]

pub mod fleet;

use std::sync::Arc;

use keyplane_api::ServerConfig;
use keyplane_core::ids;
use keyplane_sig::alibaba::{self, sign_v3, V3Call};
use keyplane_sig::encode::pct;
use keyplane_sig::SecretKey;
use keyplane_store::{postgres::PgStore, sqlite::SqliteStore, AccessKeyRecord, Store};
use serde_json::Value;

pub const AK: &str = "LTAItestkey";
pub const SECRET: &str = "test-secret";

pub struct App {
    pub base: String,
    /// `GET /metrics` on the server's metrics listener.
    pub metrics_url: String,
    pub host: String,
    pub store: Arc<dyn Store>,
    pub account: String,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    client: reqwest::Client,
}

pub async fn spawn_app() -> App {
    spawn_with(ServerConfig::default(), None).await
}

/// One sealing key for every test server, so a restarted server opens what the first one sealed.
pub fn server_key() -> keyplane_core::secretbox::ServerKey {
    static KEY: std::sync::OnceLock<keyplane_core::secretbox::ServerKey> =
        std::sync::OnceLock::new();
    KEY.get_or_init(keyplane_core::secretbox::ServerKey::generate)
        .clone()
}

/// The store of a test directory: its SQLite file, or the PostgreSQL database it names (created
/// on first use, so a restarted server finds the same one).
async fn open_store(dir: &std::path::Path) -> Arc<dyn Store> {
    let Ok(admin) = std::env::var("KEYPLANE_API_TEST_POSTGRES") else {
        let path = dir.join("k.db");
        return Arc::new(SqliteStore::open(path.to_str().unwrap()).await.unwrap());
    };
    let url_file = dir.join("postgres-url");
    let url = match std::fs::read_to_string(&url_file) {
        Ok(url) => url,
        Err(_) => {
            let name = format!("kp_api_{}", ids::new_account_id().to_ascii_lowercase());
            let pool = sqlx::PgPool::connect(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
            std::fs::write(&url_file, &url).unwrap();
            url
        }
    };
    Arc::new(PgStore::open(&url).await.unwrap())
}

pub async fn spawn_with(mut config: ServerConfig, dir: Option<tempfile::TempDir>) -> App {
    config.server_key = server_key();
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let store = open_store(dir.path()).await;
    let account = match store.default_account().await.unwrap() {
        Some(a) => a,
        None => store
            .bootstrap(&AccessKeyRecord {
                id: AK.into(),
                account_id: ids::new_account_id(),
                user_name: None,
                secret: server_key().seal(AK, SECRET),
                active: true,
            })
            .await
            .unwrap(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_url = format!("http://{}/metrics", metrics.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s = store.clone();
    let task = tokio::spawn(async move {
        keyplane_api::serve_with_metrics(s, config, listener, Some(metrics), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    App {
        metrics_url,
        base: format!("http://{addr}"),
        host: addr.to_string(),
        store,
        account,
        dir,
        shutdown: Some(tx),
        task: Some(task),
        client: reqwest::Client::new(),
    }
}

/// Every parameter of a V1 call signed as the SDKs sign it for `method` at `/`, the
/// `Signature` included; parameters the caller gives win over the defaults.
pub fn v1_signed(
    method: &str,
    action: &str,
    params: &[(&str, &str)],
    ts: &str,
    nonce: &str,
) -> Vec<(String, String)> {
    let mut all = pairs(params);
    for (k, v) in [
        ("Action", action),
        ("Version", "2014-05-26"),
        ("AccessKeyId", AK),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", ts),
    ] {
        if !all.iter().any(|(n, _)| n == k) {
            all.push((k.into(), v.into()));
        }
    }
    let sts = alibaba::v1_string_to_sign(method, "/", &all);
    all.push((
        "Signature".into(),
        alibaba::v1_signature(&SecretKey::new(SECRET), &sts),
    ));
    all
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn query_string(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A response: status and parsed body (JSON, or the XML text under "xml").
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["Code"].as_str().unwrap_or("")
    }
}

impl App {
    /// A V3-signed call, as the current SDKs send it.
    pub async fn call(&self, action: &str, params: &[(&str, &str)]) -> Resp {
        self.call_as(action, params, AK, SECRET).await
    }

    pub async fn call_as(
        &self,
        action: &str,
        params: &[(&str, &str)],
        ak: &str,
        secret: &str,
    ) -> Resp {
        let query = pairs(params);
        let (date, nonce) = (now(), nonce());
        let headers = self.v3_headers(action, &query, &date, &nonce, ak, secret);
        self.send_v3(&query, &headers).await
    }

    pub fn v3_headers(
        &self,
        action: &str,
        query: &[(String, String)],
        date: &str,
        nonce: &str,
        ak: &str,
        secret: &str,
    ) -> Vec<(String, String)> {
        let call = V3Call {
            method: "POST",
            path: "/",
            host: &self.host,
            action,
            version: "2014-05-26",
            query,
            body: b"",
            date,
            nonce,
        };
        sign_v3(&call, ak, &SecretKey::new(secret))
    }

    pub async fn send_v3(&self, query: &[(String, String)], headers: &[(String, String)]) -> Resp {
        let mut req = self
            .client
            .post(format!("{}/?{}", self.base, query_string(query)));
        for (n, v) in headers.iter().filter(|(n, _)| n != "host") {
            req = req.header(n, v);
        }
        Self::read(req.send().await.unwrap()).await
    }

    /// A Volcengine-signed GET in `region`, as the old Volcengine SDK signs it.
    pub async fn call_volc(&self, action: &str, params: &[(&str, &str)], region: &str) -> Resp {
        self.call_volc_as(action, params, region, AK, SECRET).await
    }

    /// A RAM user (in this account) with an AccessKey and, if given, one policy; returns the key.
    pub async fn user_key(&self, name: &str, policy: Option<&str>) -> (String, String) {
        self.store
            .create_user(
                &keyplane_store::User {
                    account_id: self.account.clone(),
                    name: name.into(),
                    id: ids::new_account_id(),
                    display_name: name.into(),
                    comments: String::new(),
                    created_at: chrono::Utc::now(),
                },
                None,
            )
            .await
            .unwrap();
        if let Some(doc) = policy {
            keyplane_core::ram::Policy::parse(doc).unwrap();
            let record = keyplane_store::PolicyRecord {
                account_id: self.account.clone(),
                name: format!("{name}-policy"),
                document: doc.into(),
                description: String::new(),
                created_at: chrono::Utc::now(),
                attachment_count: 0,
            };
            self.store.create_policy(&record, None).await.unwrap();
            self.store
                .attach_policy(&self.account, name, &record.name, None)
                .await
                .unwrap();
        }
        let (id, secret) = (ids::new_access_key_id(), ids::new_access_key_secret());
        self.store
            .create_access_key(
                &AccessKeyRecord {
                    secret: server_key().seal(&id, &secret),
                    id: id.clone(),
                    account_id: self.account.clone(),
                    user_name: Some(name.into()),
                    active: true,
                },
                2,
                None,
            )
            .await
            .unwrap();
        (id, secret)
    }

    /// Another account with its root AccessKey; returns (account, key, secret).
    pub async fn other_account(&self) -> (String, String, String) {
        let (id, secret) = (ids::new_access_key_id(), ids::new_access_key_secret());
        let account = ids::new_account_id();
        self.store
            .create_account(
                "other",
                &AccessKeyRecord {
                    secret: server_key().seal(&id, &secret),
                    id: id.clone(),
                    account_id: account.clone(),
                    user_name: None,
                    active: true,
                },
            )
            .await
            .unwrap();
        (account, id, secret)
    }

    pub async fn call_volc_as(
        &self,
        action: &str,
        params: &[(&str, &str)],
        region: &str,
        ak: &str,
        secret: &str,
    ) -> Resp {
        let mut query = pairs(params);
        query.push(("Action".into(), action.into()));
        query.push(("Version".into(), "2020-04-01".into()));
        let x_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let call = keyplane_sig::volc::Call {
            method: "GET",
            host: &self.host,
            query: &query,
            body: b"",
            x_date: &x_date,
            region,
            service: "ecs",
        };
        let headers = keyplane_sig::volc::sign(&call, ak, &SecretKey::new(secret));
        let mut req = self
            .client
            .get(format!("{}/?{}", self.base, query_string(&query)));
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        Self::read(req.send().await.unwrap()).await
    }

    /// A V1-signed GET, as the old SDK and pop-core send it.
    pub async fn call_v1(&self, action: &str, params: &[(&str, &str)]) -> Resp {
        let q = self.v1_query(action, params, &now(), &nonce());
        self.get(&q).await
    }

    pub fn v1_query(&self, action: &str, params: &[(&str, &str)], ts: &str, nonce: &str) -> String {
        query_string(&v1_signed("GET", action, params, ts, nonce))
    }

    pub async fn get(&self, query: &str) -> Resp {
        Self::read(
            self.client
                .get(format!("{}/?{query}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post_raw(&self, query: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let resp = self
            .client
            .post(format!("{}/?{query}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        Self::read(resp).await
    }

    /// The status, the text and the JSON (or null) of an answer.
    pub async fn read(resp: reqwest::Response) -> Resp {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text }
    }

    /// Stops the server gracefully and hands back its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap();
        // Dropping a pool closes its connections in the background; wait, so the files are still.
        self.store.close().await;
        self.dir
    }

    /// Runs `n` simulated instances and returns their IDs.
    pub async fn run_instances(
        &self,
        image: &str,
        n: usize,
        extra: &[(&str, &str)],
    ) -> Vec<String> {
        let amount = n.to_string();
        let mut params = vec![
            ("RegionId", "cn-hangzhou"),
            ("ImageId", image),
            ("InstanceType", "ecs.g7.large"),
            ("Amount", amount.as_str()),
        ];
        params.extend_from_slice(extra);
        let r = self.call("RunInstances", &params).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["InstanceIdSets"]["InstanceIdSet"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
}

pub const LINUX: &str = "aliyun_3_x64_20G_alibase_20240819.vhd";
pub const WINDOWS: &str = "win2022_21H2_x64_dtc_en-us_40G_alibase_20240816.vhd";
pub const NO_AGENT: &str = "centos_7_9_x64_20G_noagent_20200101.vhd";

pub const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9gNeKySbL3MUv0aK94NY7akFL/u8wiGq5+p7UWr8/f test@ed";
pub const ED25519_MD5: &str = "87:34:61:74:58:ea:02:81:3c:05:ab:5f:e8:99:31:2e";
