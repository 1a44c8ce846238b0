//! Typed field layouts (`[[asset.setpoints.field]]`) of byte- and register-addressed setpoints
//! (S7 DB ranges, Modbus register ranges): what the protocols share in checking them. Each
//! protocol reads its own keys and types; here are the field name rule, the one-name-per-item
//! rule, and the footprint checks (inside the range, no two fields on one bit or register).

use crate::error::ConfigErrorKind as Kind;
use crate::validate::read::{Cx, Span, Tbl, get_checked};

/// A field's name: the last segment of its item path (`s7/db1/fill_temp`,
/// `modbus/holding/fill_temp`), beside the numbered bytes and registers.
pub(crate) fn name(cx: &mut Cx<'_>, f: &Tbl<'_, '_>, need: &str) -> Option<String> {
    get_checked(cx, f, "name", Kind::InvalidValue, |s| {
        let good = !s.is_empty()
            && s.len() <= 64
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !s.chars().all(|c| c.is_ascii_digit());
        if good {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "{s:?} is not a field name: 1-64 of A-Z a-z 0-9 _, not all digits (it names an item beside the numbered addresses)"
            ))
        }
    })
    .req(cx, f, "name", need)
    .map(|(n, _)| n)
}

/// Item paths already taken, with the line of the field that took each.
#[derive(Default)]
pub(crate) struct Names(Vec<(String, usize)>);

impl Names {
    /// Takes `path` for the field `f`, or reports that an earlier field has it.
    pub(crate) fn take(
        &mut self,
        cx: &mut Cx<'_>,
        sp: &Tbl<'_, '_>,
        f: &Tbl<'_, '_>,
        name: &str,
        path: String,
    ) -> bool {
        if let Some((_, first)) = self.0.iter().find(|(p, _)| *p == path) {
            let span = f.get("name").map_or(f.span.clone(), |v| v.span());
            cx.push(
                span,
                f.key("name"),
                Kind::InvalidValue,
                format!(
                    "{}field name {name:?} is already used (line {first}): it names the item {path}",
                    sp.who
                ),
            );
            return false;
        }
        let line = cx.line(f.span.start);
        self.0.push((path, line));
        true
    }
}

/// Where a field lies, in the protocol's smallest unit (S7: bits, Modbus: registers).
pub(crate) struct Footprint<'x, 'a, 'i> {
    /// The field's table, where an overlap is reported.
    pub(crate) table: &'x Tbl<'a, 'i>,
    /// Its name.
    pub(crate) name: String,
    /// First and last unit it occupies (inclusive).
    pub(crate) first: u64,
    pub(crate) last: u64,
    /// How it is shown in messages: `f32 at 10`, `BOOL at 4.3`.
    pub(crate) shown: String,
}

/// Where a field was asked to go, as [`place`] checks it.
pub(crate) struct Placement<'s> {
    /// The span of its `offset`, where "outside the range" is reported.
    pub(crate) offset_span: Span,
    /// Whether it lies inside its setpoint's range.
    pub(crate) inside: bool,
    /// The field as the message shows it: `f64 at 108, 4 register(s)`.
    pub(crate) detail: String,
    /// The range: `holding 100..=109`, `DB1 0..=15`.
    pub(crate) range: &'s str,
    /// Its item path, which must be free.
    pub(crate) path: String,
}

/// Checks a field against its range and the item paths already taken (reporting what does
/// not fit); `true` when it fits. Without a valid range (the setpoint's own keys were bad,
/// already reported) there is nothing to check against.
pub(crate) fn place(
    cx: &mut Cx<'_>,
    sp: &Tbl<'_, '_>,
    f: &Tbl<'_, '_>,
    name: &str,
    names: &mut Names,
    at: Option<Placement<'_>>,
) -> bool {
    let Some(at) = at else {
        return true;
    };
    if !at.inside {
        cx.push(
            at.offset_span,
            f.key("offset"),
            Kind::InvalidValue,
            format!(
                "{}field {name:?} ({}) lies outside the range {}",
                sp.who, at.detail, at.range
            ),
        );
        return false;
    }
    names.take(cx, sp, f, name, at.path)
}

/// Reports every field that lies over an earlier one (sorted by first unit; the later of the
/// two is named, with the other's line). `true` when there is none.
pub(crate) fn no_overlaps(
    cx: &mut Cx<'_>,
    sp: &Tbl<'_, '_>,
    unit: &str,
    fields: &mut [Footprint<'_, '_, '_>],
) -> bool {
    fields.sort_by_key(|f| (f.first, f.last));
    let mut ok = true;
    for pair in fields.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.first <= a.last {
            let line = cx.line(a.table.span.start);
            cx.push(
                b.table.span.clone(),
                b.table.path.clone(),
                Kind::InvalidValue,
                format!(
                    "{}field {:?} ({}) overlaps field {:?} ({}, line {line}); a {unit} belongs to one field only",
                    sp.who, b.name, b.shown, a.name, a.shown
                ),
            );
            ok = false;
        }
    }
    ok
}
