//! The setpoints: each configured tag path resolved against the tag list (scope, members,
//! indices, type and size), the reads packed into Multiple Service Packets (Read Tag
//! Fragmented for large values), and the answers judged and decoded.

use otdrift_core::Value;

use super::MAX_VALUE_BYTES;
use super::program::Browse;
use super::request::{Request, TagAddress};
use super::types::{self, ElementType};
use super::wire::{self, Status, split_typed};
use super::{CipCollector, link::Answer};
use crate::CollectError;

/// Reply size assumed for a setpoint whose type is unknown (no tag list).
const UNKNOWN_REPLY: usize = 96;

/// Why a configured setpoint is not read.
#[derive(Debug)]
pub(crate) enum Unresolved {
    /// The tag list says it does not exist (or cannot be decoded): a stable not-available
    /// item with this reason.
    NotAvailable(String),
    /// The configured text is no Logix tag path: the gateway's configuration is wrong.
    Config(String),
    /// Larger than otdrift reads.
    Bound(String),
    /// A bug on our side.
    Internal(String),
}

/// Why a setpoint is not available when the controller, without a tag list, answers "path
/// unknown" for it: one text for 0x04 and 0x05, so it is stable.
const NO_SUCH_TAG: &str = "the controller has no such tag (its tag list cannot be read, and Read Tag answers path unknown)";

/// A setpoint resolved against the tag list.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    address: TagAddress,
    element: Option<ElementType>,
    count: usize,
    /// BOOL arrays travel as DWORDs: the number of BOOLs.
    bools: Option<usize>,
    reply_bytes: usize,
}

