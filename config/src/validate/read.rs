//! Reading the spanned TOML tree: the error sink that turns byte spans into line and column
//! ([`Cx`]), a table with what names it in messages ([`Tbl`]), and the value getters.
//!
//! Every getter records its own error and returns [`Got::Bad`], so a caller looks at every
//! field of a table before it gives up on the table; [`Got::req`], [`Got::or`] and
//! [`Got::opt`] say whether a value is required, defaulted or optional.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::check;
use crate::error::{ConfigError, ConfigErrorKind as Kind, ConfigErrors};

pub(crate) type Span = Range<usize>;
pub(crate) type Val<'i> = Spanned<DeValue<'i>>;

/// Error sink plus the source text, to turn byte spans into line/column.
pub(crate) struct Cx<'s> {
    pub(crate) file: PathBuf,
    src: &'s str,
    line_starts: Vec<usize>,
    pub(crate) errors: Vec<ConfigError>,
}

impl<'s> Cx<'s> {
    pub(crate) fn new(src: &'s str, file: &Path) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Cx {
            file: file.to_path_buf(),
            src,
            line_starts,
            errors: Vec::new(),
        }
    }

    /// 1-based (line, column) of a byte offset; the column counts characters. Offsets past the
    /// end or inside a character are clamped, never sliced blindly.
    fn pos(&self, offset: usize) -> (usize, usize) {
        let mut o = offset.min(self.src.len());
        while o > 0 && !self.src.is_char_boundary(o) {
            o -= 1;
        }
        let idx = self
            .line_starts
            .partition_point(|&s| s <= o)
            .saturating_sub(1);
        let start = self.line_starts.get(idx).copied().unwrap_or(0);
        let col = self.src.get(start..o).map_or(0, |s| s.chars().count()) + 1;
        (idx + 1, col)
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        self.pos(offset).0
    }

    pub(crate) fn push(&mut self, span: Span, key: impl Into<String>, kind: Kind, message: String) {
        let (line, column) = self.pos(span.start);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.into(),
            kind,
            message,
        });
    }

    pub(crate) fn syntax(&mut self, e: &toml::de::Error) {
        let offset = e.span().map_or(0, |s| s.start);
        let key = self.section_key_at(offset);
        let msg = e.message().trim().to_owned();
        self.push(offset..offset, key, Kind::Syntax, msg);
    }

    /// Best-effort key path for a syntax error: the table header in effect at `offset` (with
    /// array-of-tables indexes) plus the key of the offending line. Only a hint, because the
    /// document could not be parsed.
    fn section_key_at(&self, offset: usize) -> String {
        let (line_no, _) = self.pos(offset);
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut section = String::new();
        let mut last_line = "";
        for (i, raw) in self.src.split('\n').enumerate() {
            if i + 1 > line_no {
                break;
            }
            last_line = raw;
            let line = raw.trim();
            let array = line.starts_with("[[");
            if !line.starts_with('[') {
                continue;
            }
            let inner = line.trim_start_matches('[');
            let Some(end) = inner.find(']') else {
                continue;
            };
            let name: String = inner
                .get(..end)
                .unwrap_or("")
                .split('.')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(".");
            if array {
                *counts.entry(name.clone()).or_insert(0) += 1;
                let nested = format!("{name}.");
                counts.retain(|k, _| !k.starts_with(&nested));
            }
            let mut rendered = String::new();
            let mut prefix = String::new();
            for seg in name.split('.') {
                if !prefix.is_empty() {
                    prefix.push('.');
                    rendered.push('.');
                }
                prefix.push_str(seg);
                rendered.push_str(seg);
                if let Some(n) = counts.get(&prefix) {
                    rendered.push_str(&format!("[{}]", n.saturating_sub(1)));
                }
            }
            section = rendered;
        }
        let line = last_line.trim();
        if line.starts_with('[') {
            return section;
        }
        match line.split_once('=') {
            Some((k, _)) if !k.trim().is_empty() && !k.contains(['"', '\'', '[', '{', '#']) => {
                let k: Vec<&str> = k.split('.').map(str::trim).collect();
                let k = k.join(".");
                if section.is_empty() {
                    k
                } else {
                    format!("{section}.{k}")
                }
            }
            _ => section,
        }
    }

    pub(crate) fn finish(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        self.errors.dedup();
        ConfigErrors(self.errors)
    }
}

