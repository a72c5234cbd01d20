//! The `azure` flavor against Azurite (npm `azurite`), Microsoft's Blob Storage emulator:
//! each test starts `azurite-blob` on a free port of 127.0.0.1 with a fresh workspace
//! directory, creates a container (a Shared Key signed `PUT`, as Azurite checks
//! signatures), and runs core's artifact-store suite through the flavor, authorised with
//! Azurite's well-known account key.
//!
//! Install: `npm install -g azurite`. Without `azurite-blob` on the `PATH` the tests are
//! skipped with a loud message, unless `STEPSTACK_REQUIRE_AZURITE=1` is set (CI), which
//! makes a missing Azurite a failure.

use std::process::Stdio;
use std::time::Duration;

use stepstack_artifact_store::{AzureStoreConfig, open_azure, register};
use stepstack_core::artifact_store::{
    ArtifactAddress, ArtifactError, ObjectKey, ReadOptions, TransferOptions,
};
use stepstack_core::conformance::check_artifact_store;
use stepstack_core::registry::ArtifactStoreContext;
use stepstack_core::{ArtifactStore, ErrorKind, Registry};
use tokio::process::{Child, Command};

/// Azurite's documented development account.
const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Creates a container with a Shared Key signed request (the Blob service's
/// string-to-sign for `PUT ?restype=container`).
const CREATE_CONTAINER: &str = r#"
import base64, email.utils, hashlib, hmac, sys, urllib.request
endpoint, account, key, container = sys.argv[1:5]
date = email.utils.formatdate(usegmt=True)
version = "2021-08-06"
resource = "/" + account + "/" + account + "/" + container + "\nrestype:container"
to_sign = "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:" + date + "\nx-ms-version:" + version + "\n" + resource
signature = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
request = urllib.request.Request(endpoint + "/" + container + "?restype=container", method="PUT", headers={
    "x-ms-date": date, "x-ms-version": version,
    "Authorization": "SharedKey " + account + ":" + signature, "Content-Length": "0"})
urllib.request.urlopen(request)
"#;

/// Prints an account SAS (blob service; containers and objects; read, write, delete,
/// list, add, create) signed with the account key, as a client of Azure would get one.
const ACCOUNT_SAS: &str = r#"
import base64, hashlib, hmac, sys, urllib.parse
account, key = sys.argv[1:3]
fields = {"sv": "2019-12-12", "ss": "b", "srt": "sco", "sp": "rwdlac",
          "se": "2099-01-01T00:00:00Z", "spr": "https,http"}
to_sign = "\n".join([account, fields["sp"], fields["ss"], fields["srt"], "", fields["se"], "",
                     fields["spr"], fields["sv"], ""])
fields["sig"] = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
print(urllib.parse.urlencode(fields))
"#;

fn azurite_program() -> String {
    std::env::var("STEPSTACK_AZURITE_BLOB").unwrap_or_else(|_| "azurite-blob".to_owned())
}

/// Whether `azurite-blob` runs; if not, says so loudly, or fails when
/// `STEPSTACK_REQUIRE_AZURITE=1`. The message goes straight to stderr, past the
/// harness's capture, so it shows in a normal `cargo test` run.
async fn azurite_available() -> bool {
    let ok = Command::new(azurite_program())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let required = std::env::var("STEPSTACK_REQUIRE_AZURITE").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "STEPSTACK_REQUIRE_AZURITE=1 but `{}` does not run; install it with: npm install -g azurite",
            azurite_program()
        );
        let message = format!(
            "\n*** SKIPPED: `{}` is not installed; the Azurite tests of stepstack-artifact-store did not run. Install it with: npm install -g azurite ***\n",
            azurite_program()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
    }
    ok
}

struct Azurite {
    /// The account's blob endpoint, `http://127.0.0.1:PORT/devstoreaccount1`.
    account_url: String,
    _child: Child,
    _workspace: tempfile::TempDir,
}

