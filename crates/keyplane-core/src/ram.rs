//! RAM policies in the Alibaba grammar (SPEC section 6), parsed rather than validated, and their
//! evaluation: explicit Deny wins, then any Allow, else the default deny.
//!
//! ```json
//! {"Version":"1","Statement":[{"Effect":"Allow","Action":["ecs:AttachKeyPair"],
//!   "Resource":["acs:ecs:*:*:instance/i-abc","acs:ecs:*:*:keypair/deploy"],
//!   "Condition":{"IpAddress":{"acs:SourceIp":["10.0.0.0/8"]}}}]}
//! ```

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::CoreError;

/// The largest policy document accepted (the vendor's limit for a custom policy).
pub const MAX_DOCUMENT_BYTES: usize = 6144;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Operator {
    IpAddress,
    NotIpAddress,
    Date(std::cmp::Ordering, bool),
    /// StringEquals/StringNotEquals (`like` false) and StringLike/StringNotLike (`*`, `?`).
    String {
        like: bool,
        negate: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Self> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let ip = s.parse::<IpAddr>().ok()?;
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { net: ip, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        let (a, b, bits) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        if self.prefix == 0 {
            return true;
        }
        let shift = bits - self.prefix as u32;
        (a >> shift) == (b >> shift)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    SourceIp(Operator, Vec<Cidr>),
    CurrentTime(Operator, Vec<DateTime<Utc>>),
    /// `keyplane:OsUser` (SPEC section 15): the OS user a grant is for.
    OsUser(Operator, Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub effect: Effect,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

/// A validated policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(rename = "Version")]
    version: String,
    #[serde(rename = "Statement")]
    statement: Vec<RawStatement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    #[serde(rename = "Effect")]
    effect: String,
    #[serde(rename = "Action")]
    action: OneOrMany,
    #[serde(rename = "Resource")]
    resource: OneOrMany,
    #[serde(rename = "Condition", default)]
    condition: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

fn malformed(reason: impl Into<String>) -> CoreError {
    CoreError::MalformedPolicy(reason.into())
}

impl Policy {
    /// Parses and validates a document; the error says what is wrong.
    pub fn parse(document: &str) -> Result<Self, CoreError> {
        if document.len() > MAX_DOCUMENT_BYTES {
            return Err(malformed(format!(
                "the document is longer than {MAX_DOCUMENT_BYTES} bytes"
            )));
        }
        let raw: RawPolicy =
            serde_json::from_str(document).map_err(|e| malformed(e.to_string()))?;
        if raw.version != "1" {
            return Err(malformed("Version must be \"1\""));
        }
        if raw.statement.is_empty() {
            return Err(malformed("Statement is empty"));
        }
        let statements = raw
            .statement
            .into_iter()
            .map(parse_statement)
            .collect::<Result<_, _>>()?;
        Ok(Self { statements })
    }
}

fn parse_statement(raw: RawStatement) -> Result<Statement, CoreError> {
    let effect = match raw.effect.as_str() {
        "Allow" => Effect::Allow,
        "Deny" => Effect::Deny,
        other => return Err(malformed(format!("Effect {other:?} is not Allow or Deny"))),
    };
    let actions = raw.action.into_vec();
    if actions.is_empty() {
        return Err(malformed("Action is empty"));
    }
    for a in &actions {
        let valid = a == "*"
            || a.split_once(':').is_some_and(|(svc, name)| {
                !svc.is_empty()
                    && svc.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*'
                    })
                    && !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
            });
        if !valid {
            return Err(malformed(format!("Action {a:?} is not service:Name")));
        }
    }
    let resources = raw.resource.into_vec();
    if resources.is_empty() {
        return Err(malformed("Resource is empty"));
    }
    for r in &resources {
        if r != "*" && !valid_arn(r) {
            return Err(malformed(format!(
                "Resource {r:?} is not an ARN acs:service:region:account:resource"
            )));
        }
    }
    let mut conditions = Vec::new();
    for (op_name, keys) in raw.condition {
        let op = match op_name.as_str() {
            "IpAddress" => Operator::IpAddress,
            "NotIpAddress" => Operator::NotIpAddress,
            "DateEquals" => Operator::Date(std::cmp::Ordering::Equal, true),
            "DateNotEquals" => Operator::Date(std::cmp::Ordering::Equal, false),
            "DateLessThan" => Operator::Date(std::cmp::Ordering::Less, false),
            "DateLessThanEquals" => Operator::Date(std::cmp::Ordering::Less, true),
            "DateGreaterThan" => Operator::Date(std::cmp::Ordering::Greater, false),
            "DateGreaterThanEquals" => Operator::Date(std::cmp::Ordering::Greater, true),
            "StringEquals" => Operator::String {
                like: false,
                negate: false,
            },
            "StringNotEquals" => Operator::String {
                like: false,
                negate: true,
            },
            "StringLike" => Operator::String {
                like: true,
                negate: false,
            },
            "StringNotLike" => Operator::String {
                like: true,
                negate: true,
            },
            other => {
                return Err(malformed(format!(
                    "condition operator {other} is not supported"
                )))
            }
        };
        let Value::Object(keys) = keys else {
            return Err(malformed(format!("condition {op_name} must be an object")));
        };
        for (key, values) in keys {
            let values: Vec<String> = match values {
                Value::String(s) => vec![s],
                Value::Array(a) => a
                    .into_iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| malformed("condition values are strings"))
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(malformed("condition values are strings")),
            };
            let condition = match (key.to_ascii_lowercase().as_str(), &op) {
                ("acs:sourceip", Operator::IpAddress | Operator::NotIpAddress) => {
                    Condition::SourceIp(
                        op.clone(),
                        values
                            .iter()
                            .map(|v| {
                                Cidr::parse(v).ok_or_else(|| {
                                    malformed(format!("{v:?} is not an IP address or CIDR"))
                                })
                            })
                            .collect::<Result<_, _>>()?,
                    )
                }
                ("acs:currenttime", Operator::Date(..)) => Condition::CurrentTime(
                    op.clone(),
                    values
                        .iter()
                        .map(|v| {
                            DateTime::parse_from_rfc3339(v)
                                .map(|t| t.with_timezone(&Utc))
                                .map_err(|_| malformed(format!("{v:?} is not an ISO 8601 time")))
                        })
                        .collect::<Result<_, _>>()?,
                ),
                ("keyplane:osuser", Operator::String { .. }) => {
                    Condition::OsUser(op.clone(), values.clone())
                }
                ("acs:sourceip" | "acs:currenttime" | "keyplane:osuser", _) => {
                    return Err(malformed(format!("{op_name} does not apply to {key}")))
                }
                _ => return Err(malformed(format!("condition key {key} is not supported"))),
            };
            conditions.push(condition);
        }
    }
    Ok(Statement {
        effect,
        actions,
        resources,
        conditions,
    })
}

/// `acs:<service>:<region>:<account>:<resource>`; the resource part may itself contain `:`.
fn valid_arn(r: &str) -> bool {
    let parts: Vec<&str> = r.splitn(5, ':').collect();
    matches!(parts[..], ["acs", service, _region, _account, resource]
        if !service.is_empty() && !resource.is_empty()
            && service.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*'))
}

/// `*` matches any run of characters, `?` exactly one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// What the request brings to conditions.
#[derive(Debug, Clone)]
pub struct Context {
    pub source_ip: Option<IpAddr>,
    pub now: DateTime<Utc>,
    /// The OS user of a grant call (`keyplane:OsUser`); `None` elsewhere, where a condition on
    /// it never holds.
    pub os_user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    DefaultDeny,
}

impl Decision {
    pub fn allowed(self) -> bool {
        self == Self::Allow
    }
}

fn holds(c: &Condition, ctx: &Context) -> bool {
    match c {
        Condition::SourceIp(op, cidrs) => {
            let inside = ctx
                .source_ip
                .is_some_and(|ip| cidrs.iter().any(|n| n.contains(ip)));
            match op {
                Operator::IpAddress => inside,
                _ => ctx.source_ip.is_some() && !inside,
            }
        }
        Condition::CurrentTime(Operator::Date(ord, or_equal), times) => times.iter().any(|t| {
            let c = ctx.now.cmp(t);
            match (ord, or_equal) {
                (std::cmp::Ordering::Equal, true) => c.is_eq(),
                (std::cmp::Ordering::Equal, false) => c.is_ne(),
                (o, true) => c == *o || c.is_eq(),
                (o, false) => c == *o,
            }
        }),
        Condition::CurrentTime(..) => false,
        Condition::OsUser(Operator::String { like, negate }, values) => {
            let Some(user) = &ctx.os_user else {
                return false;
            };
            let hit = values
                .iter()
                .any(|v| if *like { glob(v, user) } else { v == user });
            hit != *negate
        }
        Condition::OsUser(..) => false,
    }
}

fn applies(s: &Statement, action: &str, resource: &str, ctx: &Context) -> bool {
    let action = action.to_ascii_lowercase();
    s.actions
        .iter()
        .any(|a| glob(&a.to_ascii_lowercase(), &action))
        && s.resources.iter().any(|r| glob(r, resource))
        && s.conditions.iter().all(|c| holds(c, ctx))
}

/// The decision of all `policies` together for `action` (`ecs:AttachKeyPair`) on `resource` (an ARN).
pub fn evaluate(policies: &[Policy], action: &str, resource: &str, ctx: &Context) -> Decision {
    let mut allowed = false;
    for s in policies.iter().flat_map(|p| &p.statements) {
        if applies(s, action, resource, ctx) {
            match s.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::DefaultDeny
    }
}

/// Whether any statement allows `action` on some resource (and none denies it everywhere): the
/// gate in front of an action, before its resources are known.
pub fn may_attempt(policies: &[Policy], action: &str, ctx: &Context) -> bool {
    let lower = action.to_ascii_lowercase();
    let mut allowed = false;
    for s in policies.iter().flat_map(|p| &p.statements) {
        let matches = s
            .actions
            .iter()
            .any(|a| glob(&a.to_ascii_lowercase(), &lower))
            && s.conditions.iter().all(|c| holds(c, ctx));
        if !matches {
            continue;
        }
        match s.effect {
            Effect::Deny if s.resources.iter().any(|r| r == "*") => return false,
            Effect::Deny => {}
            Effect::Allow => allowed = true,
        }
    }
    allowed
}

/// The ARN of an ECS resource: `acs:ecs:{region}:{account}:{kind}/{id}`.
pub fn ecs_arn(region: &str, account: &str, kind: &str, id: &str) -> String {
    format!("acs:ecs:{region}:{account}:{kind}/{id}")
}

/// The ARN of a RAM resource: `acs:ram:*:{account}:{kind}/{name}`.
pub fn ram_arn(account: &str, kind: &str, name: &str) -> String {
    format!("acs:ram:*:{account}:{kind}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(ip: &str) -> Context {
        Context {
            source_ip: Some(ip.parse().unwrap()),
            now: "2026-06-01T00:00:00Z".parse().unwrap(),
            os_user: None,
        }
    }

    #[test]
    fn the_os_user_condition_allows_deploy_but_not_root() {
        let p = policy(
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"keyplane:GrantAccess","Resource":"*","Condition":{"StringEquals":{"keyplane:OsUser":"deploy"}}}]}"#,
        );
        let as_user = |u: Option<&str>| Context {
            os_user: u.map(str::to_string),
            ..ctx("10.0.0.1")
        };
        let grant = |u| {
            evaluate(
                std::slice::from_ref(&p),
                "keyplane:GrantAccess",
                "acs:ecs:r:a:instance/i",
                &as_user(u),
            )
        };
        assert!(grant(Some("deploy")).allowed());
        assert!(!grant(Some("root")).allowed());
        assert!(
            !grant(None).allowed(),
            "no OS user: the condition does not hold"
        );
        let like = policy(
            r#"{"Version":"1","Statement":[{"Effect":"Deny","Action":"keyplane:*","Resource":"*","Condition":{"StringLike":{"keyplane:OsUser":"ro*"}}}]}"#,
        );
        assert_eq!(
            evaluate(&[like], "keyplane:GrantAccess", "*", &as_user(Some("root"))),
            Decision::ExplicitDeny
        );
        assert!(Policy::parse(
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"keyplane:OsUser":"x"}}}]}"#
        )
        .is_err());
    }

    fn policy(doc: &str) -> Policy {
        Policy::parse(doc).unwrap()
    }

    #[test]
    fn wildcards_match_like_ram() {
        for (p, t, want) in [
            ("ecs:Describe*", "ecs:DescribeInstances", true),
            ("ecs:?ttachKeyPair", "ecs:AttachKeyPair", true),
            (
                "acs:ecs:*:*:instance/i-*",
                "acs:ecs:cn-hangzhou:1:instance/i-abc",
                true,
            ),
            (
                "acs:ecs:*:*:instance/i-a?c",
                "acs:ecs:r:1:instance/i-abc",
                true,
            ),
            (
                "acs:ecs:*:*:instance/i-a?c",
                "acs:ecs:r:1:instance/i-abbc",
                false,
            ),
            ("*", "", true),
            ("a*b*c", "acb", false),
        ] {
            assert_eq!(glob(p, t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn explicit_deny_wins_and_the_default_is_deny() {
        let allow = policy(
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*"}]}"#,
        );
        let deny = policy(
            r#"{"Version":"1","Statement":[{"Effect":"Deny","Action":["ecs:DeleteKeyPairs"],"Resource":["acs:ecs:*:*:keypair/prod*"]}]}"#,
        );
        let c = ctx("10.1.2.3");
        let kp = ecs_arn("cn-hangzhou", "1", "keypair", "prod-key");
        assert_eq!(
            evaluate(std::slice::from_ref(&allow), "ecs:DeleteKeyPairs", &kp, &c),
            Decision::Allow
        );
        assert_eq!(
            evaluate(
                &[allow.clone(), deny.clone()],
                "ecs:DeleteKeyPairs",
                &kp,
                &c
            ),
            Decision::ExplicitDeny
        );
        assert_eq!(
            evaluate(
                &[deny.clone(), allow.clone()],
                "ecs:deletekeypairs",
                &kp,
                &c
            ),
            Decision::ExplicitDeny
        );
        assert_eq!(
            evaluate(&[], "ecs:DescribeInstances", "*", &c),
            Decision::DefaultDeny
        );
        assert_eq!(
            evaluate(&[deny], "ecs:DescribeInstances", "*", &c),
            Decision::DefaultDeny
        );
        assert_eq!(
            evaluate(&[allow], "ram:CreateUser", "*", &c),
            Decision::DefaultDeny
        );
    }

    #[test]
    fn source_ip_and_current_time_conditions() {
        let p = policy(
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*",
                "Condition":{"IpAddress":{"acs:SourceIp":["10.0.0.0/8","192.168.1.7"]},
                             "DateLessThan":{"acs:CurrentTime":"2027-01-01T00:00:00Z"}}}]}"#,
        );
        assert!(evaluate(std::slice::from_ref(&p), "ecs:X", "*", &ctx("10.200.0.1")).allowed());
        assert!(evaluate(std::slice::from_ref(&p), "ecs:X", "*", &ctx("192.168.1.7")).allowed());
        assert!(!evaluate(std::slice::from_ref(&p), "ecs:X", "*", &ctx("192.168.1.8")).allowed());
        assert!(evaluate(
            std::slice::from_ref(&p),
            "ecs:X",
            "*",
            &ctx("::ffff:10.0.0.1")
        )
        .allowed());
        let late = Context {
            now: "2027-02-01T00:00:00Z".parse().unwrap(),
            ..ctx("10.0.0.1")
        };
        assert!(!evaluate(&[p], "ecs:X", "*", &late).allowed());
        let not_ip = policy(
            r#"{"Version":"1","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"acs:SourceIp":"127.0.0.0/8"}}}]}"#,
        );
        assert_eq!(
            evaluate(std::slice::from_ref(&not_ip), "ecs:X", "*", &ctx("8.8.8.8")),
            Decision::ExplicitDeny
        );
        assert_eq!(
            evaluate(&[not_ip], "ecs:X", "*", &ctx("127.0.0.1")),
            Decision::DefaultDeny
        );
    }

    #[test]
    fn malformed_documents_are_refused_with_a_reason() {
        let big = format!(
            r#"{{"Version":"1","Statement":[{{"Effect":"Allow","Action":"ecs:*","Resource":["{}"]}}]}}"#,
            "a".repeat(1_000_000)
        );
        for (doc, says) in [
            ("not json", "expected"),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*","Colour":"red"}]}"#,
                "unknown field",
            ),
            (
                r#"{"Version":"1","Statement":[],"Extra":1}"#,
                "unknown field",
            ),
            (
                r#"{"Version":"2","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*"}]}"#,
                "Version",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Maybe","Action":"ecs:*","Resource":"*"}]}"#,
                "Effect",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"AttachKeyPair","Resource":"*"}]}"#,
                "service:Name",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"arn:aws:ec2::x"}]}"#,
                "ARN",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"acs:ecs:x"}]}"#,
                "ARN",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*","Condition":{"StringEquals":{"acs:UserAgent":"x"}}}]}"#,
                "condition key acs:UserAgent is not supported",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*","Condition":{"IpAddress":{"acs:Colour":"x"}}}]}"#,
                "condition key",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*","Condition":{"IpAddress":{"acs:SourceIp":"10.0.0.0/99"}}}]}"#,
                "CIDR",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*","Condition":{"DateLessThan":{"acs:SourceIp":"10.0.0.0/8"}}}]}"#,
                "does not apply",
            ),
            (big.as_str(), "longer than"),
        ] {
            match Policy::parse(doc) {
                Err(CoreError::MalformedPolicy(reason)) => {
                    assert!(reason.contains(says), "{reason} / {says}")
                }
                other => panic!("{doc:.80}: {other:?}"),
            }
        }
    }
}