/// One TOML table being checked, with what is needed to name it in messages.
pub(crate) struct Tbl<'a, 'i> {
    pub(crate) t: &'a DeTable<'i>,
    /// Header (or inline table) span, where missing keys are reported.
    pub(crate) span: Span,
    /// Key path of the table, e.g. `asset[2]`; empty for the top level.
    pub(crate) path: String,
    /// Message prefix naming the asset, e.g. `asset "press-7": `; empty when not an asset.
    pub(crate) who: String,
    /// How to name the table in a "missing key" message, e.g. `[[asset]]`.
    pub(crate) header: String,
}

impl<'a, 'i> Tbl<'a, 'i> {
    pub(crate) fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{}", self.path, k)
        }
    }

    pub(crate) fn get(&self, k: &str) -> Option<&'a Val<'i>> {
        self.t.get(k)
    }
}

/// Result of looking a value up: absent (default applies), present but bad (already
/// reported), or good with its span.
pub(crate) enum Got<T> {
    Absent,
    Bad,
    Val(T, Span),
}

impl<T> Got<T> {
    /// A required value: absence is reported at the table header.
    pub(crate) fn req(
        self,
        cx: &mut Cx<'_>,
        t: &Tbl<'_, '_>,
        k: &str,
        need: &str,
    ) -> Option<(T, Span)> {
        match self {
            Got::Val(v, s) => Some((v, s)),
            Got::Bad => None,
            Got::Absent => {
                let need = if need.is_empty() {
                    String::new()
                } else {
                    format!(" ({need})")
                };
                cx.push(
                    t.span.clone(),
                    t.key(k),
                    Kind::MissingKey,
                    format!("{}missing required key `{k}` in {}{need}", t.who, t.header),
                );
                None
            }
        }
    }

    /// An optional value with a default.
    pub(crate) fn or(self, default: T) -> Option<T> {
        match self {
            Got::Val(v, _) => Some(v),
            Got::Bad => None,
            Got::Absent => Some(default),
        }
    }

    /// An optional value without a default: `Some(None)` when absent, `None` when bad.
    pub(crate) fn opt(self) -> Option<Option<T>> {
        match self {
            Got::Val(v, _) => Some(Some(v)),
            Got::Bad => None,
            Got::Absent => Some(None),
        }
    }
}

/// What a value is, for "expected X, found Y" messages.
pub(crate) fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => {
            let short: String = s.chars().take(40).collect();
            if short.len() < s.len() {
                format!("string {short:?}...")
            } else {
                format!("string {short:?}")
            }
        }
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(f) => format!("float {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

pub(crate) fn wrong_type(cx: &mut Cx<'_>, t: &Tbl<'_, '_>, k: &str, v: &Val<'_>, expected: &str) {
    cx.push(
        v.span(),
        t.key(k),
        Kind::InvalidValue,
        format!(
            "{}expected {expected}, found {}",
            t.who,
            describe(v.get_ref())
        ),
    );
}

pub(crate) fn get_str<'a>(cx: &mut Cx<'_>, t: &Tbl<'a, '_>, k: &str) -> Got<&'a str> {
    match t.get(k) {
        None => Got::Absent,
        Some(v) => match v.get_ref() {
            DeValue::String(s) => Got::Val(s.as_ref(), v.span()),
            _ => {
                wrong_type(cx, t, k, v, "a string");
                Got::Bad
            }
        },
    }
}

