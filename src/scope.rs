//! Where a resource lives: the account that owns it and its region. AWS keeps every
//! queue, stream and channel in one account and one region, and a client sees only
//! those of the account its access key belongs to, in the region its request is signed
//! for (the SigV4 credential scope `…/DATE/REGION/SERVICE/aws4_request`). Kinescope
//! does the same: every engine keys its resources by scope and name.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

impl Scope {
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Self {
        Scope { account: account.into(), region: region.into() }
    }

    /// The ARN partition of the region (`aws`, `aws-cn`, `aws-us-gov`).
    pub fn partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    /// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!("arn:{}:{service}:{}:{}:{resource}", self.partition(), self.region, self.account)
    }

    /// The scope and resource part of an ARN of `service`, if it is one.
    pub fn parse_arn<'a>(arn: &'a str, service: &str) -> Option<(Scope, &'a str)> {
        let mut parts = arn.splitn(6, ':');
        let (prefix, partition, svc, region, account, resource) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let scope = Scope::new(account, region);
        let ok = prefix == "arn"
            && svc == service
            && partition == scope.partition()
            && is_region(region)
            && is_account(account)
            && !resource.is_empty();
        ok.then_some((scope, resource))
    }

    /// The scope of any ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:…`) that has both.
    pub fn of_arn(arn: &str) -> Option<Scope> {
        let service = arn.split(':').nth(2)?;
        Scope::parse_arn(arn, service).map(|(scope, _)| scope)
    }

    /// The key of `name` in this scope, for stores and maps: `ACCOUNT/REGION/NAME`
    /// (no account or region holds a `/`, so keys of different scopes never collide,
    /// and one scope's keys share a prefix).
    pub fn key(&self, name: &str) -> String {
        format!("{}/{}/{name}", self.account, self.region)
    }

    /// The prefix every key of this scope starts with.
    pub fn key_prefix(&self) -> String {
        format!("{}/{}/", self.account, self.region)
    }

    /// The scope and name of a key made by [`Scope::key`].
    pub fn split_key(key: &str) -> Option<(Scope, &str)> {
        let mut parts = key.splitn(3, '/');
        let (account, region, name) = (parts.next()?, parts.next()?, parts.next()?);
        Some((Scope::new(account, region), name))
    }
}

impl std::fmt::Display for Scope {
    /// `ACCOUNT/REGION`, for logs and messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// Twelve digits.
pub fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A region name as AWS writes them (`us-east-1`, `cn-north-1`, `us-gov-west-1`): lower
/// case letters and digits in dash-separated parts, ending in a number.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    s.len() <= 32
        && parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// AWS's regions (commercial, China, GovCloud, the European Sovereign Cloud): a request
/// signed for one of these, or for the server's own `--region`, is served; any other
/// well-formed name is refused, so made-up regions cannot multiply per-region quotas.
pub const AWS_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eusc-de-east-1",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// Whether `s` is one of [`AWS_REGIONS`].
pub fn is_aws_region(s: &str) -> bool {
    AWS_REGIONS.contains(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_keys_and_partitions() {
        let s = Scope::new("123456789012", "us-west-2");
        assert_eq!(s.arn("sqs", "jobs"), "arn:aws:sqs:us-west-2:123456789012:jobs");
        assert_eq!(Scope::parse_arn("arn:aws:sqs:us-west-2:123456789012:jobs", "sqs"), Some((s.clone(), "jobs")));
        assert_eq!(Scope::parse_arn("arn:aws:sqs:us-west-2:123456789012:jobs", "kinesis"), None);
        assert_eq!(Scope::parse_arn("arn:aws:sqs:us-west-2:12345:jobs", "sqs"), None);
        let cn = Scope::new("123456789012", "cn-north-1");
        assert_eq!(cn.arn("kinesis", "stream/s"), "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/s");
        assert_eq!(Scope::parse_arn(&cn.arn("kinesis", "stream/s"), "kinesis"), Some((cn, "stream/s")));
        assert_eq!(Scope::new("1", "us-gov-west-1").partition(), "aws-us-gov");
        assert_eq!(Scope::of_arn("arn:aws:kinesisvideo:us-west-2:123456789012:stream/a/1"), Some(s.clone()));
        assert_eq!(Scope::of_arn("arn:aws:iam::123456789012:root"), None, "no region");
        let key = s.key("a/b");
        assert!(key.starts_with(&s.key_prefix()));
        assert_eq!(Scope::split_key(&key), Some((s, "a/b")));
        assert!(is_region("eu-central-1") && is_region("us-gov-west-1") && !is_region("US-EAST-1"));
        assert!(!is_region("us-east") && !is_region("us--1") && !is_region("../../x-1"));
    }
}

/// One page of a listing of a scope's resources in name order: the names that start
/// with `prefix`, after the name `after`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamePage<'a> {
    pub prefix: &'a str,
    pub after: Option<&'a str>,
    pub limit: usize,
}

impl<'a> NamePage<'a> {
    /// The first `limit` names, whatever they start with.
    pub fn first(limit: usize) -> Self {
        NamePage { prefix: "", after: None, limit }
    }
}
