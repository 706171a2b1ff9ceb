//! Answers the decision function's metric questions ([`MetricQuery`]) by querying Prometheus.
//!
//! - Built-ins (`request-success-rate`, `request-duration`) and inline `query`s go to the Canary's
//!   `metricsServer`, or the operator's `-metrics-server`.
//! - `templateRef`s go to the MetricTemplate's own provider, with the credentials of its Secret.
//!   The caller resolves the template and Secret from its caches and passes them in
//!   [`QueryContext::template`]; this module does no Kubernetes I/O.
//!
//! Every failure (unreachable server, HTTP error, bad template, unsupported provider) becomes a
//! [`MetricAnswer::Error`]; a query that finds no data becomes [`MetricAnswer::NoValues`].

pub mod builtin;
pub mod prometheus;
pub mod template;

use std::collections::BTreeMap;
use std::time::Duration;

use flagger_core::MetricAnswer;
use flagger_core::api::MetricTemplateSpec;
use flagger_core::command::{MetricQuery, MetricSource};

use self::builtin::Builtin;
use self::prometheus::{Endpoint, QUERY_TIMEOUT, run_query};
use self::template::{TemplateModel, render};

/// A MetricTemplate as read by the caller, with the data of the Secret its provider names.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateData {
    pub spec: MetricTemplateSpec,
    /// `None` when the provider has no `secretRef`.
    pub secret: Option<BTreeMap<String, Vec<u8>>>,
}

/// What one query needs beyond the [`MetricQuery`] itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryContext {
    /// The operator's `-metrics-server`.
    pub default_server: String,
    /// The Canary's `spec.metricsServer`, which overrides `default_server`.
    pub canary_metrics_server: Option<String>,
    /// The Canary's name (`{{ name }}` in templates).
    pub canary_name: String,
    /// For [`MetricSource::Template`] only: the template `source.namespace/source.name` (and its
    /// Secret's data), or why it could not be read (`"metric template x.y not found"`, a Secret
    /// error). `None` is reported as not found.
    pub template: Option<Result<TemplateData, String>>,
}

impl QueryContext {
    fn server(&self) -> &str {
        self.canary_metrics_server
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.default_server)
    }
}

/// Runs metric queries; cheap to clone and meant to be shared.
#[derive(Debug, Clone)]
pub struct MetricsClient {
    client: reqwest::Client,
    /// For providers with `insecureSkipVerify: true`.
    insecure: reqwest::Client,
    timeout: Duration,
}

impl MetricsClient {
    /// A client with Flagger's 5 s query timeout.
    pub fn new() -> Result<MetricsClient, String> {
        Self::with_timeout(QUERY_TIMEOUT)
    }

    pub fn with_timeout(timeout: Duration) -> Result<MetricsClient, String> {
        let build = |insecure: bool| {
            crate::webhook::http_client_builder()
                .tls_danger_accept_invalid_certs(insecure)
                .build()
                .map_err(|e| format!("building the HTTP client failed: {e}"))
        };
        Ok(MetricsClient {
            client: build(false)?,
            insecure: build(true)?,
            timeout,
        })
    }

    /// The answer to `q`; never panics and never takes longer than the timeout (plus rendering).
    pub async fn answer(&self, q: &MetricQuery, ctx: &QueryContext) -> MetricAnswer {
        match &q.source {
            MetricSource::RequestSuccessRate => self.builtin(q, ctx, Builtin::SuccessRate).await,
            MetricSource::RequestDuration => self.builtin(q, ctx, Builtin::Duration).await,
            MetricSource::Inline { query } => {
                let endpoint = match Endpoint::plain(ctx.server()) {
                    Ok(e) => e,
                    Err(e) => return MetricAnswer::Error(e),
                };
                self.render_and_run(query, &model(q, ctx, BTreeMap::new()), &endpoint)
                    .await
            }
            MetricSource::Template {
                name,
                namespace,
                variables,
            } => {
                let data = match &ctx.template {
                    Some(Ok(data)) => data,
                    Some(Err(e)) => return MetricAnswer::Error(e.clone()),
                    None => {
                        return MetricAnswer::Error(format!(
                            "metric template {name}.{namespace} not found"
                        ));
                    }
                };
                let provider = &data.spec.provider;
                if provider.type_ != "prometheus" {
                    return MetricAnswer::Error(format!(
                        "provider type {} is not supported",
                        provider.type_
                    ));
                }
                let endpoint = match Endpoint::from_provider(provider, data.secret.as_ref()) {
                    Ok(e) => e,
                    Err(e) => {
                        return MetricAnswer::Error(format!(
                            "metric template {name}.{namespace} provider {} error: {e}",
                            provider.type_
                        ));
                    }
                };
                self.render_and_run(
                    &data.spec.query,
                    &model(q, ctx, variables.clone()),
                    &endpoint,
                )
                .await
            }
        }
    }

    /// Whether `address` answers `vector(1)` with 1, as Flagger checks at startup.
    pub async fn is_online(&self, address: &str) -> Result<(), String> {
        let endpoint = Endpoint::plain(address)?;
        match run_query(&self.client, &endpoint, "vector(1)", self.timeout).await {
            MetricAnswer::Value(1.0) => Ok(()),
            MetricAnswer::Value(v) => Err(format!("value is {v}, not 1, for query: vector(1)")),
            MetricAnswer::NoValues(e) | MetricAnswer::Error(e) => {
                Err(format!("running query failed: {e}"))
            }
        }
    }

    async fn builtin(&self, q: &MetricQuery, ctx: &QueryContext, which: Builtin) -> MetricAnswer {
        let endpoint = match Endpoint::plain(ctx.server()) {
            Ok(e) => e,
            Err(e) => return MetricAnswer::Error(e),
        };
        let query = builtin::query_template(&q.provider, which);
        match self
            .render_and_run(query, &model(q, ctx, BTreeMap::new()), &endpoint)
            .await
        {
            MetricAnswer::Value(v) if which == Builtin::Duration => {
                MetricAnswer::Value(builtin::duration_millis(&q.provider, v))
            }
            other => other,
        }
    }

    async fn render_and_run(
        &self,
        template: &str,
        model: &TemplateModel,
        endpoint: &Endpoint,
    ) -> MetricAnswer {
        let query = match render(template, model) {
            Ok(q) => q,
            Err(e) => return MetricAnswer::Error(format!("query render error: {e}")),
        };
        let client = if endpoint.insecure_skip_verify {
            &self.insecure
        } else {
            &self.client
        };
        run_query(client, endpoint, &query, self.timeout).await
    }
}

fn model(
    q: &MetricQuery,
    ctx: &QueryContext,
    variables: BTreeMap<String, String>,
) -> TemplateModel {
    TemplateModel {
        name: ctx.canary_name.clone(),
        namespace: q.namespace.clone(),
        target: q.target.clone(),
        service: q.service.clone(),
        // Without an ingressRef Flagger uses the target; no supported router has a routeRef.
        ingress: q.ingress.clone().unwrap_or_else(|| q.target.clone()),
        route: q.target.clone(),
        interval: q.interval.clone(),
        variables,
    }
}
