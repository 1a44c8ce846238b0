//! Approved envelopes: ranges an operator may move setpoints within without raising drift.
//!
//! An approval token may carry an `envelope` claim: item path patterns (exact, or a prefix
//! ending in `*`, see [`path_matches`]) mapped to an allowed range (`min`..`max`, inclusive)
//! or a list of allowed values. Once applied it belongs to the baseline. A capture is then
//! judged on its *envelope-judged* state ([`Envelope::judge`]): every setpoint item the
//! baseline also holds as a setpoint, whose value differs from the baseline's but lies inside
//! its envelope, carries the baseline's value. So an operator's move inside the envelope gives
//! the baseline's digest (no drift), and an approval of a program change still matches while
//! a recipe value sits elsewhere inside its range. A move outside, or any change to an item no
//! envelope covers, stays in the judged state and is drift as always.
//!
//! Floats are compared at the width the device has them: a REAL (`F32`) value is compared with
//! the bounds rounded to `f32`, so a bound of `75.1` admits the REAL the HMI shows as `75.1`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::item::{Class, Item, path_matches};
use crate::snapshot::Snapshot;
use crate::value::Value;

/// One literal of a `one_of` list (numbers finite: [`Bound::one_of`] refuses others).
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// A number, compared numerically with integer and float items.
    Number(f64),
    /// Text, compared with text items.
    Text(String),
    /// A boolean, compared with boolean items.
    Bool(bool),
}

impl Literal {
    /// Whether `value` is this literal.
    fn admits(&self, value: &Value) -> bool {
        match (self, value) {
            (Literal::Bool(a), Value::Bool(b)) => a == b,
            (Literal::Text(a), Value::Text(b)) => a == b,
            (Literal::Number(n), Value::F32(v)) => (*n as f32) == *v,
            (Literal::Number(n), v) => numeric(v).is_some_and(|v| v == *n),
            _ => false,
        }
    }
}

impl Serialize for Literal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Literal::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                serializer.serialize_i64(*n as i64)
            }
            Literal::Number(n) => serializer.serialize_f64(*n),
            Literal::Text(t) => serializer.serialize_str(t),
            Literal::Bool(b) => serializer.serialize_bool(*b),
        }
    }
}

// Numbers in bounds are finite (checked where they are made), so equality is total.
impl Eq for Literal {}
impl Eq for Bound {}
impl Eq for Envelope {}

/// What an envelope allows for the items its pattern covers.
#[derive(Clone, Debug, PartialEq)]
pub enum Bound {
    /// A numeric range, both ends inclusive (`min <= max`, both finite).
    Range {
        /// The lowest allowed value.
        min: f64,
        /// The highest allowed value.
        max: f64,
    },
    /// The allowed values (at least one).
    OneOf(Vec<Literal>),
}

/// Why a bound cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    /// `min` above `max`.
    #[error("min {min} is above max {max}")]
    Inverted {
        /// As given.
        min: String,
        /// As given.
        max: String,
    },
    /// NaN or an infinity.
    #[error("min and max must be finite numbers")]
    NotFinite,
    /// An empty `one_of`.
    #[error("one_of lists no value")]
    Empty,
    /// A pattern that is empty, or has `*` anywhere but at its end.
    #[error("the path pattern {0:?} must be an item path, or a prefix ending in a single `*`")]
    Pattern(String),
}

impl Bound {
    /// A range, refused when inverted or not finite.
    pub fn range(min: f64, max: f64) -> Result<Self, BoundError> {
        if !min.is_finite() || !max.is_finite() {
            return Err(BoundError::NotFinite);
        }
        if min > max {
            return Err(BoundError::Inverted {
                min: min.to_string(),
                max: max.to_string(),
            });
        }
        Ok(Bound::Range { min, max })
    }

    /// A list of allowed values, refused when empty or holding a number that is not finite.
    pub fn one_of(values: Vec<Literal>) -> Result<Self, BoundError> {
        if values.is_empty() {
            return Err(BoundError::Empty);
        }
        if values
            .iter()
            .any(|v| matches!(v, Literal::Number(n) if !n.is_finite()))
        {
            return Err(BoundError::NotFinite);
        }
        Ok(Bound::OneOf(values))
    }

    /// Whether `value` lies inside. Only numbers lie inside a range; NaN never does.
    pub fn admits(&self, value: &Value) -> bool {
        match self {
            Bound::Range { min, max } => match value {
                // A REAL is compared at its own width (see the module documentation).
                Value::F32(v) => !v.is_nan() && (*min as f32) <= *v && *v <= (*max as f32),
                other => numeric(other).is_some_and(|v| *min <= v && v <= *max),
            },
            Bound::OneOf(values) => values.iter().any(|l| l.admits(value)),
        }
    }
}

impl Serialize for Bound {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            Bound::Range { min, max } => {
                map.serialize_entry("min", &Literal::Number(*min))?;
                map.serialize_entry("max", &Literal::Number(*max))?;
            }
            Bound::OneOf(values) => map.serialize_entry("one_of", values)?,
        }
        map.end()
    }
}

