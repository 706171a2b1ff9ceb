//! Several active replicas (`-shards N`): Canaries are split into N shards by a stable hash of
//! `namespace/name` (or of the namespace, `-shard-by=namespace`); each shard has a Lease
//! (`flagger-shard-<i>`) and each replica acts only on the Canaries of the shards it holds.
//! Replicas announce themselves with one membership Lease each and take their fair share of the
//! shards; when one joins, the others release their extras, and when one dies, its shards expire
//! and the survivors share them. Every replica keeps every watch cache, so a shard that moves is
//! acted on at once by its new holder.
//!
//! - [`assign`]: the shard of a Canary and the plan of each replica (pure).
//! - [`lease`]: the Leases and when they expire, as one replica sees it.
//! - [`gate`]: what the controller may act on now, and cancelling what it may not.
//! - [`manager`]: the loop that renews, releases and acquires.

pub mod assign;
pub mod gate;
pub mod lease;
pub mod manager;

pub use assign::ShardBy;
pub use gate::{Permit, Shards};
pub use manager::{Config, Manager};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;

use flagger_core::api::Canary;
use kube::ResourceExt;

/// The Canaries of each shard this replica gains, to be reconciled at once.
pub fn gained_canaries(
    shards: &Arc<Shards>,
    canaries: Store<Canary>,
) -> impl Stream<Item = ObjectRef<Canary>> + Send + 'static {
    let gained = shards.take_gained();
    let shards = shards.clone();
    let stream = match gained {
        Some(rx) => tokio_stream_from(rx).boxed(),
        None => futures::stream::empty().boxed(),
    };
    stream.flat_map(move |shard| {
        let refs: Vec<_> = canaries
            .state()
            .iter()
            .filter(|c| shards.shard_of(&c.namespace().unwrap_or_default(), &c.name_any()) == shard)
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect();
        futures::stream::iter(refs)
    })
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
