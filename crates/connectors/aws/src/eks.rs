//! EKS, the cloud's own part of the connector: AWS partitions (standard, China,
//! GovCloud, …), EKS cluster ids and the cluster CA that DescribeCluster returns.

use stepstack_core::connector::{KUBERNETES_CLUSTER, ResourceIds};
use stepstack_core::{Error, ErrorKind, Result};

use base64::Engine as _;

use crate::AWS_GENERIC;
use crate::error::{AwsError, AwsResult};

/// An AWS partition: the ARN prefix and DNS suffix of a group of regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Partition {
    /// `aws`: the standard regions (`amazonaws.com`).
    Aws,
    /// `aws-cn`: China (`amazonaws.com.cn`).
    AwsCn,
    /// `aws-us-gov`: AWS GovCloud (US) (`amazonaws.com`).
    AwsUsGov,
    /// `aws-iso`: US ISO East/West (`c2s.ic.gov`).
    AwsIso,
    /// `aws-iso-b`: US ISOB (`sc2s.sgov.gov`).
    AwsIsoB,
}

impl Partition {
    /// The partition of `region` (e.g. `cn-north-1` → [`Partition::AwsCn`]).
    pub fn of_region(region: &str) -> Partition {
        if region.starts_with("cn-") {
            Partition::AwsCn
        } else if region.starts_with("us-gov-") {
            Partition::AwsUsGov
        } else if region.starts_with("us-isob-") {
            Partition::AwsIsoB
        } else if region.starts_with("us-iso-") {
            Partition::AwsIso
        } else {
            Partition::Aws
        }
    }

    /// The partition named `name` in ARNs (`aws`, `aws-cn`, …).
    pub fn from_arn_name(name: &str) -> Option<Partition> {
        Some(match name {
            "aws" => Partition::Aws,
            "aws-cn" => Partition::AwsCn,
            "aws-us-gov" => Partition::AwsUsGov,
            "aws-iso" => Partition::AwsIso,
            "aws-iso-b" => Partition::AwsIsoB,
            _ => return None,
        })
    }

    /// The name used in ARNs.
    pub fn arn_name(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
            Partition::AwsIso => "aws-iso",
            Partition::AwsIsoB => "aws-iso-b",
        }
    }

    /// The DNS suffix of the partition's service endpoints.
    pub fn dns_suffix(self) -> &'static str {
        match self {
            Partition::Aws | Partition::AwsUsGov => "amazonaws.com",
            Partition::AwsCn => "amazonaws.com.cn",
            Partition::AwsIso => "c2s.ic.gov",
            Partition::AwsIsoB => "sc2s.sgov.gov",
        }
    }
}

/// The regional STS host that EKS tokens are presigned for, e.g.
/// `sts.eu-west-1.amazonaws.com` or `sts.cn-north-1.amazonaws.com.cn`.
pub fn sts_host(region: &str) -> String {
    format!("sts.{region}.{}", Partition::of_region(region).dns_suffix())
}

/// Whether `region` looks like an AWS region id (`eu-west-1`, `us-gov-east-1`).
pub(crate) fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// Whether `name` is a valid EKS cluster name: `^[0-9A-Za-z][A-Za-z0-9\-_]*$`, at most 100
/// characters.
pub(crate) fn is_cluster_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 100
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// An EKS cluster resource id taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EksClusterId {
    /// The cluster name, the canonical id.
    pub(crate) name: String,
    /// The region of an ARN id.
    pub(crate) region: Option<String>,
}

/// Parses an EKS resource id: a cluster name, or a cluster ARN
/// `arn:<partition>:eks:<region>:<account>:cluster/<name>`.
pub(crate) fn parse_cluster_id(id: &str) -> std::result::Result<EksClusterId, String> {
    let id = id.trim();
    if let Some(rest) = id.strip_prefix("arn:") {
        let fields: Vec<&str> = rest.splitn(5, ':').collect();
        let invalid = || {
            format!(
                "`{id}` is not a valid EKS cluster ARN; expected arn:<partition>:eks:<region>:<12-digit account>:cluster/<name>"
            )
        };
        let [partition, service, region, account, resource] = fields.as_slice() else {
            return Err(invalid());
        };
        let Some(name) = resource.strip_prefix("cluster/") else {
            return Err(invalid());
        };
        if Partition::from_arn_name(partition).is_none()
            || *service != "eks"
            || !is_region(region)
            || account.len() != 12
            || !account.chars().all(|c| c.is_ascii_digit())
            || !is_cluster_name(name)
        {
            return Err(invalid());
        }
        if Partition::of_region(region).arn_name() != *partition {
            return Err(format!(
                "the EKS cluster ARN `{id}` names partition `{partition}`, but region `{region}` belongs to partition `{}`",
                Partition::of_region(region).arn_name()
            ));
        }
        return Ok(EksClusterId {
            name: (*name).to_owned(),
            region: Some((*region).to_owned()),
        });
    }
    if is_cluster_name(id) {
        return Ok(EksClusterId {
            name: id.to_owned(),
            region: None,
        });
    }
    Err(format!(
        "`{id}` is not a valid EKS cluster id; give the cluster name (letters, digits, `-` and `_`, starting with a letter or digit) or its ARN"
    ))
}