/// A number's value, for integer and float items; `None` for everything else and NaN.
fn numeric(value: &Value) -> Option<f64> {
    let v = match value {
        Value::Int(v) => *v as f64,
        Value::UInt(v) => *v as f64,
        Value::F32(v) => f64::from(*v),
        Value::F64(v) => *v,
        _ => return None,
    };
    (!v.is_nan()).then_some(v)
}

/// The envelopes of a baseline: path pattern → bound. Serialises as the token claim's object.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Envelope {
    rules: BTreeMap<String, Bound>,
}

/// A setpoint that moved inside its envelope.
#[derive(Clone, Debug, PartialEq)]
pub struct Adjustment {
    /// The item.
    pub path: String,
    /// The baseline's value.
    pub baseline: Value,
    /// The observed value.
    pub observed: Value,
    /// The pattern whose bound admits it.
    pub pattern: String,
}

/// A capture judged against a baseline with envelopes.
#[derive(Clone, Debug)]
pub struct Judged {
    /// The capture with every admitted move replaced by the baseline's value.
    pub snapshot: Snapshot,
    /// The admitted moves, by path.
    pub adjustments: Vec<Adjustment>,
}

impl Envelope {
    /// No envelope.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pattern's bound; refuses a malformed pattern. A pattern given twice keeps the
    /// last bound.
    pub fn insert(&mut self, pattern: impl Into<String>, bound: Bound) -> Result<(), BoundError> {
        let pattern = pattern.into();
        let body = pattern.strip_suffix('*').unwrap_or(&pattern);
        if pattern.is_empty() || pattern == "*" || body.contains('*') {
            return Err(BoundError::Pattern(pattern));
        }
        self.rules.insert(pattern, bound);
        Ok(())
    }

