//! A fuzzer's bytes as an HTTP request, in the text of the request itself:
//!
//! ```text
//! POST /?Action=DescribeRegions&RegionId=cn-hangzhou
//! authorization: ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=…,Signature=…
//! x-acs-date: 2024-01-01T00:00:00Z
//!
//! body
//! ```
//!
//! so a seed is readable and a mutation of it is still mostly a request. The query and a form body
//! are decoded as the server decodes them; anything that does not decode is left empty, as the
//! server would have refused it before any signature code ran.

use keyplane_sig::params::decode_form;
use keyplane_sig::SignedRequest;

/// The secret the Alibaba seeds are signed with (the SDKs' test vectors).
pub const SECRET: &str = "testsecret";
/// The secret the Volcengine seeds are signed with (the SDK's test vectors).
pub const VOLC_SECRET: &str = "testsk";

#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
    /// Names lower-case, as the server hands them to the verifiers.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn parse(data: &[u8]) -> Self {
        let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (data, &[][..]),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.lines();
        let request_line = lines.next().unwrap_or("");
        let (method, target) = request_line
            .split_once(' ')
            .unwrap_or(("GET", request_line));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let is_form = headers.iter().any(|(n, v)| {
            n == "content-type" && v.starts_with("application/x-www-form-urlencoded")
        });
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query: decode_form(query.as_bytes()).unwrap_or_default(),
            form: if is_form {
                decode_form(body).unwrap_or_default()
            } else {
                Vec::new()
            },
            headers,
            body: body.to_vec(),
        }
    }

    /// The request as the verifiers see it.
    pub fn signed(&self) -> SignedRequest<'_> {
        SignedRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            form: &self.form,
            headers: &self.headers,
            body: &self.body,
        }
    }
}
