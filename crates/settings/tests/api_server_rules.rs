//! Rules the Kubernetes API server enforces that validation must catch before a Job is
//! submitted (issue 15, item 7).

use serde_json::json;
use stepstack_settings::{MAX_INDEXED_POD_COUNT, parse_settings};

fn problems(value: serde_json::Value) -> Vec<String> {
    match parse_settings(&value, "") {
        Ok(_) => Vec::new(),
        Err(report) => report.issues.iter().map(|i| i.to_string()).collect(),
    }
}

#[test]
fn privileged_with_allow_privilege_escalation_false_is_refused() {
    for doc in [
        json!({"privileged": true, "pod_settings": {"container_security_context": {"allowPrivilegeEscalation": false}}}),
        json!({"pod_settings": {"container_security_context": {"privileged": true, "allowPrivilegeEscalation": false}}}),
    ] {
        let found = problems(doc.clone());
        assert_eq!(found.len(), 1, "{doc}: {found:?}");
        assert!(
            found[0].starts_with(
                "pod_settings.container_security_context.allowPrivilegeEscalation: cannot be false when the container is privileged"
            ),
            "{found:?}"
        );
    }
    assert!(problems(json!({"privileged": true, "pod_settings": {"container_security_context": {"allowPrivilegeEscalation": true}}})).is_empty());
    assert!(problems(json!({"pod_settings": {"container_security_context": {"allowPrivilegeEscalation": false}}})).is_empty());
}

#[test]
fn only_the_dns_policies_kubernetes_knows_are_accepted() {
    for policy in ["ClusterFirst", "ClusterFirstWithHostNet", "Default"] {
        let doc = json!({"pod_settings": {"additional_pod_spec_args": {"dnsPolicy": policy}}});
        assert!(problems(doc).is_empty(), "{policy}");
    }
    for key in ["dnsPolicy", "dns_policy"] {
        let found = problems(json!({"pod_settings": {"additional_pod_spec_args": {key: "Bogus"}}}));
        assert_eq!(
            found,
            [
                "pod_settings.additional_pod_spec_args.dnsPolicy: unsupported value `Bogus`; supported values: ClusterFirstWithHostNet, ClusterFirst, Default, None"
            ]
        );
    }
    let found =
        problems(json!({"pod_settings": {"additional_pod_spec_args": {"dnsPolicy": "None"}}}));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("needs at least one nameserver"),
        "{found:?}"
    );
    assert!(
        problems(json!({"pod_settings": {"additional_pod_spec_args": {
            "dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"]}
        }}}))
        .is_empty()
    );
}

#[test]
fn pod_count_stops_where_an_indexed_job_does() {
    assert_eq!(MAX_INDEXED_POD_COUNT, 99_999);
    assert!(problems(json!({"pod_count": 99_999})).is_empty());
    for count in [100_000u64, 2_147_483_647, 4_294_967_295] {
        let found = problems(json!({"pod_count": count}));
        assert_eq!(found.len(), 1, "{count}: {found:?}");
        assert!(
            found[0].starts_with("pod_count: must be at most 99999"),
            "{count}: {found:?}"
        );
    }
}
