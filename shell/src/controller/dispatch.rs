//! [`Effects`] against the real world: webhooks and metric queries answer the core's requests;
//! commands go to the executor (anything that changes Kubernetes objects) or are carried out
//! here (events, alerts, operator metrics, post-rollout hooks).

use std::collections::BTreeMap;
use std::time::Duration;

use flagger_core::api::Canary;
use flagger_core::command::{
    Alert, AlertDestination, Command, EventSeverity, HookCall, HookPayload, MetricQuery,
    MetricSource, Request,
};
use flagger_core::policy::{HookType, Policy};
use flagger_core::{CanaryStatus, hash};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::outbox::Delivery;
use super::run::{Answer, Effects};
use crate::metrics::{QueryContext, TemplateData};
use crate::notifier::Notifier;
use crate::webhook;

pub struct ClusterEffects<'a> {
    pub ctx: &'a Context,
}

impl Effects for ClusterEffects<'_> {
    async fn answer(&self, canary: &Canary, request: &Request) -> Answer {
        match request {
            Request::Hook(call) => Answer::Hook(webhook::call(&self.ctx.http, call).await),
            Request::Metric(q) => {
                let qc = self.query_context(canary, q).await;
                Answer::Metric(self.ctx.metrics_client.answer(q, &qc).await)
            }
        }
    }

    async fn execute(&self, canary: &Canary, command: &Command) -> Result<(), String> {
        match command {
            Command::EmitEvent { severity, message } => {
                self.emit(canary, *severity, message).await;
                Ok(())
            }
            Command::SendAlert(alert) => {
                self.alert(canary, alert).await;
                Ok(())
            }
            Command::RecordMetric(record) => {
                let ns = canary.namespace().unwrap_or_default();
                self.ctx
                    .state
                    .metrics
                    .record(record, &canary.spec.target_ref.name, &ns);
                Ok(())
            }
            Command::RunPostRolloutHooks { hooks, .. } => {
                for hook in hooks {
                    let answer = webhook::call(&self.ctx.http, hook).await;
                    let (severity, message) = flagger_core::events::post_rollout(hook, &answer);
                    self.emit(canary, severity, &message).await;
                }
                Ok(())
            }
            Command::WriteStatus(status) => {
                self.ctx.executor.execute(canary, command).await?;
                self.await_status_in_cache(canary, status).await;
                Ok(())
            }
            other => self.ctx.executor.execute(canary, other).await,
        }
    }
}

