//! S7 answers as items: identity and block info fields, the setpoint bytes of the
//! configured ranges, and which setpoint a path belongs to.

use std::collections::BTreeMap;

use otdrift_config::{S7Config, S7FieldType, S7Setpoint};
use otdrift_core::{Class, Snapshot, Value};

use super::decode::{self, BlockInfo};
use super::request::ReadItem;
use crate::{CollectError, Scope};

/// What a capture found so far, by path. The first value found for a path stands.
pub(crate) type Found = BTreeMap<String, (Class, Value)>;

/// Records `value` at `path` unless the path is taken already.
pub(crate) fn put(found: &mut Found, path: String, class: Class, value: Value) {
    found.entry(path).or_insert((class, value));
}

/// The snapshot of what was found.
pub(crate) fn snapshot(scope: &Scope, found: Found) -> Result<Snapshot, CollectError> {
    let items = found
        .into_iter()
        .map(|(path, (class, value))| scope.new_item(path, class, value))
        .collect::<Result<Vec<_>, _>>()?;
    Snapshot::from_items(items).map_err(|e| scope.item(e))
}

/// The program items of one block's info, below `name` (`s7/block/FB1`).
pub(crate) fn block_fields(found: &mut Found, name: &str, info: &BlockInfo) {
    let fields = [
        ("checksum", Value::UInt(info.checksum.into())),
        ("load_size", Value::UInt(info.load_size.into())),
        ("mc7_size", Value::UInt(info.mc7_size.into())),
        ("local_data_size", Value::UInt(info.local_data.into())),
        ("author", info.author.clone()),
        ("family", info.family.clone()),
        ("name", info.name.clone()),
        ("version", Value::Text(info.version.clone())),
        (
            "language",
            Value::Text(decode::language_name(info.language)),
        ),
        ("flags", Value::UInt(info.flags.into())),
        ("code_time", Value::Text(info.code_time.clone())),
        ("interface_time", Value::Text(info.interface_time.clone())),
    ];
    for (field, value) in fields {
        put(found, format!("{name}/{field}"), Class::Program, value);
    }
}

/// The setpoint items: one per configured byte (`s7/db<N>/<offset>`) from the `pieces` read,
/// or one not-available range (`s7/db<N>/<start>..<end>`) where the CPU's directory agrees the
/// bytes do not exist (`absent` by setpoint name, `missing_dbs` by DB).
pub(crate) fn setpoints(
    scope: &Scope,
    found: &mut Found,
    setpoints: &[S7Setpoint],
    absent: &BTreeMap<String, String>,
    missing_dbs: &BTreeMap<u16, String>,
    mut pieces: Vec<(ReadItem, Vec<u8>)>,
) -> Result<(), CollectError> {
    pieces.sort_unstable_by_key(|(item, _)| (item.db, item.start));
    let byte_at = |db: u16, offset: u32| -> Option<u8> {
        let i = pieces.partition_point(|(item, _)| (item.db, item.start) <= (db, offset));
        let (item, bytes) = pieces.get(i.checked_sub(1)?)?;
        if item.db != db {
            return None;
        }
        bytes
            .get(usize::try_from(offset.checked_sub(item.start)?).ok()?)
            .copied()
    };
    for sp in setpoints {
        let end = u64::from(sp.start) + u64::from(sp.size);
        let range_path = format!("s7/db{}/{}..{end}", sp.db, sp.start);
        if let Some(reason) = absent.get(&sp.name).or_else(|| missing_dbs.get(&sp.db)) {
            put(
                found,
                range_path,
                Class::Setpoint,
                Value::unavailable(reason.clone()),
            );
            continue;
        }
        let mut bytes = Vec::with_capacity(usize::try_from(sp.size).unwrap_or(0));
        for offset in sp.start..sp.start.saturating_add(sp.size) {
            let Some(byte) = byte_at(sp.db, offset) else {
                return Err(scope.internal(format!(
                    "DB{} byte {offset} was planned but not read",
                    sp.db
                )));
            };
            bytes.push(byte);
        }
        let items = range_items(sp, &bytes).map_err(|(field, why)| {
            scope.malformed(format!("Read Var of DB{} (field {field})", sp.db), why)
        })?;
        for (path, value) in items {
            put(found, path, Class::Setpoint, value);
        }
    }
    Ok(())
}