async fn start_azurite() -> Azurite {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let workspace = tempfile::tempdir().unwrap();
    let child = Command::new(azurite_program())
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(workspace.path())
        .args(["--silent", "--skipApiVersionCheck", "--disableTelemetry"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start azurite-blob");
    let mut ready = false;
    for _ in 0..150 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        // Polling a starting process: readiness, not a race being forced.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "Azurite did not listen on port {port} within 15 s");
    Azurite {
        account_url: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
        _child: child,
        _workspace: workspace,
    }
}

async fn create_container(azurite: &Azurite, container: &str) {
    let out = Command::new("python3")
        .args([
            "-c",
            CREATE_CONTAINER,
            &azurite.account_url,
            ACCOUNT,
            ACCOUNT_KEY,
            container,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "creating container {container} in Azurite failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn config(azurite: &Azurite, container: &str, prefix: Option<&str>) -> serde_json::Value {
    let mut config = serde_json::json!({
        "account": ACCOUNT,
        "container": container,
        "endpoint_url": azurite.account_url,
        "allow_http": true,
        "credentials": {"account_key": ACCOUNT_KEY},
        "retry": {"max_retries": 2, "retry_timeout_secs": 30}
    });
    if let Some(prefix) = prefix {
        config["prefix"] = prefix.into();
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_flavor_passes_the_suite_on_azurite() {
    if !azurite_available().await {
        return;
    }
    let azurite = start_azurite().await;
    create_container(&azurite, "artifacts").await;
    let config =
        AzureStoreConfig::from_json(&config(&azurite, "artifacts", Some("team/store"))).unwrap();
    let store = open_azure(&config).unwrap();
    assert_eq!(
        store.location(),
        "az://devstoreaccount1/artifacts/team/store"
    );
    let report = check_artifact_store(&store).await;
    report.assert_passed();
    assert_eq!(report.checks.len(), 5, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_flavor_from_the_registry_passes_with_small_blocks_and_refuses_a_wrong_key() {
    if !azurite_available().await {
        return;
    }
    let azurite = start_azurite().await;
    create_container(&azurite, "root-store").await;
    let mut registry = Registry::new();
    register(&mut registry).unwrap();
    let flavor = registry.artifact_store("azure").unwrap();
    let normalised = flavor
        .validate_config(&config(&azurite, "root-store", None))
        .unwrap();
    // Blocks of 64 KiB (Azure has no minimum), 3 in flight: many staged blocks per file.
    let store = flavor
        .build(
            &normalised,
            ArtifactStoreContext::new("artifacts")
                .with_transfer(TransferOptions::new(64 * 1024, 3)),
        )
        .unwrap();
    assert_eq!(store.transfer_options().part_size, 64 * 1024);
    check_artifact_store(store.as_ref()).await.assert_passed();

    // A key Azurite does not know: the signature is refused, and the error names
    // neither key.
    let wrong = "d3Jvbmcta2V5LW5vdC1henVyaXRlcy1rZXktYXQtYWxsLXJlYWxseS13cm9uZw==";
    let mut bad = config(&azurite, "root-store", None);
    bad["credentials"]["account_key"] = wrong.into();
    let store = flavor
        .build(&bad, ArtifactStoreContext::new("artifacts"))
        .unwrap();
    let key = ObjectKey::from_segments(["p", "run-1", "s", "o", "manifest.json"]);
    let err = store.head_object(&key).await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::PermissionDenied | ErrorKind::Unauthenticated | ErrorKind::Unavailable
        ),
        "{err:?}"
    );
    let chain = stepstack_core::error_chain(&err);
    assert!(
        !chain.contains(wrong) && !chain.contains(ACCOUNT_KEY),
        "{chain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_flavor_writes_reads_and_commits_once_with_a_sas_token() {
    if !azurite_available().await {
        return;
    }
    let azurite = start_azurite().await;
    create_container(&azurite, "sas-store").await;
    let out = Command::new("python3")
        .args(["-c", ACCOUNT_SAS, ACCOUNT, ACCOUNT_KEY])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sas = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut with_sas = config(&azurite, "sas-store", Some("runs"));
    with_sas["credentials"] = serde_json::json!({ "sas_token": format!("?{sas}") });
    let config = AzureStoreConfig::from_json(&with_sas).unwrap();
    let store = open_azure(&config).unwrap();
    // Not the whole suite: object_store sends every Azure delete as a Blob Batch request,
    // and Azurite answers SAS-authorised batches with 500 (with the account key it
    // serves them), so the suite's clean-up cannot run here. Writing (a 6 MiB file in
    // staged blocks), reading back and create-if-absent all go through the SAS.
    let source = tempfile::tempdir().unwrap();
    std::fs::create_dir(source.path().join("sub")).unwrap();
    let big: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    std::fs::write(source.path().join("sub/big.bin"), &big).unwrap();
    std::fs::write(source.path().join("small.txt"), b"small").unwrap();
    let address: ArtifactAddress = "p/run-1/train/model".parse().unwrap();
    let dyn_store: &dyn ArtifactStore = &store;
    let manifest = dyn_store.write_tree(&address, source.path()).await.unwrap();
    let back = tempfile::tempdir().unwrap();
    let read = dyn_store
        .read_tree(&address, back.path(), &ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(read.digest, manifest.digest);
    assert_eq!(std::fs::read(back.path().join("sub/big.bin")).unwrap(), big);
    match dyn_store.write_tree(&address, source.path()).await {
        Err(ArtifactError::Conflict { .. }) => {}
        other => panic!("a second commit through the SAS was not a conflict: {other:?}"),
    }

    // A SAS whose signature does not match is refused, and not repeated in the error.
    let forged = sas.replace("sig=", "sig=AAAA");
    let mut bad = with_sas.clone();
    bad["credentials"]["sas_token"] = forged.clone().into();
    let store = open_azure(&AzureStoreConfig::from_json(&bad).unwrap()).unwrap();
    let key = ObjectKey::from_segments(["runs", "x"]);
    let err = store.head_object(&key).await.unwrap_err();
    let chain = stepstack_core::error_chain(&err);
    let sig = forged.split("sig=").nth(1).unwrap_or_default();
    assert!(!chain.contains(sig), "{chain}");
}