impl ClusterEffects<'_> {
    /// Logs the event, records it on the Canary and forwards it to the event webhooks.
    pub async fn emit(&self, canary: &Canary, severity: EventSeverity, message: &str) {
        let name = canary.name_any();
        let ns = canary.namespace().unwrap_or_default();
        let id = format!("{name}.{ns}");
        match severity {
            EventSeverity::Normal => tracing::info!(canary = %id, "{message}"),
            EventSeverity::Warning => tracing::warn!(canary = %id, "{message}"),
        }
        if let Err(e) = self
            .ctx
            .events
            .publish(&canary.object_ref(&()), severity, message)
            .await
        {
            tracing::warn!(canary = %id, error = %e, "publishing the Kubernetes event failed");
        }
        for d in event_deliveries(
            canary,
            &self.ctx.settings,
            severity,
            message,
            Timestamp::now(),
        ) {
            self.ctx.outbox.send(d);
        }
    }

    async fn alert(&self, canary: &Canary, alert: &Alert) {
        let name = canary.name_any();
        let ns = canary.namespace().unwrap_or_default();
        let notifier = match &alert.destination {
            AlertDestination::Global => Ok(self.ctx.global_notifier.clone()),
            AlertDestination::Provider {
                name: provider,
                namespace,
                ..
            } => self.provider_notifier(namespace, provider).await,
        };
        match notifier {
            Ok(notifier) if notifier.is_enabled() => self.ctx.outbox.send(Delivery::Alert {
                notifier,
                alert: alert.clone(),
                canary: name,
                namespace: ns,
            }),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(canary = %format!("{name}.{ns}"), error = %e, "alert not sent")
            }
        }
    }

    async fn provider_notifier(&self, namespace: &str, name: &str) -> Result<Notifier, String> {
        let key = ObjectRef::new(name).within(namespace);
        let provider = self
            .ctx
            .stores
            .providers
            .get(&key)
            .ok_or_else(|| format!("alert provider {name}.{namespace} not found"))?;
        let secret = match &provider.spec.secret_ref {
            Some(r) => Some(self.secret_data(namespace, &r.name).await?),
            None => None,
        };
        Notifier::from_provider(&provider.spec, secret.as_ref())
    }

    async fn query_context(&self, canary: &Canary, q: &MetricQuery) -> QueryContext {
        let template = match &q.source {
            MetricSource::Template {
                name, namespace, ..
            } => Some(self.template(namespace, name).await),
            _ => None,
        };
        QueryContext {
            default_server: self.ctx.settings.metrics_server.clone(),
            canary_metrics_server: canary.spec.metrics_server.clone(),
            canary_name: canary.name_any(),
            template,
        }
    }

    async fn template(&self, namespace: &str, name: &str) -> Result<TemplateData, String> {
        let key = ObjectRef::new(name).within(namespace);
        let t = self
            .ctx
            .stores
            .templates
            .get(&key)
            .ok_or_else(|| format!("metric template {name}.{namespace} not found"))?;
        let secret = match &t.spec.provider.secret_ref {
            Some(r) => Some(self.secret_data(namespace, &r.name).await?),
            None => None,
        };
        Ok(TemplateData {
            spec: t.spec.clone(),
            secret,
        })
    }

    /// From the cache when Secrets are watched (config tracking), else one GET: templates and
    /// providers with credentials are few, and watching every Secret only for them is not worth it.
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, String> {
        // Cached only when a target uses it too, and then without the content of types never
        // tracked.
        let cached = self.ctx.stores.secrets.as_ref().and_then(|s| {
            s.get(namespace, name)
                .filter(|s| s.data.is_some())
                .map(|s| (*s).clone())
        });
        let secret = match cached {
            Some(s) => s,
            None => Api::<Secret>::namespaced(self.ctx.client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| format!("secret {name}.{namespace} error: {e}"))?,
        };
        Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect())
    }

    /// Waits (bounded) until the Canary cache holds the status just written. Reconciles build
    /// their snapshot from the cache; one that ran on the status from before this write would
    /// repeat the step it just took.
    async fn await_status_in_cache(&self, canary: &Canary, written: &CanaryStatus) {
        let key = ObjectRef::from_obj(canary);
        let deadline = tokio::time::Instant::now() + self.ctx.settings.status_sync_timeout;
        loop {
            let cached = self.ctx.stores.canaries.get(&key);
            let seen = cached.as_ref().is_none_or(|c| {
                c.status.as_ref().map(|s| s.last_transition_time)
                    == Some(written.last_transition_time)
            });
            if seen {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::debug!(canary = %key, "the watch cache has not shown the written status yet");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Where an event goes besides Kubernetes: the Canary's `event` hooks, or `-event-webhook` when
/// it has none (Flagger's rule).
pub fn event_deliveries(
    canary: &Canary,
    settings: &super::context::Settings,
    severity: EventSeverity,
    message: &str,
    now: Timestamp,
) -> Vec<Delivery> {
    let name = canary.name_any();
    let namespace = canary.namespace().unwrap_or_default();
    let status = canary.status.clone().unwrap_or_default();
    let event_type = match severity {
        EventSeverity::Normal => "Normal",
        EventSeverity::Warning => "Warning",
    };
    let base = HookPayload {
        name: name.clone(),
        namespace: namespace.clone(),
        phase: flagger_core::events::announced_phase(message)
            .or(status.phase)
            .map(|p| p.as_str())
            .unwrap_or("")
            .to_string(),
        checksum: hash::checksum(
            status.tracked_configs.as_ref(),
            status.last_applied_spec.as_deref(),
        ),
        metadata: BTreeMap::new(),
    };
    let hooks: Vec<_> = Policy::from_spec(&name, &namespace, &canary.spec, &settings.config)
        .map(|p| p.hooks_of(HookType::Event).cloned().collect())
        .unwrap_or_default();
    if hooks.is_empty() {
        return settings
            .event_webhook
            .iter()
            .map(|url| Delivery::EventWebhook {
                url: url.clone(),
                payload: webhook::event_payload(&base, message, event_type, now),
            })
            .collect();
    }
    hooks
        .into_iter()
        .map(|h| {
            let with_meta = HookPayload {
                metadata: h.metadata.clone(),
                ..base.clone()
            };
            Delivery::EventHook(HookCall {
                name: h.name.clone(),
                hook_type: HookType::Event.as_str().to_string(),
                url: h.url.clone(),
                timeout: h.timeout,
                retries: h.retries,
                disable_tls: h.disable_tls,
                payload: webhook::event_payload(&with_meta, message, event_type, now),
            })
        })
        .collect()
}