/// The items of one DB range: one per field of its layout (`s7/db<N>/<name>`, typed as
/// declared), one per byte outside every field (`s7/db<N>/<offset>`), and, in a byte some of
/// whose bits are BOOL fields, one per other bit (`s7/db<N>/<offset>.<bit>`). A STRING whose
/// header does not fit its declaration (another maximum length, a current length beyond it)
/// means the layout is not the PLC's: `Err((field, why))`, never a guessed value.
pub(crate) fn range_items(
    sp: &S7Setpoint,
    bytes: &[u8],
) -> Result<Vec<(String, Value)>, (String, String)> {
    let mut out = Vec::with_capacity(bytes.len());
    // Bits of each byte that belong to a field.
    let mut covered = vec![0u8; bytes.len()];
    for f in &sp.fields {
        let fail = |why: String| (f.name.clone(), why);
        let at = usize::try_from(f.offset.saturating_sub(sp.start)).unwrap_or(usize::MAX);
        let size = usize::try_from(f.kind.bytes()).unwrap_or(usize::MAX);
        let b = bytes
            .get(at..at.saturating_add(size))
            .ok_or_else(|| fail("its bytes lie outside the range read".to_owned()))?;
        let word = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let dword = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let value = match f.kind {
            S7FieldType::Bool => Value::Bool((b[0] >> f.bit) & 1 == 1),
            S7FieldType::Int => Value::Int(i64::from(word(0) as i16)),
            S7FieldType::Uint => Value::UInt(u64::from(word(0))),
            S7FieldType::Dint => Value::Int(i64::from(dword(0) as i32)),
            S7FieldType::Udint => Value::UInt(u64::from(dword(0))),
            S7FieldType::Real => Value::F32(f32::from_bits(dword(0))),
            S7FieldType::Lreal => Value::F64(f64::from_bits(
                (u64::from(dword(0)) << 32) | u64::from(dword(4)),
            )),
            S7FieldType::String(max) => {
                let (declared, len) = (b[0], b[1]);
                if declared != max {
                    return Err(fail(format!(
                        "the PLC declares STRING[{declared}] where the layout says STRING[{max}]"
                    )));
                }
                if len > max {
                    return Err(fail(format!(
                        "current length {len} exceeds the maximum {max}"
                    )));
                }
                // S7 STRING characters are single bytes (the PLC's code page, Latin-1 for
                // the characters engineers type): each byte is one character.
                Value::Text(
                    b[2..2 + usize::from(len)]
                        .iter()
                        .map(|&c| char::from(c))
                        .collect(),
                )
            }
        };
        if f.kind == S7FieldType::Bool {
            covered[at] |= 1 << f.bit;
        } else {
            covered[at..at + size].fill(0xFF);
        }
        out.push((format!("s7/db{}/{}", sp.db, f.name), value));
    }
    for (i, (&byte, &mask)) in bytes.iter().zip(&covered).enumerate() {
        let offset = u64::from(sp.start) + i as u64;
        match mask {
            0 => out.push((format!("s7/db{}/{offset}", sp.db), Value::UInt(byte.into()))),
            0xFF => {}
            mask => {
                for bit in 0..8 {
                    if mask & (1 << bit) == 0 {
                        out.push((
                            format!("s7/db{}/{offset}.{bit}", sp.db),
                            Value::Bool((byte >> bit) & 1 == 1),
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The setpoint entry covering `path`: `s7/db<N>/<offset>` for a byte, `s7/db<N>/<name>` for a
/// field, `s7/db<N>/<offset>.<bit>` for a bit beside BOOL fields, or
/// `s7/db<N>/<start>..<end>` for a range recorded as not available.
pub fn setpoint_label(cfg: &S7Config, path: &str) -> Option<String> {
    let rest = path.strip_prefix("s7/db")?;
    let (db, offset) = rest.split_once('/')?;
    let db: u16 = db.parse().ok()?;
    // A field (`s7/db<N>/<name>`) or a bit beside BOOL fields (`s7/db<N>/<offset>.<bit>`).
    if let Some(sp) = cfg
        .setpoints
        .iter()
        .find(|sp| sp.db == db && sp.fields.iter().any(|f| f.name == offset))
    {
        return Some(sp.name.clone());
    }
    let offset = match offset.split_once('.') {
        Some((byte, bit)) if !bit.is_empty() && bit.bytes().all(|c| c.is_ascii_digit()) => byte,
        _ => offset,
    };
    let (start, end): (u64, u64) = match offset.split_once("..") {
        Some((s, e)) => (s.parse().ok()?, e.parse().ok()?),
        None => {
            let at: u64 = offset.parse().ok()?;
            (at, at + 1)
        }
    };
    cfg.setpoints
        .iter()
        .find(|sp| {
            sp.db == db
                && u64::from(sp.start) <= start
                && end <= u64::from(sp.start) + u64::from(sp.size)
        })
        .map(|sp| sp.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_fields(fields: Vec<otdrift_config::S7Field>) -> S7Setpoint {
        S7Setpoint {
            name: "recipe".into(),
            db: 1,
            start: 10,
            size: 16,
            fields,
        }
    }

    fn field(name: &str, offset: u32, bit: u8, kind: S7FieldType) -> otdrift_config::S7Field {
        otdrift_config::S7Field {
            name: name.into(),
            offset,
            bit,
            kind,
        }
    }

    #[test]
    fn fields_decode_as_the_db_declares_them() {
        let sp = with_fields(vec![
            field("temp", 10, 0, S7FieldType::Real),
            field("offset", 14, 0, S7FieldType::Int),
            field("total", 16, 0, S7FieldType::Dint),
            field("on", 20, 5, S7FieldType::Bool),
            field("label", 21, 0, S7FieldType::String(3)),
        ]);
        let mut bytes = vec![0u8; 16];
        bytes[0..4].copy_from_slice(&72.5f32.to_be_bytes());
        bytes[4..6].copy_from_slice(&(-7i16).to_be_bytes());
        bytes[6..10].copy_from_slice(&(-100_000i32).to_be_bytes());
        bytes[10] = 0b0010_0001;
        bytes[11..16].copy_from_slice(&[3, 2, b'O', 0xC4, b'x']);
        let items: BTreeMap<String, Value> = range_items(&sp, &bytes)
            .expect("decoded")
            .into_iter()
            .collect();
        assert_eq!(items["s7/db1/temp"], Value::F32(72.5));
        assert_eq!(items["s7/db1/offset"], Value::Int(-7));
        assert_eq!(items["s7/db1/total"], Value::Int(-100_000));
        assert_eq!(items["s7/db1/on"], Value::Bool(true));
        // The current length (2) counts, whatever follows; bytes are Latin-1 characters.
        assert_eq!(items["s7/db1/label"], Value::Text("OÄ".into()));
        // The other bits of byte 20 stay, one item each; covered bytes do not.
        assert_eq!(items["s7/db1/20.0"], Value::Bool(true));
        assert_eq!(items["s7/db1/20.1"], Value::Bool(false));
        assert!(!items.contains_key("s7/db1/20.5"));
        assert!(!items.contains_key("s7/db1/20"));
        assert!(!items.contains_key("s7/db1/10"));
        assert_eq!(items.len(), 5 + 7);
        assert_eq!(
            setpoint_label(
                &S7Config {
                    rack: 0,
                    slot: 2,
                    upload_blocks: false,
                    pdu_size: 960,
                    setpoints: vec![sp.clone()]
                },
                "s7/db1/20.1"
            )
            .as_deref(),
            Some("recipe")
        );

        // A STRING header that does not fit the layout is not guessed at.
        bytes[11] = 4;
        let (name, why) = range_items(&sp, &bytes).expect_err("wrong maximum");
        assert_eq!(name, "label");
        assert!(
            why.contains("STRING[4] where the layout says STRING[3]"),
            "{why}"
        );
        bytes[11] = 3;
        bytes[12] = 5;
        let (_, why) = range_items(&sp, &bytes).expect_err("too long");
        assert!(
            why.contains("current length 5 exceeds the maximum 3"),
            "{why}"
        );
    }

    #[test]
    fn labels_name_the_covering_setpoint() {
        let cfg = S7Config {
            rack: 0,
            slot: 2,
            upload_blocks: false,
            pdu_size: 960,
            setpoints: vec![
                S7Setpoint {
                    name: "recipe".into(),
                    db: 10,
                    start: 0,
                    size: 64,
                    fields: Vec::new(),
                },
                S7Setpoint {
                    name: "limits".into(),
                    db: 11,
                    start: 100,
                    size: 4,
                    fields: Vec::new(),
                },
            ],
        };
        assert_eq!(
            setpoint_label(&cfg, "s7/db10/63").as_deref(),
            Some("recipe")
        );
        assert_eq!(setpoint_label(&cfg, "s7/db10/64"), None);
        assert_eq!(
            setpoint_label(&cfg, "s7/db11/100..104").as_deref(),
            Some("limits")
        );
        assert_eq!(setpoint_label(&cfg, "s7/block/DB10/checksum"), None);
    }
}
