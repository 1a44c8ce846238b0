//! S7 answers as items: identity and block info fields, the setpoint bytes of the
//! configured ranges, and which setpoint a path belongs to.

use std::collections::BTreeMap;

use otdrift_config::{S7Config, S7Setpoint};
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
        for offset in sp.start..sp.start.saturating_add(sp.size) {
            let Some(byte) = byte_at(sp.db, offset) else {
                return Err(scope.internal(format!(
                    "DB{} byte {offset} was planned but not read",
                    sp.db
                )));
            };
            put(
                found,
                format!("s7/db{}/{offset}", sp.db),
                Class::Setpoint,
                Value::UInt(byte.into()),
            );
        }
    }
    Ok(())
}

/// The setpoint entry covering `path`: `s7/db<N>/<offset>` for a byte, or
/// `s7/db<N>/<start>..<end>` for a range recorded as not available.
pub fn setpoint_label(cfg: &S7Config, path: &str) -> Option<String> {
    let rest = path.strip_prefix("s7/db")?;
    let (db, offset) = rest.split_once('/')?;
    let db: u16 = db.parse().ok()?;
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
                },
                S7Setpoint {
                    name: "limits".into(),
                    db: 11,
                    start: 100,
                    size: 4,
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
