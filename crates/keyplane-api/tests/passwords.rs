//! ModifyInstanceAttribute and RunInstances `Password` through the real server, both dialects: the
//! vendor rules (each bad input refused with the vendor code and nothing changed), the statuses a
//! reset needs, the restart rule, key and password side by side, and no plaintext in the store.

mod common;

use common::*;
use keyplane_core::binding::BindingState;
use keyplane_core::model::Instance;

const R: (&str, &str) = ("RegionId", "cn-hangzhou");
const GOOD: &str = "Reset-2026-Pw";

async fn instance(app: &App, id: &str) -> Instance {
    app.store.instance(&app.account, id).await.unwrap().unwrap()
}

async fn modify(app: &App, params: &[(&str, &str)]) -> Resp {
    app.call("ModifyInstanceAttribute", params).await
}

async fn volc_modify(app: &App, params: &[(&str, &str)]) -> Resp {
    app.call_volc("ModifyInstanceAttribute", params, "cn-hangzhou")
        .await
}

fn verifies(hash: &str, password: &str) -> bool {
    sha_crypt::sha512_check(password, hash).is_ok()
}

#[tokio::test]
async fn a_reset_is_pending_until_the_restart_and_then_key_and_password_both_hold() {
    let app = spawn_app().await;
    app.call(
        "ImportKeyPair",
        &[R, ("KeyPairName", "fleet"), ("PublicKeyBody", ED25519)],
    )
    .await;
    let id = app.run_instances(LINUX, 1, &[]).await.remove(0);
    let ids = serde_json::to_string(&[&id]).unwrap();
    app.call(
        "AttachKeyPair",
        &[R, ("KeyPairName", "fleet"), ("InstanceIds", &ids)],
    )
    .await;
    app.call("RebootInstance", &[("InstanceId", &id)]).await;
    let bound = instance(&app, &id).await;
    assert_eq!(bound.binding.state, BindingState::Applied);
    assert!(
        !bound.binding.effective_password_login,
        "binding turned password login off"
    );

    let r = modify(&app, &[("InstanceId", &id), ("Password", GOOD)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let pending = instance(&app, &id).await;
    assert_eq!(pending.binding.state, BindingState::PendingRestart);
    assert!(
        !pending.binding.effective_password_login,
        "the old state holds before the restart"
    );
    let hash = pending.password_hash.clone().unwrap();
    assert!(hash.starts_with("$6$") && verifies(&hash, GOOD), "{hash}");
    assert!(!hash.contains(GOOD));

    app.call("RebootInstance", &[("InstanceId", &id)]).await;
    let after = instance(&app, &id).await;
    assert_eq!(after.binding.state, BindingState::Applied);
    assert!(
        after.binding.effective_password_login,
        "the password works beside the key"
    );
    assert_eq!(
        after.binding.effective_key_pair_id,
        bound.binding.effective_key_pair_id
    );
    let d = app
        .call("DescribeInstances", &[R, ("InstanceIds", &ids)])
        .await;
    assert_eq!(d.body["Instances"]["Instance"][0]["KeyPairName"], "fleet");

    // Attach again without a reset: password login goes off; detach: it comes back.
    app.call(
        "AttachKeyPair",
        &[R, ("KeyPairName", "fleet"), ("InstanceIds", &ids)],
    )
    .await;
    app.call("RebootInstance", &[("InstanceId", &id)]).await;
    assert!(!instance(&app, &id).await.binding.effective_password_login);
    app.call(
        "DetachKeyPair",
        &[R, ("KeyPairName", "fleet"), ("InstanceIds", &ids)],
    )
    .await;
    app.call("RebootInstance", &[("InstanceId", &id)]).await;
    let detached = instance(&app, &id).await;
    assert!(detached.binding.effective_password_login);
    assert_eq!(detached.binding.effective_key_pair_id, None);
}

#[tokio::test]
async fn a_stopped_instance_takes_the_reset_at_its_next_start_and_names_change_at_once() {
    let app = spawn_app().await;
    let id = app.run_instances(LINUX, 1, &[]).await.remove(0);
    app.call("StopInstance", &[("InstanceId", &id)]).await;
    let r = modify(
        &app,
        &[
            ("InstanceId", &id),
            ("Password", GOOD),
            ("InstanceName", "web-2"),
            ("Description", "the web tier"),
            ("HostName", "web-2.internal"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let i = instance(&app, &id).await;
    assert_eq!(
        (
            i.name.as_str(),
            i.description.as_str(),
            i.host_name.as_str()
        ),
        ("web-2", "the web tier", "web-2.internal")
    );
    assert_eq!(i.binding.state, BindingState::PendingRestart);
    app.call("StartInstance", &[("InstanceId", &id)]).await;
    assert_eq!(
        instance(&app, &id).await.binding.state,
        BindingState::Applied
    );
}

#[tokio::test]
async fn run_instances_with_a_password_keeps_only_its_hash() {
    let app = spawn_app().await;
    let id = app
        .run_instances(LINUX, 1, &[("Password", GOOD)])
        .await
        .remove(0);
    let i = instance(&app, &id).await;
    assert!(i.has_password && verifies(i.password_hash.as_deref().unwrap(), GOOD));
    assert_eq!(
        i.binding.state,
        BindingState::None,
        "the first password is in effect at creation"
    );
    let r = app
        .call(
            "RunInstances",
            &[
                R,
                ("ImageId", LINUX),
                ("InstanceType", "ecs.g7.large"),
                ("Password", "short1A"),
            ],
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "InvalidPassword.Malformed"));
}

/// Every way a password breaks the vendor rule, in both dialects: the vendor error, nothing changed.
#[tokio::test]
async fn bad_passwords_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let id = app.run_instances(LINUX, 1, &[]).await.remove(0);
    let before = instance(&app, &id).await;
    let bad = [
        "Ab1!xyz",                          // too short
        "Ab1!Ab1!Ab1!Ab1!Ab1!Ab1!Ab1!Ab1!", // too long
        "abcdefgh1234",                     // two classes
        "Abc 1234!x",                       // a space
        "Abc\"1234!x",                      // a character outside the list
        "Pässwort-123",                     // non-ASCII
    ];
    for pw in bad {
        let r = modify(
            &app,
            &[
                ("InstanceId", &id),
                ("Password", pw),
                ("InstanceName", "renamed"),
            ],
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "InvalidPassword.Malformed"),
            "{pw}: {}",
            r.text
        );
        assert!(!r.text.contains(pw), "the error never echoes the password");
        let v = volc_modify(&app, &[("InstanceId", &id), ("Password", pw)]).await;
        assert_eq!(
            v.body["ResponseMetadata"]["Error"]["Code"], "InvalidPassword.Malformed",
            "{pw}: {}",
            v.text
        );
    }
    // Volcengine alone refuses a leading "/" or "$6$" on Linux.
    for pw in ["/Abcdef123", "$6$Abcdef123"] {
        let v = volc_modify(&app, &[("InstanceId", &id), ("Password", pw)]).await;
        assert_eq!(
            v.body["ResponseMetadata"]["Error"]["Code"], "InvalidPassword.Malformed",
            "{pw}"
        );
    }
    for (k, v, code) in [
        (
            "InstanceName",
            "1-starts-with-a-digit",
            "InvalidInstanceName.Malformed",
        ),
        (
            "Description",
            "http://example.com",
            "InvalidDescription.Malformed",
        ),
        ("HostName", "-bad-", "InvalidHostName.Malformed"),
    ] {
        let r = modify(&app, &[("InstanceId", &id), (k, v), ("Password", GOOD)]).await;
        assert_eq!((r.status, r.code()), (400, code), "{}", r.text);
    }
    let r = app
        .call("ModifyInstanceAttribute", &[("Password", GOOD)])
        .await;
    assert_eq!((r.status, r.code()), (400, "MissingParameter"));
    let r = modify(
        &app,
        &[("InstanceId", "i-nosuchinstance"), ("Password", GOOD)],
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(instance(&app, &id).await, before, "nothing changed");
}

#[tokio::test]
async fn a_reset_in_a_transitional_status_is_refused_and_windows_is_allowed() {
    let config = keyplane_api::ServerConfig {
        transition_delay: std::time::Duration::from_secs(60),
        ..Default::default()
    };
    let app = spawn_with(config, None).await;
    let pending = app.run_instances(LINUX, 1, &[]).await.remove(0);
    let before = instance(&app, &pending).await;
    let r = modify(&app, &[("InstanceId", &pending), ("Password", GOOD)]).await;
    assert_eq!(
        (r.status, r.code()),
        (403, "IncorrectInstanceStatus"),
        "{}",
        r.text
    );
    let v = volc_modify(&app, &[("InstanceId", &pending), ("Password", GOOD)]).await;
    assert_eq!(
        v.body["ResponseMetadata"]["Error"]["Code"], "InvalidInstanceStatus",
        "{}",
        v.text
    );
    assert_eq!(instance(&app, &pending).await, before);
    // A name change needs no particular status.
    let r = modify(&app, &[("InstanceId", &pending), ("InstanceName", "early")]).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let app = spawn_app().await;
    let win = app.run_instances(WINDOWS, 1, &[]).await.remove(0);
    let r = modify(
        &app,
        &[("InstanceId", &win), ("Password", "/Starts-With-Slash1")],
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "InvalidPassword.Malformed"),
        "Windows: no leading /"
    );
    let r = modify(&app, &[("InstanceId", &win), ("Password", GOOD)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.call("RebootInstance", &[("InstanceId", &win)]).await;
    let w = instance(&app, &win).await;
    assert_eq!(
        (w.login_user.as_str(), w.binding.state),
        ("Administrator", BindingState::Applied)
    );
    assert!(verifies(w.password_hash.as_deref().unwrap(), GOOD));
}

#[tokio::test]
async fn the_volcengine_dialect_resets_and_clears_a_description() {
    let app = spawn_app().await;
    let id = app
        .run_instances(LINUX, 1, &[("Description", "old text")])
        .await
        .remove(0);
    let v = volc_modify(
        &app,
        &[
            ("InstanceId", &id),
            ("Password", GOOD),
            ("InstanceName", "volc-1"),
            ("Description", ""),
        ],
    )
    .await;
    assert_eq!(v.status, 200, "{}", v.text);
    let i = instance(&app, &id).await;
    assert_eq!((i.name.as_str(), i.description.as_str()), ("volc-1", ""));
    assert_eq!(i.binding.state, BindingState::PendingRestart);
    let v = app
        .call_volc("RebootInstances", &[("InstanceIds.1", &id)], "cn-hangzhou")
        .await;
    assert_eq!(v.status, 200, "{}", v.text);
    assert_eq!(
        instance(&app, &id).await.binding.state,
        BindingState::Applied
    );
}

#[tokio::test]
async fn the_plaintext_reaches_neither_the_store_nor_the_audit_log() {
    let app = spawn_app().await;
    let secret = "Never-Stored-91!";
    let id = app
        .run_instances(LINUX, 1, &[("Password", secret)])
        .await
        .remove(0);
    let r = modify(
        &app,
        &[("InstanceId", &id), ("Password", "Also-Secret-77?")],
    )
    .await;
    assert_eq!(r.status, 200);
    let dir = app.stop().await;
    let mut scanned = 0;
    // SQLite's worker thread may still be finishing the last close (a checkpoint, then the WAL
    // is removed): a scan that saw a file vanish is done again, on the settled directory.
    for _ in 0..20 {
        let (mut vanished, mut bytes_read) = (false, 0);
        for entry in walk(dir.path()) {
            let bytes = match std::fs::read(&entry) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    vanished = true;
                    continue;
                }
                Err(e) => panic!("{}: {e}", entry.display()),
            };
            bytes_read += bytes.len();
            for needle in [secret, "Also-Secret-77?"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} found in {}",
                    entry.display()
                );
            }
        }
        scanned = bytes_read;
        if !vanished {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(scanned > 0, "the store's files were read");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Registers a host through the agent API; returns its instance ID and bearer credential.
async fn register_host(app: &App, os_type: &str) -> (String, String) {
    let token = format!("kprt-test-{os_type}");
    app.store
        .create_registration_token(&keyplane_store::RegistrationToken {
            token_id: keyplane_core::ids::new_registration_token_id(),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            token_hash: keyplane_api::agent_api::sha256_hex(&token),
            account_id: app.account.clone(),
            region_id: "cn-hangzhou".into(),
            zone_id: "cn-hangzhou-a".into(),
            name: format!("host-{os_type}"),
        })
        .await
        .unwrap();
    let body = serde_json::json!({"Token": token, "OsType": os_type, "LoginUser": "root"});
    let text = reqwest::Client::new()
        .post(format!("{}/agent/v1/register", app.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = r["InstanceId"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {id}:{}", r["Credential"].as_str().unwrap());
    (id, bearer)
}

async fn desired(app: &App, bearer: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}/agent/v1/desired", app.base))
        .header("authorization", bearer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap()
}

#[tokio::test]
async fn a_linux_agent_receives_only_the_hash_and_a_windows_reset_never_reaches_an_agent() {
    let app = spawn_app().await;
    let (linux, linux_bearer) = register_host(&app, "linux").await;
    let (windows, windows_bearer) = register_host(&app, "windows").await;
    let d = desired(&app, &linux_bearer).await;
    assert_eq!(
        (&d["PasswordHash"], &d["PasswordVersion"]),
        (&serde_json::Value::Null, &serde_json::json!(0))
    );
    for id in [&linux, &windows] {
        let r = modify(&app, &[("InstanceId", id), ("Password", GOOD)]).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let d = desired(&app, &linux_bearer).await;
    let hash = d["PasswordHash"].as_str().unwrap();
    assert!(verifies(hash, GOOD) && !d.to_string().contains(GOOD), "{d}");
    assert_eq!(d["PasswordVersion"], 1);
    assert_eq!(d["PasswordLogin"], true);
    let w = desired(&app, &windows_bearer).await;
    assert_eq!(
        (&w["PasswordHash"], &w["PasswordVersion"]),
        (&serde_json::Value::Null, &serde_json::json!(0)),
        "{w}"
    );
    assert_eq!(
        instance(&app, &windows).await.binding.state,
        BindingState::PendingRestart
    );
}
