//! `analysis.sessionAffinity` as the routers see it: which cookie routes a weighted split needs,
//! from the cookies the core keeps in the status (the router never makes them up).

use flagger_core::Routes;
use flagger_core::api::session_affinity::{cookie_regex, expire_cookie};
use flagger_core::api::{Canary, SessionAffinity, parse_go_duration};

/// The cookies session affinity routes on; each router places them in its own vocabulary.
pub enum Affinity {
    /// The canary gets traffic: clients holding `canary` stay on it, those holding `primary`
    /// on the primary, and the weighted route hands both cookies out.
    Pin {
        canary: StickyCookie,
        primary: Option<StickyCookie>,
    },
    /// The canary gets nothing: clients still holding the last run's cookie are told to drop it.
    Expire(StickyCookie),
}

/// A cookie as a `Cookie` header expression to match and the `Set-Cookie` value to send.
pub struct StickyCookie {
    pub regex: String,
    pub set_cookie: String,
}

/// What session affinity adds to a weighted split of `routes`; `None` without it, without
/// cookies in the status, or under A/B testing, whose matches decide alone.
pub fn session_affinity(canary: &Canary, routes: Routes) -> Option<Affinity> {
    let analysis = canary.spec.analysis()?;
    if analysis.match_.as_ref().is_some_and(|m| !m.is_empty()) {
        return None;
    }
    // Core refuses a Canary whose settings do not parse before it routes anything.
    let affinity = SessionAffinity::from_spec(analysis.session_affinity.as_ref()?).ok()?;
    let status = canary.status.as_ref()?;
    if routes.canary_weight == 0 {
        let previous = status.previous_session_affinity_cookie.as_deref()?;
        return Some(Affinity::Expire(StickyCookie {
            regex: cookie_regex(previous),
            set_cookie: expire_cookie(previous),
        }));
    }
    let cookie = status.session_affinity_cookie.as_deref()?;
    // The primary cookie lasts one interval, so primary clients are rebalanced at each step.
    let interval = analysis
        .interval
        .as_deref()
        .and_then(|i| parse_go_duration(i).ok())
        .map_or(60, |d| d.as_secs());
    let primary = status
        .primary_session_affinity_cookie
        .as_deref()
        .filter(|_| !affinity.primary_cookie_name.is_empty())
        .map(|pc| StickyCookie {
            regex: cookie_regex(pc),
            set_cookie: affinity.set_cookie(pc, interval),
        });
    Some(Affinity::Pin {
        canary: StickyCookie {
            regex: cookie_regex(cookie),
            set_cookie: affinity.set_cookie(cookie, affinity.max_age()),
        },
        primary,
    })
}

/// How a router writes one route (an Istio HTTP route, a Gateway API rule) in its vocabulary.
pub trait RouteVocabulary {
    type Route;
    /// A route for requests carrying `cookie`, split `primary`/`canary` by weight.
    fn sticky(&self, cookie: &StickyCookie, primary: i32, canary: i32) -> Self::Route;
    /// Has destination `index` (0 primary, 1 canary) of `route` hand out `set_cookie`.
    fn destination_cookie(&self, route: &mut Self::Route, index: usize, set_cookie: &str);
    /// Has the whole `route` send `set_cookie`.
    fn route_cookie(&self, route: &mut Self::Route, set_cookie: &str);
}

/// Flagger's route order: the sticky canary route, then the sticky primary one, ahead of the
/// weighted route that hands both cookies out; with no canary traffic, the last run's cookie is
/// expired by a route ahead of the weighted one.
pub fn with_session_affinity<V: RouteVocabulary>(
    vocabulary: &V,
    canary: &Canary,
    routes: Routes,
    mut weighted: V::Route,
) -> Vec<V::Route> {
    match session_affinity(canary, routes) {
        None => vec![weighted],
        Some(Affinity::Pin {
            canary: pin,
            primary,
        }) => {
            vocabulary.destination_cookie(&mut weighted, 1, &pin.set_cookie);
            let mut all = vec![vocabulary.sticky(&pin, 0, 100)];
            if let Some(primary) = primary {
                vocabulary.destination_cookie(&mut weighted, 0, &primary.set_cookie);
                all.push(vocabulary.sticky(&primary, 100, 0));
            }
            all.push(weighted);
            all
        }
        Some(Affinity::Expire(previous)) => {
            let mut expiring = vocabulary.sticky(&previous, routes.primary_weight, 0);
            vocabulary.route_cookie(&mut expiring, &previous.set_cookie);
            vec![expiring, weighted]
        }
    }
}
