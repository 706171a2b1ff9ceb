//! The `kubernetes` provider: no mesh. The apex Service's selector is the whole routing, and the
//! Services are applied by the executor for every provider, so there is nothing to add here.
//! Only blue/green is possible; core turns other strategies into it and never asks for weights.

use flagger_core::Routes;
use flagger_core::api::Canary;
use kube::core::DynamicObject;

pub fn desired_objects(_canary: &Canary, _routes: Routes) -> Vec<DynamicObject> {
    Vec::new()
}
