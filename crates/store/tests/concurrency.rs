//! Many writers at once: 32 threads with their own `Store`, and 32 separate processes
//! (this test executable re-run as a child), all register a connector; none fails and
//! none is lost.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use stepstack_core::ConnectorConfig;
use stepstack_store::{ConnectorFilter, Store};

const WRITERS: usize = 32;
const CHILD_HOME: &str = "STEPSTACK_STORE_TEST_CHILD_HOME";
const CHILD_NAME: &str = "STEPSTACK_STORE_TEST_CHILD_NAME";

fn register(home: &Path, name: &str) {
    let mut store = Store::open(home).unwrap_or_else(|e| panic!("open for {name}: {e}"));
    let config = ConnectorConfig::new(name, "kubernetes", "token")
        .with_value("server", "https://127.0.0.1:6443")
        .with_secret("token", format!("token-of-{name}"));
    store
        .create_connector(config.into())
        .unwrap_or_else(|e| panic!("register {name}: {e}"));
    // A read right after the write, as the CLI does when printing the result.
    store
        .get_connector(name)
        .unwrap_or_else(|e| panic!("get {name}: {e}"));
}

fn assert_all_registered(home: &Path, prefix: &str) {
    let store = Store::open(home).unwrap();
    let names: Vec<String> = store
        .list_connectors(&ConnectorFilter::new())
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert_eq!(names.len(), WRITERS, "{names:?}");
    for name in &names {
        let secrets = store.connector_secrets(name).unwrap();
        assert_eq!(
            stepstack_core::secrecy::ExposeSecret::expose_secret(&secrets["token"]),
            format!("token-of-{name}")
        );
    }
}

#[test]
fn thirty_two_threads_register_at_once() {
    const READERS: usize = 4;
    let home = tempfile::tempdir().unwrap();
    let barrier = Arc::new(Barrier::new(WRITERS + READERS));
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let home = home.path().to_path_buf();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                // Each thread opens the (possibly not yet created) store itself, so
                // creation, WAL switch, migration and key-file creation race too.
                register(&home, &format!("thread-{i:02}"));
            })
        })
        .collect();
    // Readers list all the while; they must never fail or see a torn state.
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let home = home.path().to_path_buf();
            let barrier = barrier.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let store = Store::open(&home).expect("reader open");
                let mut last = 0;
                while !done.load(Ordering::Relaxed) {
                    let n = store
                        .list_connectors(&ConnectorFilter::new())
                        .expect("reader list")
                        .len();
                    assert!(n >= last, "connectors disappeared: {n} < {last}");
                    last = n;
                }
            })
        })
        .collect();
    for t in writers {
        t.join().expect("a writer thread failed");
    }
    done.store(true, Ordering::Relaxed);
    for t in readers {
        t.join().expect("a reader thread failed");
    }
    assert_all_registered(home.path(), "thread-");
}

/// Run as a child process by `thirty_two_processes_register_at_once`; a no-op otherwise.
#[test]
fn child_register_connector() {
    let (Ok(home), Ok(name)) = (std::env::var(CHILD_HOME), std::env::var(CHILD_NAME)) else {
        return;
    };
    register(Path::new(&home), &name);
}

#[test]
fn thirty_two_processes_register_at_once() {
    let home = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..WRITERS)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_register_connector",
                    "--test-threads=1",
                    "--quiet",
                ])
                .env(CHILD_HOME, home.path())
                .env(CHILD_NAME, format!("process-{i:02}"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "writer process {i} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_all_registered(home.path(), "process-");
}