impl CipCollector {
    /// Finds a configured tag in the tag list and works out what to read.
    fn resolve(&self, browse: &Browse, text: &str) -> Result<Resolved, Unresolved> {
        let parse = |t: &str| {
            TagAddress::parse(t).map_err(|e| Unresolved::Config(format!("tag path rejected: {e}")))
        };
        if browse.unavailable.is_some() {
            // No tag list: read one element and decode it by the reply's type code.
            return Ok(Resolved {
                address: parse(text)?,
                element: None,
                count: 1,
                bools: None,
                reply_bytes: UNKNOWN_REPLY,
            });
        }
        let absent = Unresolved::NotAvailable;
        let parts = split_tag(text).map_err(Unresolved::Config)?;
        let mut parts = parts.into_iter();
        let first = parts
            .next()
            .ok_or_else(|| Unresolved::Config("empty tag".to_owned()))?;
        let (symbols, base) = match strip_prefix_ci(&first.name, "Program:") {
            Some(program) => {
                if !first.indices.is_empty() {
                    return Err(Unresolved::Config("a program has no elements".to_owned()));
                }
                let info = browse
                    .programs
                    .iter()
                    .find(|(p, _)| p.eq_ignore_ascii_case(program))
                    .map(|(_, info)| info)
                    .ok_or_else(|| absent(format!("the controller has no program {program}")))?;
                let base = parts
                    .next()
                    .ok_or_else(|| Unresolved::Config("no tag after the program".to_owned()))?;
                (&info.tags, base)
            }
            None => (&browse.controller, first),
        };
        let symbol = symbols
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&base.name))
            .ok_or_else(|| absent(format!("{} is not in the controller's tag list", base.name)))?;
        let mut element = symbol.kind.element();
        let mut dims: Vec<u32> = symbol.dims.clone();
        let mut tag_level_bool_array =
            element == ElementType::Atomic(types::BOOL) && !dims.is_empty();
        apply_indices(&mut dims, &base.indices, &base.name).map_err(absent)?;
        if !base.indices.is_empty() {
            tag_level_bool_array = false;
        }
        for part in parts {
            if !dims.is_empty() {
                return Err(absent(format!(
                    "{} is an array: index it before a member",
                    part.name
                )));
            }
            let ElementType::Struct(t) = element else {
                return Err(absent(format!(
                    "{} is not a member of an atomic value",
                    part.name
                )));
            };
            // Every template a listed tag uses was read by the browse, or it failed.
            let template = browse.templates.get(&t).ok_or_else(|| {
                Unresolved::Internal(format!("template 0x{t:03x} missing after the browse"))
            })?;
            let member = template
                .members
                .iter()
                .find(|m| !m.is_hidden() && m.name.eq_ignore_ascii_case(&part.name))
                .ok_or_else(|| absent(format!("{} has no member {}", template.name, part.name)))?;
            element = member.element;
            dims = if member.array > 0 {
                vec![u32::from(member.array)]
            } else {
                vec![]
            };
            apply_indices(&mut dims, &part.indices, &part.name).map_err(absent)?;
        }
        let count: usize = dims
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(usize::try_from(*d).ok()?))
            .ok_or_else(|| Unresolved::Bound("the array's size overflows".to_owned()))?;
        // A whole array is read from its first element.
        let read_text = if dims.is_empty() {
            text.to_owned()
        } else {
            format!("{text}[{}]", vec!["0"; dims.len()].join(","))
        };
        let address = parse(&read_text)?;
        let (bools, wire_count, data_bytes) = if tag_level_bool_array {
            let words = count.div_ceil(32);
            (Some(count), words, words.saturating_mul(4))
        } else {
            let size = types::element_size(element, &browse.templates).ok_or_else(|| {
                absent(format!(
                    "its type ({}) is not one otdrift can decode",
                    types::type_name(element, &browse.templates)
                ))
            })?;
            (None, count, count.saturating_mul(size))
        };
        if data_bytes > MAX_VALUE_BYTES || wire_count > usize::from(u16::MAX) {
            return Err(Unresolved::Bound(format!(
                "{data_bytes} bytes is larger than the {MAX_VALUE_BYTES} bytes otdrift reads for one setpoint"
            )));
        }
        let header = if matches!(element, ElementType::Struct(_)) {
            4
        } else {
            2
        };
        Ok(Resolved {
            address,
            element: Some(element),
            count: wire_count,
            bools,
            reply_bytes: 4 + header + data_bytes,
        })
    }

    /// Reads the setpoints: resolved tags packed into Multiple Service Packets, large ones
    /// by Read Tag Fragmented.
    pub(crate) async fn read_setpoints(
        &mut self,
        browse: &Browse,
    ) -> Result<Vec<(String, Value)>, CollectError> {
        let mut out = Vec::with_capacity(self.setpoints.len());
        let mut small: Vec<(usize, Resolved)> = Vec::new();
        let mut large: Vec<(usize, Resolved)> = Vec::new();
        let setpoints = self.setpoints.clone();
        let single_limit = self.driver.capacity().saturating_sub(12);
        for (i, setpoint) in setpoints.iter().enumerate() {
            let tag = &setpoint.tag;
            match self.resolve(browse, tag) {
                Ok(r) if r.reply_bytes > single_limit => large.push((i, r)),
                Ok(r) => small.push((i, r)),
                Err(Unresolved::NotAvailable(reason)) => out.push((i, Value::unavailable(reason))),
                Err(Unresolved::Config(reason)) => {
                    return Err(self
                        .driver
                        .scope()
                        .config(format!("setpoint tag {tag} cannot be read: {reason}")));
                }
                Err(Unresolved::Bound(limit)) => {
                    return Err(self
                        .driver
                        .scope()
                        .bound(format!("Read Tag (0x4C) {tag}"), limit));
                }
                Err(Unresolved::Internal(detail)) => {
                    return Err(self
                        .driver
                        .scope()
                        .internal(format!("setpoint tag {tag}: {detail}")));
                }
            }
        }
        let requests = small
            .iter()
            .map(|(_, r)| {
                (
                    Request::ReadTag {
                        tag: r.address.clone(),
                        count: u16::try_from(r.count).unwrap_or(u16::MAX),
                    },
                    r.reply_bytes,
                )
            })
            .collect();
        let answers = self.driver.batch(requests).await?;
        for ((i, resolved), answer) in small.into_iter().zip(answers) {
            let value = if answer.status.is_partial() || answer.status.general == 0x11 {
                // Did not fit after all: fragmented.
                self.read_fragmented(browse, &resolved).await?
            } else {
                self.decode_answer(browse, &resolved, &answer)?
            };
            out.push((i, value));
        }
        for (i, resolved) in large {
            let value = self.read_fragmented(browse, &resolved).await?;
            out.push((i, value));
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out
            .into_iter()
            .filter_map(|(i, v)| setpoints.get(i).map(|s| (s.tag.clone(), v)))
            .collect())
    }

    fn decode_answer(
        &self,
        browse: &Browse,
        resolved: &Resolved,
        answer: &Answer,
    ) -> Result<Value, CollectError> {
        let describe = format!("Read Tag (0x4C) {}", resolved.address.text);
        if !answer.status.is_ok() {
            return self.read_refused(browse, &describe, &answer.status);
        }
        let (type_word, handle, data) =
            split_typed(&answer.data).map_err(|e| self.driver.scope().malformed(&describe, e))?;
        self.decode_typed(browse, resolved, type_word, handle, data)
            .map_err(|e| self.driver.scope().malformed(&describe, e))
    }

    /// A configured setpoint's read refused with `status`. With a tag list, the controller
    /// listed the tag (else it was not read): a refusal contradicts its own list. Without
    /// one, "path unknown" (0x04, 0x05) is the controller's own directory saying the tag
    /// does not exist, which is state; any other refusal (0x08, a range error...) fails.
    fn read_refused(
        &self,
        browse: &Browse,
        request: &str,
        status: &Status,
    ) -> Result<Value, CollectError> {
        match &browse.unavailable {
            Some(_) if matches!(status.general, 0x04 | 0x05) => Ok(Value::unavailable(NO_SUCH_TAG)),
            Some(_) => Err(self.driver.refusal(
                request,
                "the controller refused to read a configured tag",
                status,
            )),
            None => Err(self.driver.refusal(
                request,
                "the controller lists this tag in its tag list, but refuses to read it",
                status,
            )),
        }
    }

    fn decode_typed(
        &self,
        browse: &Browse,
        resolved: &Resolved,
        type_word: u16,
        handle: Option<u16>,
        data: &[u8],
    ) -> Result<Value, wire::WireError> {
        if let Some(n) = resolved.bools {
            if type_word != u16::from(types::DWORD) {
                return Err(wire::bad(format!(
                    "BOOL array answered as type 0x{type_word:04x}, expected DWORD"
                )));
            }
            return types::unpack_bools(data, n);
        }
        match resolved.element {
            Some(ElementType::Atomic(code)) => {
                if type_word != u16::from(code) {
                    return Err(wire::bad(format!(
                        "answered type 0x{type_word:04x}, the tag list says 0x{code:02x}"
                    )));
                }
                types::decode(
                    ElementType::Atomic(code),
                    resolved.count,
                    data,
                    &browse.templates,
                )
            }
            Some(ElementType::Struct(t)) => {
                let template = browse
                    .templates
                    .get(&t)
                    .ok_or_else(|| wire::bad("template unknown"))?;
                if handle != Some(template.info.handle) {
                    return Err(wire::bad(format!(
                        "answered structure handle {handle:?}, template {} has 0x{:04x}",
                        template.name, template.info.handle
                    )));
                }
                types::decode(
                    ElementType::Struct(t),
                    resolved.count,
                    data,
                    &browse.templates,
                )
            }
            None => match handle {
                // Without a tag list, a structure's bytes are captured as they are.
                Some(_) => Ok(Value::Bytes(data.to_vec())),
                None => {
                    let code = u8::try_from(type_word)
                        .map_err(|_| wire::bad(format!("unknown type 0x{type_word:04x}")))?;
                    let size = types::atomic_size(code)
                        .ok_or_else(|| wire::bad(format!("unknown type 0x{type_word:04x}")))?;
                    let count = data.len() / size.max(1);
                    types::decode(
                        ElementType::Atomic(code),
                        count.max(1),
                        data,
                        &browse.templates,
                    )
                }
            },
        }
    }

    async fn read_fragmented(
        &mut self,
        browse: &Browse,
        resolved: &Resolved,
    ) -> Result<Value, CollectError> {
        let mut data: Vec<u8> = Vec::new();
        let mut first_type: Option<(u16, Option<u16>)> = None;
        let expected = resolved.reply_bytes.saturating_sub(4);
        loop {
            let request = Request::ReadTagFragmented {
                tag: resolved.address.clone(),
                count: u16::try_from(resolved.count).unwrap_or(u16::MAX),
                offset: u32::try_from(data.len()).unwrap_or(u32::MAX),
            };
            let answer = self.driver.call(&request).await?;
            if !answer.status.is_ok() && !answer.status.is_partial() {
                return self.read_refused(browse, &request.describe(), &answer.status);
            }
            let (type_word, handle, chunk) = split_typed(&answer.data)
                .map_err(|e| self.driver.scope().malformed(request.describe(), e))?;
            match first_type {
                None => first_type = Some((type_word, handle)),
                Some(t) if t != (type_word, handle) => {
                    return Err(self
                        .driver
                        .scope()
                        .malformed(request.describe(), "fragments change type"));
                }
                Some(_) => {}
            }
            data.extend_from_slice(chunk);
            if resolved.element.is_some() && data.len() > expected {
                return Err(self.driver.scope().malformed(
                    request.describe(),
                    format!("fragments add up to {} bytes, more than asked", data.len()),
                ));
            }
            if data.len() > MAX_VALUE_BYTES {
                return Err(self.driver.scope().bound(
                    request.describe(),
                    format!("fragments add up to more than the {MAX_VALUE_BYTES} bytes otdrift reads for one setpoint"),
                ));
            }
            if answer.status.is_ok() {
                break;
            }
            if chunk.is_empty() {
                return Err(self
                    .driver
                    .scope()
                    .malformed(request.describe(), "partial transfer that does not advance"));
            }
        }
        let (type_word, handle) = first_type.unwrap_or((0, None));
        self.decode_typed(browse, resolved, type_word, handle, &data)
            .map_err(|e| {
                self.driver.scope().malformed(
                    format!("Read Tag Fragmented (0x52) {}", resolved.address.text),
                    e,
                )
            })
    }
}

