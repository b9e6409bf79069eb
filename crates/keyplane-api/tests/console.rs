//! Console sign-in and sessions under attack: a guesser throttled per source address before any
//! hashing, one answer and one hash for every wrong credential, sessions that end when their
//! credential changes (whichever server makes the change), and the `Secure` cookie over HTTPS.
//!
//! Each test runs two servers over one store, as a PostgreSQL deployment does: the test harness's
//! real server (port 0), which takes the signed RAM calls, and a second server's router driven
//! in-process, which takes the console calls with a chosen source address (`ConnectInfo`, what
//! the listener would attach).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Request};
use common::{App, Resp};
use http_body_util::BodyExt;
use keyplane_api::console::guard::SHORT_BURST;
use keyplane_api::{AppState, ServerConfig};
use keyplane_sig::alibaba::{sign_v3, V3Call};
use keyplane_sig::SecretKey;
use serde_json::{json, Value};
use tower::Service;

const PASSWORD: &str = "Corr3ct-Horse";

/// The second server: its state (for the CPU queue's counter) and its router.
struct Console {
    state: Arc<AppState>,
    router: axum::Router,
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Console {
    async fn over(app: &App, https: bool) -> Self {
        Self::with(
            app,
            ServerConfig {
                https,
                ..ServerConfig::default()
            },
        )
        .await
    }

    async fn with(app: &App, mut config: ServerConfig) -> Self {
        config.server_key = common::server_key();
        let state = AppState::new(app.store.clone(), config).await.unwrap();
        let router = keyplane_api::router(state.clone());
        Self { state, router }
    }

    async fn send(&self, peer: &str, req: axum::http::request::Builder, body: Body) -> Answer {
        let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
        let req = req.extension(ConnectInfo(peer)).body(body).unwrap();
        let resp = self.router.clone().call(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn sign_in(&self, peer: &str, credentials: Value) -> Answer {
        let req = Request::post("/api/v1/session").header(header::CONTENT_TYPE, "application/json");
        self.send(peer, req, Body::from(credentials.to_string()))
            .await
    }

    /// Signs in and returns the `Cookie` header of the session.
    async fn session(&self, credentials: Value) -> String {
        let a = self.sign_in("192.0.2.200", credentials).await;
        assert_eq!(a.status, 200, "{}", a.body);
        set_cookie(&a).split(';').next().unwrap().to_string()
    }

    /// The status and code of a request made with `cookie`: who is signed in, then an ECS call.
    async fn use_session(&self, cookie: &str) -> Vec<(u16, String)> {
        let mut seen = Vec::new();
        for uri in ["/api/v1/session", "/api/v1/ecs/DescribeRegions"] {
            let req = Request::get(uri).header(header::COOKIE, cookie);
            let a = self.send("192.0.2.200", req, Body::empty()).await;
            seen.push((a.status, a.body["Code"].as_str().unwrap_or("").to_string()));
        }
        seen
    }

    /// A DescribeRegions through the console's POST route, with the session's CSRF token.
    async fn describe_regions(&self, cookie: &str) -> (u16, String) {
        let req = Request::get("/api/v1/session").header(header::COOKIE, cookie);
        let who = self.send("192.0.2.200", req, Body::empty()).await;
        let csrf = who.body["CsrfToken"].as_str().unwrap().to_string();
        let req = Request::post("/api/v1/ecs/DescribeRegions")
            .header(header::COOKIE, cookie)
            .header("x-csrf-token", csrf)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        let a = self.send("192.0.2.200", req, Body::empty()).await;
        (a.status, a.body["Code"].as_str().unwrap_or("").to_string())
    }

    async fn assert_ended(&self, cookie: &str) {
        assert_eq!(
            self.use_session(cookie).await,
            vec![(401, "SessionRequired".to_string()); 2]
        );
    }

    async fn assert_alive(&self, cookie: &str) {
        let seen = self.use_session(cookie).await;
        assert_eq!(seen[0].0, 200);
        assert_ne!(seen[1].0, 401);
    }
}

fn set_cookie(a: &Answer) -> &str {
    a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap()
}

/// A RAM call signed with the root AccessKey, as the RAM SDK sends it (V3, version 2015-05-01).
async fn ram(app: &App, action: &str, params: &[(&str, &str)]) -> Resp {
    ram_as(app, common::AK, common::SECRET, action, params).await
}

/// A RAM call signed with the AccessKey `ak`.
async fn ram_as(app: &App, ak: &str, secret: &str, action: &str, params: &[(&str, &str)]) -> Resp {
    let query = common::pairs(params);
    let call = V3Call {
        method: "POST",
        path: "/",
        host: &app.host,
        action,
        version: keyplane_api::ram_api::VERSION,
        query: &query,
        body: b"",
        date: &common::now(),
        nonce: &common::nonce(),
    };
    let headers = sign_v3(&call, ak, &SecretKey::new(secret));
    let resp = app.send_v3(&query, &headers).await;
    assert_eq!(resp.status, 200, "{action}: {}", resp.text);
    resp
}

async fn user_with_password(app: &App, name: &str) {
    ram(app, "CreateUser", &[("UserName", name)]).await;
    ram(
        app,
        "CreateLoginProfile",
        &[("UserName", name), ("Password", PASSWORD)],
    )
    .await;
}

fn password(app: &App, user: &str, pw: &str) -> Value {
    json!({"AccountId": app.account, "UserName": user, "Password": pw})
}

#[tokio::test]
async fn wrong_passwords_from_one_address_get_429_before_any_hashing_and_other_addresses_do_not() {
    let app = common::spawn_app().await;
    let console = Console::over(&app, false).await;
    user_with_password(&app, "alice").await;
    let attacker = "198.51.100.7";
    // Wrong passwords and wrong AccessKey secrets both count.
    for i in 0..SHORT_BURST {
        let credentials = if i % 2 == 0 {
            password(&app, "alice", "Wr0ng-guess")
        } else {
            json!({"AccessKeyId": common::AK, "AccessKeySecret": "guess"})
        };
        assert_eq!(console.sign_in(attacker, credentials).await.status, 401);
    }
    let hashed = console.state.cpu.jobs_started();
    let refused = console
        .sign_in(attacker, password(&app, "alice", "Wr0ng-guess"))
        .await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["Code"], "Throttling");
    assert!(refused.body["Message"]
        .as_str()
        .unwrap()
        .contains("Too many failed sign-ins"));
    let retry: u64 = refused.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // Even the right password waits: the address is refused before anything is checked.
    let right = console
        .sign_in(attacker, password(&app, "alice", PASSWORD))
        .await;
    assert_eq!(right.status, 429);
    assert_eq!(
        console.state.cpu.jobs_started(),
        hashed,
        "a refusal hashes nothing"
    );
    // Another address signs in as usual.
    let other = console
        .sign_in("203.0.113.9", password(&app, "alice", PASSWORD))
        .await;
    assert_eq!(other.status, 200, "{}", other.body);
}

#[tokio::test]
async fn successful_sign_ins_are_not_throttled() {
    let app = common::spawn_app().await;
    let console = Console::over(&app, false).await;
    for _ in 0..SHORT_BURST * 3 {
        let a = console
            .sign_in(
                "198.51.100.8",
                json!({"AccessKeyId": common::AK, "AccessKeySecret": common::SECRET}),
            )
            .await;
        assert_eq!(a.status, 200);
    }
}

#[tokio::test]
async fn every_wrong_credential_gets_the_same_answer_after_one_password_hash() {
    let app = common::spawn_app().await;
    let console = Console::over(&app, false).await;
    user_with_password(&app, "alice").await;
    ram(&app, "CreateUser", &[("UserName", "bob")]).await;
    let attempts = [
        ("unknown user", password(&app, "mallory", PASSWORD)),
        (
            "user without a console password",
            password(&app, "bob", PASSWORD),
        ),
        ("wrong password", password(&app, "alice", "Wr0ng-guess")),
        (
            "unknown AccessKey",
            json!({"AccessKeyId": "LTAInosuchkey", "AccessKeySecret": "x"}),
        ),
        (
            "wrong AccessKey secret",
            json!({"AccessKeyId": common::AK, "AccessKeySecret": "x"}),
        ),
    ];
    let mut answers = Vec::new();
    for (i, (case, credentials)) in attempts.into_iter().enumerate() {
        let before = console.state.cpu.jobs_started();
        // One address per attempt, so the throttle stays out of the comparison.
        let a = console
            .sign_in(&format!("192.0.2.{}", i + 1), credentials)
            .await;
        assert_eq!(
            console.state.cpu.jobs_started(),
            before + 1,
            "{case}: exactly one argon2 verification"
        );
        answers.push((case, a.status, a.body));
    }
    for (case, status, body) in &answers {
        assert_eq!(
            (*status, body),
            (
                401,
                &json!({"Code": "SessionRequired", "Message": "The credentials are not valid."})
            ),
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_new_password_ends_the_users_sessions() {
    let app = common::spawn_app().await;
    let console = Console::over(&app, false).await;
    user_with_password(&app, "alice").await;
    let first = console.session(password(&app, "alice", PASSWORD)).await;
    console.assert_alive(&first).await;
    // UpdateLoginProfile, even to the same password, through the other server.
    ram(
        &app,
        "UpdateLoginProfile",
        &[("UserName", "alice"), ("Password", PASSWORD)],
    )
    .await;
    console.assert_ended(&first).await;
    // CreateLoginProfile again does the same.
    let second = console.session(password(&app, "alice", PASSWORD)).await;
    console.assert_alive(&second).await;
    ram(
        &app,
        "CreateLoginProfile",
        &[("UserName", "alice"), ("Password", "N3w-Passw0rd")],
    )
    .await;
    console.assert_ended(&second).await;
    console
        .session(password(&app, "alice", "N3w-Passw0rd"))
        .await;
}

#[tokio::test]
async fn deleting_the_login_profile_ends_the_users_sessions() {
    let app = common::spawn_app().await;
    let console = Console::over(&app, false).await;
    user_with_password(&app, "alice").await;
    let cookie = console.session(password(&app, "alice", PASSWORD)).await;
    ram(&app, "DeleteLoginProfile", &[("UserName", "alice")]).await;
    console.assert_ended(&cookie).await;
    let a = console
        .sign_in("192.0.2.50", password(&app, "alice", PASSWORD))
        .await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn deleting_the_user_ends_its_sessions_and_a_new_user_of_that_name_inherits_none() {
    let app = common::spawn_app().await;
    let console = Console::over(&app, false).await;
    user_with_password(&app, "alice").await;
    let cookie = console.session(password(&app, "alice", PASSWORD)).await;
    ram(&app, "DeleteUser", &[("UserName", "alice")]).await;
    console.assert_ended(&cookie).await;
    // A new alice, even with the same password, does not revive the old session.
    user_with_password(&app, "alice").await;
    console.assert_ended(&cookie).await;
    let fresh = console.session(password(&app, "alice", PASSWORD)).await;
    console.assert_alive(&fresh).await;
}

#[tokio::test]
async fn disabling_or_deleting_the_accesskey_ends_its_sessions() {
    let app = common::spawn_app().await;
    let console = Console::over(&app, false).await;
    let (id, secret) = app.user_key("alice", None).await;
    let credentials = json!({"AccessKeyId": id, "AccessKeySecret": secret});
    let cookie = console.session(credentials.clone()).await;
    console.assert_alive(&cookie).await;
    ram(
        &app,
        "UpdateAccessKey",
        &[
            ("UserName", "alice"),
            ("UserAccessKeyId", &id),
            ("Status", "Inactive"),
        ],
    )
    .await;
    console.assert_ended(&cookie).await;
    ram(
        &app,
        "UpdateAccessKey",
        &[
            ("UserName", "alice"),
            ("UserAccessKeyId", &id),
            ("Status", "Active"),
        ],
    )
    .await;
    // Re-enabling does not revive a session that ended; a new sign-in works.
    console.assert_ended(&cookie).await;
    let cookie = console.session(credentials).await;
    ram(
        &app,
        "DeleteAccessKey",
        &[("UserName", "alice"), ("UserAccessKeyId", &id)],
    )
    .await;
    console.assert_ended(&cookie).await;
}

#[tokio::test]
async fn the_cookie_is_secure_only_when_clients_come_over_https() {
    let app = common::spawn_app().await;
    let root = json!({"AccessKeyId": common::AK, "AccessKeySecret": common::SECRET});
    for https in [false, true] {
        let console = Console::over(&app, https).await;
        let a = console.sign_in("192.0.2.60", root.clone()).await;
        assert_eq!(a.status, 200);
        let cookie = set_cookie(&a);
        assert!(cookie.contains("HttpOnly; SameSite=Strict"), "{cookie}");
        assert_eq!(cookie.ends_with("; Secure"), https, "{cookie}");
        let id = cookie.split(';').next().unwrap().to_string();
        let csrf = a.body["CsrfToken"].as_str().unwrap().to_string();
        let req = Request::delete("/api/v1/session")
            .header(header::COOKIE, &id)
            .header("x-csrf-token", csrf);
        let out = console.send("192.0.2.60", req, Body::empty()).await;
        assert_eq!(out.status, 200);
        assert_eq!(set_cookie(&out).ends_with("; Secure"), https);
    }
}

#[tokio::test]
async fn one_console_users_calls_do_not_use_up_anothers_throttle() {
    // Found by the attacker pass: every password session was throttled under one shared name, so
    // one busy user (of any account) got every other account's console users throttled.
    let app = common::spawn_app().await;
    let (other_account, other_ak, other_secret) = app.other_account().await;
    let console = Console::with(
        &app,
        ServerConfig {
            throttle_per_second: 1,
            throttle_burst: 2,
            ..ServerConfig::default()
        },
    )
    .await;
    user_with_password(&app, "alice").await;
    let alice = console.session(password(&app, "alice", PASSWORD)).await;
    let codes: Vec<(u16, String)> = {
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(console.describe_regions(&alice).await);
        }
        seen
    };
    assert!(codes.iter().any(|(_, c)| c == "Throttling"), "{codes:?}");
    // Bob, in another account, is not throttled by Alice's calls.
    ram_as(
        &app,
        &other_ak,
        &other_secret,
        "CreateUser",
        &[("UserName", "bob")],
    )
    .await;
    ram_as(
        &app,
        &other_ak,
        &other_secret,
        "CreateLoginProfile",
        &[("UserName", "bob"), ("Password", PASSWORD)],
    )
    .await;
    let bob = console
        .session(json!({"AccountId": other_account, "UserName": "bob", "Password": PASSWORD}))
        .await;
    assert_eq!(console.describe_regions(&bob).await, (200, String::new()));
}

#[tokio::test]
async fn a_console_request_without_a_session_gets_401_and_an_unsigned_call_still_gets_the_signature_error(
) {
    // Issue 20, defect 4: a console whose cookie expired in the browser, or was cleared by a sign-out
    // in another tab, got a signature error for every action and never showed its sign-in screen.
    let app = common::spawn_app().await;
    let console = Console::over(&app, false).await;
    let cookie = console
        .session(json!({"AccessKeyId": common::AK, "AccessKeySecret": common::SECRET}))
        .await;
    let sign_out = Request::delete("/api/v1/session")
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", csrf(&console, &cookie).await);
    assert_eq!(
        console
            .send("192.0.2.70", sign_out, Body::empty())
            .await
            .status,
        200
    );
    let console_call = |uri: &str, cookie: Option<&str>| {
        let mut req = Request::post(uri)
            .header("x-csrf-token", "")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        req
    };
    for cookie in [None, Some(cookie.as_str()), Some("kp_session=unknown")] {
        for uri in ["/api/v1/ecs/DescribeKeyPairs", "/api/v1/instances"] {
            let a = console
                .send("192.0.2.70", console_call(uri, cookie), Body::empty())
                .await;
            assert_eq!(
                (a.status, a.body["Code"].as_str().unwrap_or("")),
                (401, "SessionRequired"),
                "{uri} with cookie {cookie:?}: {}",
                a.body
            );
        }
    }
    // Without the console's header, an unsigned call is told what a signed one needs, as before.
    let unsigned = Request::post("/api/v1/ecs/DescribeKeyPairs");
    let a = console.send("192.0.2.70", unsigned, Body::empty()).await;
    assert_eq!(
        (a.status, a.body["Code"].as_str().unwrap_or("")),
        (400, "IncompleteSignature")
    );
}

async fn csrf(console: &Console, cookie: &str) -> String {
    let req = Request::get("/api/v1/session").header(header::COOKIE, cookie);
    let who = console.send("192.0.2.200", req, Body::empty()).await;
    who.body["CsrfToken"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_and_older_records_are_older() {
    let app = common::spawn_app().await;
    let console = Console::over(&app, false).await;
    for i in 0..7 {
        let name = format!("audit-{i}");
        let r = app
            .call(
                "CreateKeyPair",
                &[("RegionId", "cn-hangzhou"), ("KeyPairName", &name)],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let cookie = console
        .session(json!({"AccessKeyId": common::AK, "AccessKeySecret": common::SECRET}))
        .await;
    let page = |token: String| {
        let console = &console;
        let cookie = cookie.clone();
        async move {
            let uri = format!(
                "/api/v1/audit?Action=CreateKeyPair&MaxResults=3&Order=NewestFirst&NextToken={token}"
            );
            let a = console
                .send(
                    "192.0.2.71",
                    Request::get(uri).header(header::COOKIE, cookie),
                    Body::empty(),
                )
                .await;
            assert_eq!(a.status, 200, "{}", a.body);
            let names: Vec<String> = a.body["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["Resources"][0].as_str().unwrap_or("").to_string())
                .collect();
            (names, a.body["NextToken"].as_str().unwrap().to_string())
        }
    };
    let (first, token) = page(String::new()).await;
    // A record written after the first page does not shift the older pages.
    app.call(
        "CreateKeyPair",
        &[("RegionId", "cn-hangzhou"), ("KeyPairName", "audit-late")],
    )
    .await;
    let (second, token) = page(token).await;
    let (third, token) = page(token).await;
    let seen: Vec<String> = [first, second, third].concat();
    let expected: Vec<String> = (0..7).rev().map(|i| format!("audit-{i}")).collect();
    assert_eq!(
        seen.iter()
            .map(|r| r.rsplit('/').next().unwrap().to_string())
            .collect::<Vec<_>>(),
        expected,
        "{seen:?}"
    );
    assert_eq!(token, "", "no page is older than the oldest");
    // The default order is unchanged: oldest first.
    let a = console
        .send(
            "192.0.2.71",
            Request::get("/api/v1/audit?Action=CreateKeyPair&MaxResults=1")
                .header(header::COOKIE, &cookie),
            Body::empty(),
        )
        .await;
    assert!(a.body["Records"][0]["Resources"][0]
        .as_str()
        .unwrap()
        .ends_with("audit-0"));
}
