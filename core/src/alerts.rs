//! Which notifier receives an alert: the canary's own AlertProviders by severity, or the
//! operator's global notifier when the canary names none.

use crate::command::{Alert, AlertDestination, AlertSeverity};
use crate::policy::{Policy, Strategy};

/// Flagger's alert metadata fields.
pub fn metadata_fields(p: &Policy) -> Vec<(String, String)> {
    // What the spec asks for, as Flagger prints it, also where the kubernetes provider runs it
    // as blue/green.
    let routing = match &p.declared_strategy {
        Strategy::AbTesting { .. } => "A/B Testing".to_string(),
        Strategy::BlueGreen { .. } => "Blue/Green".to_string(),
        Strategy::Canary(c) => match &c.steps {
            crate::policy::Steps::Linear(s) => format!("Weight step: {} max: {}", s, c.max_weight),
            crate::policy::Steps::Ladder(l) => {
                let ladder = l.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
                format!("Weight steps: {} max: {}", ladder, c.max_weight)
            }
        },
    };
    vec![
        (
            "Target".into(),
            format!("Deployment/{}.{}", p.target, p.namespace),
        ),
        ("Failed checks threshold".into(), p.threshold.to_string()),
        (
            "Progress deadline".into(),
            format!("{}s", p.progress_deadline.as_secs()),
        ),
        ("Traffic routing".into(), routing),
    ]
}

pub fn route(
    p: &Policy,
    global: bool,
    cluster: &str,
    severity: AlertSeverity,
    message: &str,
    with_metadata: bool,
) -> Vec<Alert> {
    // Flagger names the cluster first, before the canary's metadata.
    let mut fields = Vec::new();
    if !cluster.is_empty() {
        fields.push(("Cluster".into(), cluster.to_string()));
    }
    if with_metadata {
        fields.extend(metadata_fields(p));
    }
    let alert = |destination| Alert {
        destination,
        severity,
        message: message.to_string(),
        fields: fields.clone(),
    };
    if p.alerts.is_empty() {
        return if global {
            vec![alert(AlertDestination::Global)]
        } else {
            Vec::new()
        };
    }
    p.alerts
        .iter()
        .filter(|a| a.accepts(severity))
        .map(|a| {
            alert(AlertDestination::Provider {
                alert: a.name.clone(),
                name: a.provider_name.clone(),
                namespace: a.provider_namespace.clone(),
            })
        })
        .collect()
}
