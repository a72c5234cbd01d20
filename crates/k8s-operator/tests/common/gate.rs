//! A client-side gate: a tower layer on the operator's `kube::Client` that holds chosen
//! requests (or their answers) until the test releases them. Tests use it to force an
//! interleaving of the operator's requests and the cluster's events deterministically,
//! without sleeping: the request really goes to the emulator over HTTPS, only its
//! timing is the test's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::sync::watch;

/// Which requests a hold applies to.
pub type Pred = Arc<dyn Fn(&http::Method, &http::Uri) -> bool + Send + Sync>;

struct Hold {
    pred: Pred,
    /// Holds only the first matching request (its answer) when set.
    once: bool,
    /// Whether the answer (rather than the request) is held.
    answer: bool,
    open: watch::Sender<bool>,
    held: watch::Sender<usize>,
}

/// The gate; clones share their holds.
#[derive(Clone, Default)]
pub struct Gate {
    holds: Arc<Mutex<Vec<Arc<Hold>>>>,
}

/// A hold the test opens.
#[derive(Clone)]
pub struct HoldHandle {
    hold: Arc<Hold>,
}

impl HoldHandle {
    /// Lets every held and later request (or answer) through.
    pub fn release(&self) {
        self.hold.open.send_replace(true);
    }

    /// Waits until `n` requests (or answers) are held.
    pub async fn wait_held(&self, n: usize) {
        let mut rx = self.hold.held.subscribe();
        rx.wait_for(|held| *held >= n)
            .await
            .expect("the hold lives");
    }
}

impl Gate {
    /// Holds every request matching `pred` before it is answered, until released.
    pub fn hold_requests(&self, pred: Pred) -> HoldHandle {
        self.add(pred, false, false)
    }

    /// Sends the first request matching `pred`, then holds its answer until released:
    /// the answer is what the cluster said when it answered, handed to the operator
    /// later.
    pub fn hold_first_answer(&self, pred: Pred) -> HoldHandle {
        self.add(pred, true, true)
    }

    fn add(&self, pred: Pred, once: bool, answer: bool) -> HoldHandle {
        let hold = Arc::new(Hold {
            pred,
            once,
            answer,
            open: watch::channel(false).0,
            held: watch::channel(0).0,
        });
        self.holds.lock().push(hold.clone());
        HoldHandle { hold }
    }

    fn holds_for(&self, method: &http::Method, uri: &http::Uri) -> Vec<Arc<Hold>> {
        let mut holds = self.holds.lock();
        let matching: Vec<Arc<Hold>> = holds
            .iter()
            .filter(|h| !*h.open.borrow() && (h.pred)(method, uri))
            .cloned()
            .collect();
        holds.retain(|h| !(h.once && matching.iter().any(|m| Arc::ptr_eq(m, h))));
        matching
    }

    /// The layer to put on a `kube::client::ClientBuilder`.
    pub fn layer(&self) -> GateLayer {
        GateLayer { gate: self.clone() }
    }
}

/// The tower layer of a [`Gate`].
#[derive(Clone)]
pub struct GateLayer {
    gate: Gate,
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The service of a [`GateLayer`].
pub struct GateService<S> {
    inner: S,
    gate: Gate,
}

async fn pass(hold: &Hold) {
    hold.held.send_modify(|n| *n += 1);
    let mut open = hold.open.subscribe();
    let _ = open.wait_for(|o| *o).await;
}

impl<S, B, R> tower::Service<http::Request<B>> for GateService<S>
where
    S: tower::Service<http::Request<B>, Response = R>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = R;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<R, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let holds = self.gate.holds_for(request.method(), request.uri());
        let response = self.inner.call(request);
        Box::pin(async move {
            for hold in holds.iter().filter(|h| !h.answer) {
                pass(hold).await;
            }
            let answer = response.await;
            for hold in holds.iter().filter(|h| h.answer) {
                pass(hold).await;
            }
            answer
        })
    }
}

/// Watch requests for Jobs.
pub fn jobs_watch() -> Pred {
    Arc::new(|method, uri| {
        method == http::Method::GET
            && uri.path().ends_with("/jobs")
            && uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "watch=true"))
    })
}

/// A GET of one Job.
pub fn get_job(namespace: &str, name: &str) -> Pred {
    let path = format!("/apis/batch/v1/namespaces/{namespace}/jobs/{name}");
    Arc::new(move |method, uri| method == http::Method::GET && uri.path() == path)
}

/// An operator for namespace `ml` of `cluster` whose client goes through `gate`.
pub async fn gated_operator(
    cluster: &stepstack_testkit::Cluster,
    gate: &Gate,
    state_dir: Option<&std::path::Path>,
) -> stepstack_k8s_operator::KubernetesStepOperator {
    let config = kube::Config::from_custom_kubeconfig(
        cluster.kubeconfig().unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let url = config.cluster_url.to_string();
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&gate.layer())
        .build();
    let mut context = stepstack_core::StepOperatorContext::new("k8s");
    if let Some(dir) = state_dir {
        context = context.with_state_dir(dir);
    }
    stepstack_k8s_operator::KubernetesStepOperator::with_client(
        stepstack_settings::KubernetesStepOperatorConfig {
            kubernetes_namespace: super::NS.into(),
            ..Default::default()
        },
        context,
        client,
        url,
    )
}
