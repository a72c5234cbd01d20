//! The emulator holds YAML request bodies to the input rule every stepstack loader uses
//! (stepstack-input): alias bombs, deep nesting and huge bodies get a 400 naming the
//! limit, and the server keeps serving.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use stepstack_testkit::{Cluster, ClusterOptions};

fn alias_bomb(levels: usize, fan: usize) -> String {
    let mut text = String::from("metadata:\n  name: bomb\ndata:\n  a0: &a0 [lol, lol]\n");
    for i in 1..=levels {
        let refs = vec![format!("*a{}", i - 1); fan].join(", ");
        text.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    text
}

#[tokio::test]
async fn yaml_bombs_get_a_400_that_names_the_limit() {
    let c = Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster starts");
    let client = c.client().await.unwrap();
    let cases = [
        (alias_bomb(9, 9), "alias expansion limit"),
        (alias_bomb(4, 40), "alias expansion limit"),
        (
            format!(
                "metadata:\n  name: deep\ndata:\n  x:\n    {}1\n",
                "- ".repeat(2_000)
            ),
            "nesting depth limit",
        ),
        (
            format!(
                "metadata: {{name: deep}}\ndata: {}1{}\n",
                "[".repeat(5_000),
                "]".repeat(5_000)
            ),
            "nesting depth limit",
        ),
        (
            format!(
                "metadata: {{name: deep}}\ndata: {}1{}\n",
                "{a: ".repeat(5_000),
                "}".repeat(5_000)
            ),
            "nesting depth limit",
        ),
    ];
    for (body, limit) in cases {
        let req = http::Request::builder()
            .method(http::Method::POST)
            .uri("/api/v1/namespaces/default/configmaps")
            .header("content-type", "application/yaml")
            .body(body.into_bytes())
            .unwrap();
        match client.request_text(req).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 400, "{s:?}");
                assert!(s.message.contains(limit), "{limit}: {}", s.message);
            }
            other => panic!("{limit}: expected a 400, got {other:?}"),
        }
    }
    // A plain YAML body still works, and the server is healthy.
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/yaml")
        .body(b"metadata:\n  name: fine\ndata:\n  a: yes\n".to_vec())
        .unwrap();
    client.request_text(req).await.unwrap();
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "default")
        .get("fine")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["a"], "yes");
    Api::<ConfigMap>::namespaced(client, "default")
        .list(&ListParams::default())
        .await
        .unwrap();
}