    /// Whether no pattern is set.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The patterns and their bounds, sorted by pattern.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bound)> {
        self.rules.iter().map(|(p, b)| (p.as_str(), b))
    }

    /// The rule covering `path`: the exact pattern, else the longest matching prefix.
    pub fn rule_for(&self, path: &str) -> Option<(&str, &Bound)> {
        if let Some((p, b)) = self.rules.get_key_value(path) {
            return Some((p.as_str(), b));
        }
        self.rules
            .iter()
            .filter(|(p, _)| p.ends_with('*') && path_matches(p, path))
            .max_by_key(|(p, _)| p.len())
            .map(|(p, b)| (p.as_str(), b))
    }

    /// Judges `observed` against `baseline` (see the module documentation). Items that are
    /// not setpoints in both, or that are absent from either, are never substituted.
    pub fn judge(&self, baseline: &Snapshot, observed: &Snapshot) -> Judged {
        let mut snapshot = observed.clone();
        let mut adjustments = Vec::new();
        if self.is_empty() {
            return Judged {
                snapshot,
                adjustments,
            };
        }
        for item in observed.items_of(Class::Setpoint) {
            let Some(held) = baseline.get(item.path()) else {
                continue;
            };
            if held.class() != Class::Setpoint || held.value() == item.value() {
                continue;
            }
            let Some((pattern, bound)) = self.rule_for(item.path()) else {
                continue;
            };
            if !bound.admits(item.value()) {
                continue;
            }
            adjustments.push(Adjustment {
                path: item.path().to_owned(),
                baseline: held.value().clone(),
                observed: item.value().clone(),
                pattern: pattern.to_owned(),
            });
            // The baseline's item is a valid item with the same path: replacing cannot fail.
            let _ = snapshot.replace(Item::clone(held));
        }
        Judged {
            snapshot,
            adjustments,
        }
    }

    /// The patterns that match no item of `snapshot`, and the items that an envelope covers
    /// but which are not setpoints (identity, program, history): an envelope on them is
    /// refused. Returns `(unmatched patterns, covered non-setpoint paths)`.
    pub fn misplaced(&self, snapshot: &Snapshot) -> (Vec<String>, Vec<String>) {
        let unmatched = self
            .rules
            .keys()
            .filter(|p| !snapshot.items().any(|i| path_matches(p, i.path())))
            .cloned()
            .collect();
        let forbidden = snapshot
            .items()
            .filter(|i| i.class() != Class::Setpoint && self.rule_for(i.path()).is_some())
            .map(|i| i.path().to_owned())
            .collect();
        (unmatched, forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(items: &[(&str, Class, Value)]) -> Snapshot {
        Snapshot::from_items(
            items
                .iter()
                .map(|(p, c, v)| Item::new(*p, *c, v.clone()).expect("item")),
        )
        .expect("snapshot")
    }

    #[test]
    fn a_real_at_its_bounds_is_inside() {
        let b = Bound::range(70.1, 75.1).expect("range");
        assert!(b.admits(&Value::F32(75.1)));
        assert!(b.admits(&Value::F32(70.1)));
        assert!(!b.admits(&Value::F32(75.2)));
        assert!(!b.admits(&Value::F32(f32::NAN)));
        assert!(b.admits(&Value::F64(75.1)));
        assert!(!b.admits(&Value::F64(75.100_000_001)));
        assert!(b.admits(&Value::UInt(72)));
        assert!(!b.admits(&Value::Text("72".into())));
    }

    #[test]
    fn inverted_and_empty_bounds_are_refused() {
        assert!(matches!(
            Bound::range(5.0, 1.0),
            Err(BoundError::Inverted { .. })
        ));
        assert_eq!(Bound::range(f64::NAN, 1.0), Err(BoundError::NotFinite));
        assert_eq!(Bound::one_of(Vec::new()), Err(BoundError::Empty));
        let mut e = Envelope::new();
        for bad in ["", "*", "a*b", "a**"] {
            assert!(
                e.insert(bad, Bound::range(0.0, 1.0).expect("range"))
                    .is_err()
            );
        }
    }

    #[test]
    fn the_longest_prefix_wins_and_an_exact_path_beats_it() {
        let mut e = Envelope::new();
        e.insert("s7/db1/*", Bound::range(0.0, 1.0).expect("r"))
            .expect("p");
        e.insert("s7/db1/fill*", Bound::range(0.0, 2.0).expect("r"))
            .expect("p");
        e.insert("s7/db1/fill_temp", Bound::range(0.0, 3.0).expect("r"))
            .expect("p");
        assert_eq!(
            e.rule_for("s7/db1/fill_temp").map(|r| r.0),
            Some("s7/db1/fill_temp")
        );
        assert_eq!(
            e.rule_for("s7/db1/fill_time").map(|r| r.0),
            Some("s7/db1/fill*")
        );
        assert_eq!(e.rule_for("s7/db1/speed").map(|r| r.0), Some("s7/db1/*"));
        assert_eq!(e.rule_for("s7/db2/speed"), None);
    }

    #[test]
    fn moves_inside_take_the_baseline_value_and_others_stay() {
        let baseline = snap(&[
            ("id/serial", Class::Identity, Value::Text("S1".into())),
            ("s7/db1/temp", Class::Setpoint, Value::F32(72.5)),
            ("s7/db1/mode", Class::Setpoint, Value::UInt(1)),
            ("s7/db1/speed", Class::Setpoint, Value::Int(10)),
        ]);
        let observed = snap(&[
            ("id/serial", Class::Identity, Value::Text("S1".into())),
            ("s7/db1/temp", Class::Setpoint, Value::F32(74.0)),
            ("s7/db1/mode", Class::Setpoint, Value::UInt(3)),
            ("s7/db1/speed", Class::Setpoint, Value::Int(11)),
        ]);
        let mut e = Envelope::new();
        e.insert("s7/db1/temp", Bound::range(70.0, 75.0).expect("r"))
            .expect("p");
        e.insert(
            "s7/db1/mode",
            Bound::one_of(vec![Literal::Number(1.0), Literal::Number(2.0)]).expect("o"),
        )
        .expect("p");
        let judged = e.judge(&baseline, &observed);
        assert_eq!(judged.adjustments.len(), 1);
        assert_eq!(judged.adjustments[0].path, "s7/db1/temp");
        assert_eq!(
            judged
                .snapshot
                .get("s7/db1/temp")
                .map(|i| i.value().clone()),
            Some(Value::F32(72.5))
        );
        // Outside its one_of, and not covered at all: both stay as observed.
        assert_eq!(
            judged
                .snapshot
                .get("s7/db1/mode")
                .map(|i| i.value().clone()),
            Some(Value::UInt(3))
        );
        assert_eq!(
            judged
                .snapshot
                .get("s7/db1/speed")
                .map(|i| i.value().clone()),
            Some(Value::Int(11))
        );
    }

    #[test]
    fn only_setpoints_are_judged_and_misplaced_patterns_are_named() {
        let baseline = snap(&[
            ("fw", Class::Identity, Value::UInt(1)),
            ("s7/db1/temp", Class::Setpoint, Value::UInt(1)),
        ]);
        let observed = snap(&[
            ("fw", Class::Identity, Value::UInt(2)),
            ("s7/db1/temp", Class::Setpoint, Value::UInt(1)),
        ]);
        let mut e = Envelope::new();
        e.insert("fw", Bound::range(0.0, 5.0).expect("r"))
            .expect("p");
        e.insert("nothing/*", Bound::range(0.0, 5.0).expect("r"))
            .expect("p");
        assert!(e.judge(&baseline, &observed).adjustments.is_empty());
        let (unmatched, forbidden) = e.misplaced(&observed);
        assert_eq!(unmatched, vec!["nothing/*".to_owned()]);
        assert_eq!(forbidden, vec!["fw".to_owned()]);
    }

    #[test]
    fn the_claim_shape_round_trips_through_json() {
        let mut e = Envelope::new();
        e.insert("a", Bound::range(1.0, 2.5).expect("r"))
            .expect("p");
        e.insert(
            "b*",
            Bound::one_of(vec![Literal::Text("x".into()), Literal::Bool(true)]).expect("o"),
        )
        .expect("p");
        assert_eq!(
            serde_json::to_string(&e).ok().as_deref(),
            Some(r#"{"a":{"min":1,"max":2.5},"b*":{"one_of":["x",true]}}"#)
        );
    }
}
