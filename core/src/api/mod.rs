//! The resources users write, in Flagger's exact shape.

pub mod alert_provider;
pub mod canary;
pub mod duration;
pub mod metric_template;
mod schema;
pub mod session_affinity;
pub mod status;

pub use alert_provider::{AlertProvider, AlertProviderSpec};
pub use canary::*;
pub use duration::{format_go_duration, parse_go_duration};
pub use metric_template::{MetricTemplate, MetricTemplateSpec};
pub use session_affinity::SessionAffinity;
pub use status::{CanaryCondition, CanaryStatus, ConditionStatus, Phase};
