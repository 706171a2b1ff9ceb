//! One scenario: its own namespace, its own log directory, and helpers to create objects and
//! read back what the operator did (Canary status, Deployments, routes, events).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use flagger_core::api::{Canary, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::{Value, json};

use crate::Result;
use crate::env::Env;
use crate::operator::{Operator, OperatorOpts};

const FIELD_MANAGER: &str = "flagger-e2e";

pub struct Scenario {
    pub name: String,
    pub ns: String,
    pub env: Env,
    pub client: Client,
    /// `<logs>/<name>`: operator logs, traces, replay outputs.
    pub dir: PathBuf,
    http: reqwest::Client,
}

/// An event about a Canary, as read back from `core/v1`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventInfo {
    pub type_: String,
    pub reason: String,
    pub note: String,
    /// `source.component`, what event exporters filter on.
    pub source_component: String,
    pub reporting_controller: String,
    pub reporting_instance: String,
    /// How often the same message was reported (client-go's `count`).
    pub count: i32,
}

pub fn resource(api_version: &str, kind: &str) -> Result<ApiResource> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "Deployment" => "deployments",
        "Canary" => "canaries",
        "MetricTemplate" => "metrictemplates",
        "VirtualService" => "virtualservices",
        "HTTPRoute" => "httproutes",
        "Ingress" => "ingresses",
        "Service" => "services",
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "Lease" => "leases",
        other => return Err(format!("no plural known for kind {other}").into()),
    };
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        plural,
    ))
}

