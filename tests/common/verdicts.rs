//! Comparing the webhook's answer for one AdmissionReview with the verdict it must get.
#![allow(dead_code)]

use super::{TestServer, fixture, fixture_json};

/// What the webhook should answer for one captured review.
pub enum Want {
    Allow,
    /// Allowed without checks, with this reason in a warning-free answer.
    Skip,
    /// Denied with exactly these codes at these paths, in any order.
    Deny(&'static [(&'static str, &'static str)]),
}

/// The codes and paths a denial names, from its message.
pub fn named(message: &str) -> Vec<(String, String)> {
    let body = message.split_once(": ").map_or("", |(_, b)| b);
    let mut out: Vec<(String, String)> = body
        .split("; ")
        .filter_map(|v| {
            let mut parts = v.splitn(3, ' ');
            let (code, path) = (parts.next()?, parts.next()?);
            code.starts_with("EG")
                .then(|| (code.to_owned(), path.to_owned()))
        })
        .collect();
    out.sort();
    out
}

pub async fn judge(s: &TestServer, name: &str, want: Want) {
    judge_body(s, name, fixture(name), want).await;
}

/// As [`judge`], for a review built from the fixture `name` (its uid is the fixture's).
pub async fn judge_body(s: &TestServer, name: &str, body: Vec<u8>, want: Want) {
    let answer = s.review("/validate", body).await;
    let r = &answer["response"];
    let uid = fixture_json(name)["request"]["uid"].clone();
    assert_eq!(r["uid"], uid, "{name}");
    match want {
        Want::Allow | Want::Skip => {
            assert_eq!(r["allowed"], true, "{name}: {answer}");
            assert!(r["warnings"].is_null(), "{name}: {answer}");
        }
        Want::Deny(codes) => {
            assert_eq!(r["allowed"], false, "{name}: {answer}");
            assert_eq!(r["status"]["code"], 403, "{name}");
            let mut want: Vec<(String, String)> = codes
                .iter()
                .map(|(c, p)| ((*c).to_owned(), (*p).to_owned()))
                .collect();
            want.sort();
            let message = r["status"]["message"].as_str().unwrap_or_default();
            assert_eq!(named(message), want, "{name}: {message}");
        }
    }
}