/// The resource ids of the `aws` connector type: EKS clusters by name (ARNs are reduced to
/// the name after checking their region), and `aws-generic` by region.
#[derive(Debug, Clone)]
pub(crate) struct AwsResourceIds {
    pub(crate) region: String,
}

impl ResourceIds for AwsResourceIds {
    fn canonical_resource_id(&self, resource_type: &str, resource_id: &str) -> Result<String> {
        match resource_type {
            KUBERNETES_CLUSTER => {
                let parsed = parse_cluster_id(resource_id)
                    .map_err(|m| Error::new(ErrorKind::InvalidSettings, m))?;
                if let Some(region) = &parsed.region
                    && *region != self.region
                {
                    return Err(Error::new(
                        ErrorKind::InvalidSettings,
                        format!(
                            "the EKS cluster `{}` is in region {region}, but the connector is configured for region {}; use a connector for {region}",
                            parsed.name, self.region
                        ),
                    ));
                }
                Ok(parsed.name)
            }
            _ => Ok(resource_id.trim().to_owned()),
        }
    }

    fn default_resource_id(&self, resource_type: &str) -> Option<String> {
        (resource_type == AWS_GENERIC).then(|| self.region.clone())
    }
}

/// The DER certificates of an EKS `certificateAuthority.data` (base64 of PEM).
pub(crate) fn ca_certificates(cluster: &str, region: &str, data: &str) -> AwsResult<Vec<Vec<u8>>> {
    let bad = |why: &'static str| AwsError::UnreadableCa {
        cluster: cluster.to_owned(),
        region: region.to_owned(),
        why,
    };
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| bad("not base64"))?;
    let pem = String::from_utf8(pem).map_err(|_| bad("not PEM text"))?;
    let mut ders = Vec::new();
    let mut inside: Option<String> = None;
    for line in pem.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN CERTIFICATE") {
            inside = Some(String::new());
        } else if line.starts_with("-----END CERTIFICATE") {
            let body = inside.take().ok_or_else(|| bad("unbalanced PEM markers"))?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|_| bad("bad PEM body"))?;
            ders.push(der);
        } else if let Some(body) = inside.as_mut() {
            body.push_str(line);
        }
    }
    if ders.is_empty() {
        return Err(bad("no certificate"));
    }
    Ok(ders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_hosts_follow_the_partition() {
        assert_eq!(sts_host("eu-west-1"), "sts.eu-west-1.amazonaws.com");
        assert_eq!(sts_host("cn-north-1"), "sts.cn-north-1.amazonaws.com.cn");
        assert_eq!(sts_host("us-gov-west-1"), "sts.us-gov-west-1.amazonaws.com");
        assert_eq!(
            Partition::of_region("us-gov-west-1").arn_name(),
            "aws-us-gov"
        );
        assert_eq!(Partition::of_region("cn-northwest-1").arn_name(), "aws-cn");
    }

    #[test]
    fn cluster_ids_are_names_or_arns_in_the_configured_region() {
        let ids = AwsResourceIds {
            region: "eu-west-1".into(),
        };
        let canon = |id: &str| ids.canonical_resource_id(KUBERNETES_CLUSTER, id);
        assert_eq!(canon(" prod_1 ").unwrap(), "prod_1");
        assert_eq!(
            canon("arn:aws:eks:eu-west-1:123456789012:cluster/prod").unwrap(),
            "prod"
        );
        let err = canon("arn:aws:eks:us-east-1:123456789012:cluster/prod").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        assert!(err.message().contains("is in region us-east-1"), "{err}");
        assert!(canon("-bad").is_err());
        assert!(canon("a/b").is_err());
        assert!(canon("arn:aws:eks:eu-west-1:1234:cluster/prod").is_err());
        assert!(canon("arn:aws:s3:eu-west-1:123456789012:cluster/prod").is_err());
        // Other partitions are accepted (ZenML only knew `arn:aws:`), but must match the region.
        let cn = AwsResourceIds {
            region: "cn-north-1".into(),
        };
        assert_eq!(
            cn.canonical_resource_id(
                KUBERNETES_CLUSTER,
                "arn:aws-cn:eks:cn-north-1:123456789012:cluster/bj"
            )
            .unwrap(),
            "bj"
        );
        assert!(
            cn.canonical_resource_id(
                KUBERNETES_CLUSTER,
                "arn:aws:eks:cn-north-1:123456789012:cluster/bj"
            )
            .is_err()
        );
        assert_eq!(
            ids.default_resource_id(AWS_GENERIC).as_deref(),
            Some("eu-west-1")
        );
    }

    #[test]
    fn ca_data_is_decoded_to_der() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
        let data = base64::engine::general_purpose::STANDARD.encode(pem);
        assert_eq!(
            ca_certificates("c", "r", &data).unwrap(),
            vec![vec![0u8, 1, 2]]
        );
        assert!(ca_certificates("c", "r", "!!").is_err());
        let err = ca_certificates(
            "c",
            "r",
            &base64::engine::general_purpose::STANDARD.encode("x"),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.to_string().contains("(no certificate)"), "{err}");
    }
}