impl Scenario {
    /// Creates namespace `e2e-<name>` (replacing a leftover one) and an empty log directory.
    pub async fn new(name: &str) -> Result<Scenario> {
        let env = Env::from_env()?;
        let client = crate::kube_client(Some(&env.kubeconfig)).await?;
        let ns = format!("e2e-{}", name.replace('_', "-"));
        let dir = env.logs.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        if namespaces.get_opt(&ns).await?.is_some() {
            let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while namespaces.get_opt(&ns).await?.is_some() {
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("leftover namespace {ns} is not going away").into());
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        let object: Namespace = serde_json::from_value(json!({
            "metadata": {"name": ns, "labels": {"flagger-e2e/scenario": name}}
        }))?;
        namespaces.create(&PostParams::default(), &object).await?;
        Ok(Scenario {
            name: name.into(),
            ns,
            env,
            client,
            dir,
            http: reqwest::Client::builder().no_proxy().build()?,
        })
    }

    pub async fn operator(&self, opts: &OperatorOpts) -> Result<Operator> {
        Operator::start(&self.env, &self.ns, &self.dir, opts).await
    }

    fn dynamic(&self, obj: &Value) -> Result<(Api<DynamicObject>, String)> {
        let api_version = obj["apiVersion"]
            .as_str()
            .ok_or("object without apiVersion")?;
        let kind = obj["kind"].as_str().ok_or("object without kind")?;
        let name = obj["metadata"]["name"]
            .as_str()
            .ok_or("object without metadata.name")?;
        let ar = resource(api_version, kind)?;
        Ok((
            Api::namespaced_with(self.client.clone(), &self.ns, &ar),
            name.to_string(),
        ))
    }

    /// Server-side apply, as `kubectl apply --server-side` would.
    pub async fn apply(&self, obj: &Value) -> Result<(), kube::Error> {
        let (api, name) = self
            .dynamic(obj)
            .map_err(|e| kube::Error::Service(e.to_string().into()))?;
        let mut obj = obj.clone();
        obj["metadata"]["namespace"] = json!(self.ns);
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await?;
        Ok(())
    }

    /// Creates an object, returning the API server's refusal as is.
    pub async fn create(&self, obj: &Value) -> Result<(), kube::Error> {
        let (api, _) = self
            .dynamic(obj)
            .map_err(|e| kube::Error::Service(e.to_string().into()))?;
        let mut obj = obj.clone();
        obj["metadata"]["namespace"] = json!(self.ns);
        let dynamic: DynamicObject =
            serde_json::from_value(obj).map_err(kube::Error::SerdeError)?;
        api.create(&PostParams::default(), &dynamic)
            .await
            .map(|_| ())
    }

    /// A JSON merge patch of a Deployment (a new image, a pod label, …).
    pub async fn patch_deployment(&self, name: &str, patch: Value) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Rolls out a new revision: the container image changes.
    pub async fn set_image(&self, name: &str, image: &str) -> Result<()> {
        // A strategic-merge-free way to replace the one container's image.
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        let d = api.get(name).await?;
        let mut template = serde_json::to_value(d.spec.ok_or("deployment without spec")?.template)?;
        template["spec"]["containers"][0]["image"] = json!(image);
        self.patch_deployment(name, json!({"spec": {"template": template}}))
            .await
    }

    /// What `workload` (a Deployment name) answers from now on, in the telemetry generator.
    pub async fn behave(&self, workload: &str, error_rate: f64, latency_ms: f64) -> Result<()> {
        let url = format!("{}/scenario/{}/{workload}", self.env.telemetry, self.ns);
        let r = self
            .http
            .put(&url)
            .json(&json!({"errorRate": error_rate, "latencyMs": latency_ms}))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("PUT {url}: {} {}", r.status(), r.text().await?).into());
        }
        Ok(())
    }

    /// The value of the instant query `promql` on the suite's Prometheus (the one the operator
    /// reads); `None` when the result is empty.
    pub async fn prometheus_value(&self, promql: &str) -> Result<Option<f64>> {
        let url = format!("{}/api/v1/query", self.env.prometheus);
        let r: serde_json::Value = self
            .http
            .get(&url)
            .query(&[("query", promql)])
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let Some(first) = r["data"]["result"].as_array().and_then(|a| a.first()) else {
            return Ok(None);
        };
        let v = first["value"][1]
            .as_str()
            .ok_or_else(|| format!("{promql}: unexpected answer {r}"))?;
        Ok(Some(v.parse()?))
    }

    pub async fn canary(&self, name: &str) -> Result<Canary> {
        Ok(Api::<Canary>::namespaced(self.client.clone(), &self.ns)
            .get(name)
            .await?)
    }

    pub async fn deployment(&self, name: &str) -> Result<Option<Deployment>> {
        Ok(Api::<Deployment>::namespaced(self.client.clone(), &self.ns)
            .get_opt(name)
            .await?)
    }

    /// `spec.replicas` of a Deployment (`None` when it does not exist).
    pub async fn replicas(&self, name: &str) -> Result<Option<i32>> {
        Ok(self
            .deployment(name)
            .await?
            .and_then(|d| d.spec)
            .and_then(|s| s.replicas))
    }

    /// The container image of a Deployment's pod template.
    pub async fn image(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .deployment(name)
            .await?
            .and_then(|d| d.spec)
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.first().and_then(|c| c.image.clone())))
    }

    /// Any namespaced object as JSON, `None` when absent.
    pub async fn get(&self, api_version: &str, kind: &str, name: &str) -> Result<Option<Value>> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns, &resource(api_version, kind)?);
        Ok(api
            .get_opt(name)
            .await?
            .map(|o| serde_json::to_value(o).unwrap_or(Value::Null)))
    }

    /// The core/v1 Events regarding the Canary `name` (the form Flagger writes), oldest first.
    pub async fn core_events(&self, name: &str) -> Result<Vec<CoreEvent>> {
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), &self.ns);
        let mut list: Vec<CoreEvent> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some("Canary")
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .collect();
        // Names are `<object>.<creation time in hex nanoseconds>`, as client-go names them: within
        // one object they sort in the order the events were first written.
        list.sort_by(|a, b| {
            let key = |e: &CoreEvent| {
                (
                    e.first_timestamp.as_ref().map(|t| t.0),
                    e.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        Ok(list)
    }

    /// Events regarding the Canary `name`, oldest first, read as Flagger users read them:
    /// `core/v1` (`kubectl get events`, event exporters).
    pub async fn events(&self, name: &str) -> Result<Vec<EventInfo>> {
        let list = self.core_events(name).await?;
        Ok(list
            .into_iter()
            .map(|e| EventInfo {
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                note: e.message.unwrap_or_default(),
                source_component: e.source.and_then(|s| s.component).unwrap_or_default(),
                reporting_controller: e.reporting_component.unwrap_or_default(),
                reporting_instance: e.reporting_instance.unwrap_or_default(),
                count: e.count.unwrap_or(1),
            })
            .collect())
    }

    /// The notes of [`Scenario::events`].
    pub async fn event_notes(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .events(name)
            .await?
            .into_iter()
            .map(|e| e.note)
            .collect())
    }

    /// Polls `check` every 200 ms until it yields a value; on timeout the error names `what` and
    /// the Canary's state.
    pub async fn wait_for<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_error = None;
        loop {
            match check().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last_error = Some(e.to_string()),
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}{}\n{}",
                    last_error
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default(),
                    self.describe().await
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the Canary reaches `phase`; fails at once on a different resting phase
    /// (Succeeded or Failed), which it would never leave by itself.
    pub async fn wait_phase(&self, name: &str, phase: Phase, timeout: Duration) -> Result<Canary> {
        let what = format!("canary {name} to reach {phase:?}");
        let result = self
            .wait_for(&what, timeout, || async {
                let c = self.canary(name).await?;
                let now = c.status.as_ref().and_then(|s| s.phase);
                match now {
                    Some(p) if p == phase => Ok(Some(Ok(c))),
                    Some(p @ (Phase::Succeeded | Phase::Failed)) if p != phase => Ok(Some(Err(
                        format!("canary {name} is {p:?}, expected {phase:?}"),
                    ))),
                    _ => Ok(None),
                }
            })
            .await?;
        match result {
            Ok(c) => Ok(c),
            Err(e) => Err(format!("{e}\n{}", self.describe().await).into()),
        }
    }

    /// Every Canary's status and events, for failure messages.
    pub async fn describe(&self) -> String {
        let mut out = String::new();
        let canaries = Api::<DynamicObject>::namespaced_with(
            self.client.clone(),
            &self.ns,
            &resource("flagger.app/v1beta1", "Canary").expect("known kind"),
        );
        match canaries.list(&ListParams::default()).await {
            Ok(list) => {
                for c in list {
                    let name = c.metadata.name.clone().unwrap_or_default();
                    out.push_str(&format!(
                        "canary {name} status: {}\n",
                        serde_json::to_string(&c.data["status"]).unwrap_or_default()
                    ));
                    if let Ok(events) = self.events(&name).await {
                        for e in events {
                            out.push_str(&format!(
                                "  event {} x{} [{}]: {}\n",
                                e.type_, e.count, e.reporting_instance, e.note
                            ));
                        }
                    }
                }
            }
            Err(e) => out.push_str(&format!("listing canaries failed: {e}\n")),
        }
        out
    }

    /// Deletes the namespace without waiting (the next run replaces leftovers anyway).
    pub async fn finish(self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces.delete(&self.ns, &DeleteParams::default()).await;
    }
}