/// `name` without `prefix`, compared ignoring ASCII case.
pub(crate) fn strip_prefix_ci<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| name.get(prefix.len()..))
        .flatten()
}

/// One dot-separated part of a tag path: a name and optional indices.
struct PathPart {
    name: String,
    indices: Vec<u32>,
}

/// Splits `Program:Main.Recipe[1,2].Temp` into parts (the syntax rseip's parser accepts).
fn split_tag(text: &str) -> Result<Vec<PathPart>, String> {
    let mut parts = Vec::new();
    let (scope, rest) = match strip_prefix_ci(text, "Program:") {
        Some(rest) => {
            let (program, rest) = rest
                .split_once('.')
                .ok_or("a program-scoped tag is Program:<program>.<tag>")?;
            parts.push(PathPart {
                name: format!("Program:{program}"),
                indices: vec![],
            });
            (true, rest)
        }
        None => (false, text),
    };
    let _ = scope;
    for piece in rest.split('.') {
        if piece.is_empty() {
            return Err(format!("{text}: empty member name"));
        }
        if piece.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{text}: bit access (.{piece}) is not supported for setpoints"
            ));
        }
        let (name, indices) = match piece.split_once('[') {
            Some((name, idx)) => {
                let idx = idx
                    .strip_suffix(']')
                    .ok_or_else(|| format!("{text}: unclosed index"))?;
                let indices = idx
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse::<u32>()
                            .map_err(|_| format!("{text}: bad index {n:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (name, indices)
            }
            None => (piece, vec![]),
        };
        parts.push(PathPart {
            name: name.to_owned(),
            indices,
        });
    }
    Ok(parts)
}

