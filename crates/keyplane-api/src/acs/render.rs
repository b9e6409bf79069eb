//! Alibaba response envelopes: JSON by default, XML with `Format=XML`. `RequestId` on every
//! response; errors add `HostId`, `Code`, `Message`, `Recommend`; a success never has a top-level
//! `Code` (pop-core treats any `Code` as failure).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::error::AliError;
use crate::reply::Reply;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    pub fn from_param(p: Option<&str>) -> Self {
        match p {
            Some(f) if f.eq_ignore_ascii_case("xml") => Self::Xml,
            _ => Self::Json,
        }
    }
}

pub fn success(action: &str, request_id: &str, body: impl Into<Reply>, format: Format) -> Response {
    let body = body.into();
    if format == Format::Json {
        // `{"RequestId":…,` then the fields, without rebuilding them as a tree.
        let fields = body.into_json();
        let inner = &fields[1..fields.len() - 1];
        let mut out = String::with_capacity(fields.len() + 64);
        out.push_str("{\"RequestId\":");
        out.push_str(&Value::String(request_id.into()).to_string());
        if !inner.is_empty() {
            out.push(',');
            out.push_str(inner);
        }
        out.push('}');
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
            out,
        )
            .into_response();
    }
    let mut out = Map::new();
    out.insert("RequestId".into(), Value::String(request_id.into()));
    out.extend(body.into_tree());
    respond(StatusCode::OK, &format!("{action}Response"), out, format)
}

pub fn error(err: &AliError, request_id: &str, host: &str, format: Format) -> Response {
    let mut out = Map::new();
    out.insert("RequestId".into(), Value::String(request_id.into()));
    out.insert("HostId".into(), Value::String(host.into()));
    out.insert("Code".into(), Value::String(err.code.into()));
    out.insert("Message".into(), Value::String(err.message.clone()));
    out.insert(
        "Recommend".into(),
        Value::String(format!(
            "https://api.aliyun.com/troubleshoot?q={}&product=Ecs&requestId={request_id}",
            err.code
        )),
    );
    respond(err.status, "Error", out, format)
}

fn respond(status: StatusCode, root: &str, body: Map<String, Value>, format: Format) -> Response {
    match format {
        Format::Json => (
            status,
            [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
            Value::Object(body).to_string(),
        )
            .into_response(),
        Format::Xml => {
            let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
            write_element(&mut xml, root, &Value::Object(body));
            (
                status,
                [(header::CONTENT_TYPE, "text/xml;charset=utf-8")],
                xml,
            )
                .into_response()
        }
    }
}

/// An array under key `K` becomes repeated `<K>` elements, as in the vendor's XML
/// (`{"KeyPairs":{"KeyPair":[a,b]}}` → `<KeyPairs><KeyPair>a</KeyPair><KeyPair>b</KeyPair></KeyPairs>`).
fn write_element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => {
            for item in items {
                write_element(out, name, item);
            }
        }
        Value::Object(map) => {
            out.push_str(&format!("<{name}>"));
            for (k, v) in map {
                write_element(out, k, v);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Null => out.push_str(&format!("<{name}/>")),
        Value::String(s) => out.push_str(&format!(
            "<{name}>{}</{name}>",
            quick_xml::escape::escape(s.as_str())
        )),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_become_repeated_elements_and_text_is_escaped() {
        let mut out = String::new();
        let v = json!({"KeyPairs":{"KeyPair":[{"KeyPairName":"a<b"},{"KeyPairName":"c"}]},"TotalCount":2});
        write_element(&mut out, "R", &v);
        assert_eq!(
            out,
            "<R><KeyPairs><KeyPair><KeyPairName>a&lt;b</KeyPairName></KeyPair><KeyPair><KeyPairName>c</KeyPairName></KeyPair></KeyPairs><TotalCount>2</TotalCount></R>"
        );
    }
}
