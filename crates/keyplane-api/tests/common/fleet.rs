//! Helpers of the instance and binding tests: the region, a key pair named `fleet`, and the
//! binding state of an instance as the store has it.

use super::*;
use keyplane_core::binding::BindingState;

pub const R: (&str, &str) = ("RegionId", "cn-hangzhou");

/// Parameters, expected HTTP status, expected vendor code.
pub type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);

pub async fn with_key(app: &App) {
    let r = app
        .call(
            "ImportKeyPair",
            &[R, ("KeyPairName", "fleet"), ("PublicKeyBody", ED25519)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

pub fn ids_json(ids: &[&str]) -> String {
    serde_json::to_string(ids).unwrap()
}

pub async fn state(app: &App, id: &str) -> BindingState {
    app.store
        .instance(&app.account, id)
        .await
        .unwrap()
        .unwrap()
        .binding
        .state
}
