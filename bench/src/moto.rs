//! The same calls against moto's EC2 server and keyplane, with the same generator
//! (docs/BENCHMARKS.md, "Compared with moto").

use std::time::Duration;

use crate::load::{run, Signer};
use crate::scenarios::{delete_leftovers, import_or_delete, line, p, wanted, KEY, LINUX, REGION};

/// The calls moto's EC2 server and keyplane both have, with the same generator.
/// Builds the request a worker sends next.
type MakeReq = Box<dyn Fn(usize, usize) -> crate::load::Req + Send + Sync>;

pub async fn moto(base: &str, s: &Signer, seconds: u64, c: usize) {
    let d = Duration::from_secs(seconds);
    // moto does not check signatures; it needs the header to find the region.
    let aws = |m: &str, query: String| {
        crate::load::Req {
        url: format!("{m}/?{query}&Version=2016-11-15"),
        headers: vec![("authorization".into(), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0".into())],
    }
    };
    let key = KEY;
    let material = {
        use base64::Engine;
        keyplane_sig::encode::pct(&base64::engine::general_purpose::STANDARD.encode(key))
    };
    // moto gets 100 instances to page through; keyplane has its 1,000 bench instances.
    let seed = reqwest::Client::new();
    let r = aws(
        base,
        "Action=RunInstances&ImageId=ami-12c6146b&MinCount=100&MaxCount=100&InstanceType=t2.micro"
            .into(),
    );
    let _ = seed
        .post(&r.url)
        .header("authorization", &r.headers[0].1)
        .send()
        .await;
    let pairs: Vec<(&str, MakeReq, MakeReq)> = {
        let sig = || s.clone();
        let (m1, m2, m3, m4) = (
            base.to_string(),
            base.to_string(),
            base.to_string(),
            base.to_string(),
        );
        let (g1, g2, g3, g4) = (sig(), sig(), sig(), sig());
        let material = material.clone();
        vec![
            (
                "DescribeKeyPairs",
                Box::new(move |_, _| aws(&m1, "Action=DescribeKeyPairs".into())),
                Box::new(move |_, _| g1.v3("DescribeKeyPairs", &p(&[("RegionId", REGION)]))),
            ),
            (
                "ImportKeyPair / DeleteKeyPair(s) alternating",
                Box::new(move |w, i| {
                    let name = format!("moto-{w}-{}", i / 2);
                    if i % 2 == 0 {
                        aws(
                            &m2,
                            format!(
                                "Action=ImportKeyPair&KeyName={name}&PublicKeyMaterial={material}"
                            ),
                        )
                    } else {
                        aws(&m2, format!("Action=DeleteKeyPair&KeyName={name}"))
                    }
                }),
                Box::new(move |w, i| import_or_delete(&g2, "cmp", w, i)),
            ),
            (
                "DescribeInstances, 100 per page",
                Box::new(move |_, _| aws(&m3, "Action=DescribeInstances&MaxResults=100".into())),
                Box::new(move |_, _| {
                    g3.v3(
                        "DescribeInstances",
                        &p(&[("RegionId", REGION), ("PageSize", "100")]),
                    )
                }),
            ),
            (
                "RunInstances, 1 instance",
                Box::new(move |_, _| {
                    aws(&m4, "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&InstanceType=t2.micro".into())
                }),
                // In a region of its own: the tens of thousands of instances it makes would
                // otherwise be counted by every later DescribeInstances page of REGION.
                Box::new(move |_, _| {
                    g4.v3(
                        "RunInstances",
                        &p(&[
                            ("RegionId", "cn-shanghai"),
                            ("ImageId", LINUX),
                            ("InstanceType", "ecs.g7.large"),
                            ("Amount", "1"),
                        ]),
                    )
                }),
            ),
        ]
    };
    for (name, moto_call, keyplane_call) in pairs {
        if !wanted(name) {
            continue;
        }
        let theirs = run(c, d, moto_call).await;
        let ours = run(c, d, keyplane_call).await;
        if let Err(e) = delete_leftovers(s, "cmp").await {
            println!("deleting the alternation's leftovers failed: {e}");
        }
        line(&format!("moto: {name}"), &theirs);
        line(&format!("keyplane: {name}, same run"), &ours);
        println!(
            "{:<46} {:.1}x",
            format!("ratio keyplane/moto: {name}"),
            ours.per_second / theirs.per_second.max(f64::MIN_POSITIVE)
        );
    }
}
