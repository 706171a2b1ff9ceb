//! Durations on the wire as Go duration strings (`1m30s`), matching the Canary spec's own format.

use jiff::SignedDuration;
use serde::{Deserialize, Deserializer, Serializer};

use crate::api::{format_go_duration, parse_go_duration};

pub fn serialize<S: Serializer>(d: &SignedDuration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_go_duration(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SignedDuration, D::Error> {
    let text = String::deserialize(d)?;
    parse_go_duration(&text).map_err(serde::de::Error::custom)
}