/// An array of strings, each checked by `f`.
pub(crate) fn get_str_list(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    k: &str,
    f: impl Fn(&str) -> Result<(), String>,
) -> Got<Vec<String>> {
    let Some(v) = t.get(k) else {
        return Got::Absent;
    };
    let DeValue::Array(items) = v.get_ref() else {
        wrong_type(cx, t, k, v, "an array of strings");
        return Got::Bad;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (j, item) in items.iter().enumerate() {
        match item.get_ref() {
            DeValue::String(s) => match f(s) {
                Ok(()) => out.push(s.to_string()),
                Err(m) => {
                    ok = false;
                    cx.push(
                        item.span(),
                        format!("{}[{j}]", t.key(k)),
                        Kind::InvalidValue,
                        format!("{}{m}", t.who),
                    );
                }
            },
            other => {
                ok = false;
                cx.push(
                    item.span(),
                    format!("{}[{j}]", t.key(k)),
                    Kind::InvalidValue,
                    format!("{}expected a string, found {}", t.who, describe(other)),
                );
            }
        }
    }
    if ok {
        Got::Val(out, v.span())
    } else {
        Got::Bad
    }
}

pub(crate) fn get_bool(cx: &mut Cx<'_>, t: &Tbl<'_, '_>, k: &str) -> Got<bool> {
    match t.get(k) {
        None => Got::Absent,
        Some(v) => match v.get_ref() {
            DeValue::Boolean(b) => Got::Val(*b, v.span()),
            _ => {
                wrong_type(cx, t, k, v, "true or false");
                Got::Bad
            }
        },
    }
}

/// A duration written as a string (`"90s"`, `"30m"`, `"12h"`, `"35d"`, `"1h 30m"`) in
/// `lo..=hi`.
pub(crate) fn get_duration(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    k: &str,
    lo: Duration,
    hi: Duration,
) -> Got<Duration> {
    let Some(v) = t.get(k) else {
        return Got::Absent;
    };
    let expected = format!(
        "a duration string from {} to {}, such as \"30s\", \"12h\" or \"35d\"",
        crate::format_duration(lo),
        crate::format_duration(hi)
    );
    match v.get_ref() {
        DeValue::String(s) => match crate::parse_duration(s) {
            Ok(d) if (lo..=hi).contains(&d) => Got::Val(d, v.span()),
            Ok(_) => {
                cx.push(
                    v.span(),
                    t.key(k),
                    Kind::InvalidValue,
                    format!("{}expected {expected}, found {s:?}", t.who),
                );
                Got::Bad
            }
            Err(m) => {
                cx.push(
                    v.span(),
                    t.key(k),
                    Kind::InvalidValue,
                    format!("{}{m}; expected {expected}", t.who),
                );
                Got::Bad
            }
        },
        _ => {
            wrong_type(cx, t, k, v, &expected);
            Got::Bad
        }
    }
}

/// An integer in `lo..=hi`, converted to the field's type.
pub(crate) fn get_int<N: TryFrom<i128>>(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    k: &str,
    lo: i128,
    hi: i128,
) -> Got<N> {
    let Some(v) = t.get(k) else {
        return Got::Absent;
    };
    let expected = format!("an integer from {lo} to {hi}");
    match v.get_ref() {
        DeValue::Integer(i) => {
            let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
            let n = i128::from_str_radix(&digits, i.radix())
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .and_then(|n| N::try_from(n).ok());
            match n {
                Some(n) => Got::Val(n, v.span()),
                None => {
                    cx.push(
                        v.span(),
                        t.key(k),
                        Kind::InvalidValue,
                        format!("{}expected {expected}, found {i}", t.who),
                    );
                    Got::Bad
                }
            }
        }
        _ => {
            wrong_type(cx, t, k, v, &expected);
            Got::Bad
        }
    }
}

/// A string checked by `f`; a failed check is reported as `kind` with `f`'s reason.
pub(crate) fn get_checked<'a, T>(
    cx: &mut Cx<'_>,
    t: &Tbl<'a, '_>,
    k: &str,
    kind: Kind,
    f: impl FnOnce(&'a str) -> Result<T, String>,
) -> Got<T> {
    match get_str(cx, t, k) {
        Got::Val(s, span) => match f(s) {
            Ok(v) => Got::Val(v, span),
            Err(m) => {
                cx.push(span, t.key(k), kind, format!("{}{m}", t.who));
                Got::Bad
            }
        },
        Got::Absent => Got::Absent,
        Got::Bad => Got::Bad,
    }
}

/// A file-system path: a non-empty string.
pub(crate) fn get_path(cx: &mut Cx<'_>, t: &Tbl<'_, '_>, k: &str) -> Got<PathBuf> {
    get_checked(cx, t, k, Kind::InvalidValue, |s| {
        if s.is_empty() {
            Err("expected a path, found an empty string".into())
        } else if s.contains('\0') {
            Err("a path cannot contain a NUL character".into())
        } else {
            Ok(PathBuf::from(s))
        }
    })
}

/// Reports every key of `t` that is not in `allowed`: as WrongProtocolKey when `foreign`
/// names the protocol it belongs to, else as UnknownKey with the expected list.
pub(crate) fn check_keys(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    allowed: &[&str],
    expects: &str,
    foreign: &dyn Fn(&str) -> Option<String>,
) {
    for (k, _) in t.t.iter() {
        let name: &str = k.get_ref();
        if allowed.contains(&name) {
            continue;
        }
        if let Some(msg) = foreign(name) {
            cx.push(k.span(), t.key(name), Kind::WrongProtocolKey, msg);
            continue;
        }
        let hint = allowed
            .iter()
            .map(|a| (check::edit_distance(name, a), *a))
            .filter(|(d, a)| *d <= 2 && *d < a.len() && *d < name.chars().count())
            .min()
            .map(|(_, a)| format!(" (did you mean `{a}`?)"))
            .unwrap_or_default();
        cx.push(
            k.span(),
            t.key(name),
            Kind::UnknownKey,
            format!(
                "{}unknown key `{name}`{expects}{hint}; expected one of {}",
                t.who,
                allowed.join(", ")
            ),
        );
    }
}

pub(crate) fn no_foreign(_: &str) -> Option<String> {
    None
}

/// A sub-table (`[agent]`); `None` when absent or not a table (reported).
pub(crate) fn sub_table<'a, 'i>(
    cx: &mut Cx<'_>,
    parent: &Tbl<'a, 'i>,
    k: &str,
) -> Got<Tbl<'a, 'i>> {
    let Some(v) = parent.get(k) else {
        return Got::Absent;
    };
    match v.get_ref() {
        DeValue::Table(t) => Got::Val(
            Tbl {
                t,
                span: v.span(),
                path: parent.key(k),
                who: String::new(),
                header: format!("[{}]", parent.key(k)),
            },
            v.span(),
        ),
        _ => {
            wrong_type(cx, parent, k, v, &format!("a table [{k}]"));
            Got::Bad
        }
    }
}

/// An array of tables (`[[asset]]`). Elements that are not tables are reported and skipped;
/// indexes stay those of the file.
pub(crate) fn table_array<'a, 'i>(
    cx: &mut Cx<'_>,
    parent: &Tbl<'a, 'i>,
    k: &str,
    header: &str,
) -> Option<Vec<Tbl<'a, 'i>>> {
    let Some(v) = parent.get(k) else {
        return Some(Vec::new());
    };
    match v.get_ref() {
        DeValue::Array(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (j, item) in items.iter().enumerate() {
                let path = format!("{}[{j}]", parent.key(k));
                match item.get_ref() {
                    DeValue::Table(t) => out.push(Tbl {
                        t,
                        span: item.span(),
                        path,
                        who: parent.who.clone(),
                        header: header.to_owned(),
                    }),
                    other => {
                        ok = false;
                        cx.push(
                            item.span(),
                            path,
                            Kind::InvalidValue,
                            format!(
                                "{}expected a table ({header}), found {}",
                                parent.who,
                                describe(other)
                            ),
                        );
                    }
                }
            }
            ok.then_some(out)
        }
        other => {
            cx.push(
                v.span(),
                parent.key(k),
                Kind::InvalidValue,
                format!(
                    "{}expected an array of tables written {header}, found {}",
                    parent.who,
                    describe(other)
                ),
            );
            None
        }
    }
}