fn apply_indices(dims: &mut Vec<u32>, indices: &[u32], name: &str) -> Result<(), String> {
    if indices.is_empty() {
        return Ok(());
    }
    if indices.len() != dims.len() {
        return Err(format!(
            "{name} has {} dimensions, {} indices given",
            dims.len(),
            indices.len()
        ));
    }
    for (i, (index, dim)) in indices.iter().zip(dims.iter()).enumerate() {
        if index >= dim {
            return Err(format!(
                "{name}: index {index} of dimension {i} is beyond {dim}"
            ));
        }
    }
    dims.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(parts: &[PathPart]) -> Vec<(&str, &[u32])> {
        parts
            .iter()
            .map(|p| (p.name.as_str(), p.indices.as_slice()))
            .collect()
    }

    #[test]
    fn tag_paths_split_into_scope_names_and_indices() {
        let parts = split_tag("Program:Main.Recipe[1,2].Temp").expect("valid");
        assert_eq!(
            names(&parts),
            vec![
                ("Program:Main", &[][..]),
                ("Recipe", &[1, 2][..]),
                ("Temp", &[][..])
            ]
        );
        // The scope prefix is case-insensitive, as Logix names are.
        let parts = split_tag("PROGRAM:Oven.Zone_Temp[ 3 ]").expect("valid");
        assert_eq!(
            names(&parts),
            vec![("Program:Oven", &[][..]), ("Zone_Temp", &[3][..])]
        );
        assert_eq!(
            names(&split_tag("Oven_SP").expect("valid")),
            vec![("Oven_SP", &[][..])]
        );
    }

    #[test]
    fn tag_paths_that_are_no_logix_path_are_refused_with_the_reason() {
        for (text, needle) in [
            ("Program:Main", "Program:<program>.<tag>"),
            ("Recipe..Temp", "empty member name"),
            ("Recipe.", "empty member name"),
            ("Flags.3", "bit access"),
            ("Arr[1", "unclosed index"),
            ("Arr[x]", "bad index"),
            ("Arr[-1]", "bad index"),
            ("Arr[1,]", "bad index"),
        ] {
            let err = split_tag(text)
                .err()
                .unwrap_or_else(|| panic!("{text} is refused"));
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn indices_are_checked_against_the_dimensions_the_tag_list_gives() {
        let mut dims = vec![4, 3];
        apply_indices(&mut dims, &[], "T").expect("no indices: the whole array");
        assert_eq!(dims, vec![4, 3]);
        apply_indices(&mut dims, &[3, 2], "T").expect("in range");
        assert!(dims.is_empty(), "one element is addressed");
        let mut dims = vec![4, 3];
        let err = apply_indices(&mut dims, &[4, 0], "T").expect_err("beyond");
        assert!(err.contains("index 4 of dimension 0 is beyond 4"), "{err}");
        let err = apply_indices(&mut dims, &[1], "T").expect_err("too few");
        assert!(err.contains("2 dimensions, 1 indices"), "{err}");
        let mut scalar = vec![];
        assert!(
            apply_indices(&mut scalar, &[0], "S").is_err(),
            "a scalar has no elements"
        );
    }

    #[test]
    fn prefixes_compare_without_case_and_never_split_a_character() {
        assert_eq!(strip_prefix_ci("program:Main", "Program:"), Some("Main"));
        assert_eq!(strip_prefix_ci("Task:T1", "Program:"), None);
        assert_eq!(strip_prefix_ci("Prog", "Program:"), None);
        // A multi-byte character across the prefix's end is no match, not a panic.
        assert_eq!(strip_prefix_ci("Program\u{e9}x", "Program:"), None);
    }
}
