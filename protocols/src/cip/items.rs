//! CIP answers as items: identity, the program (tags, programs, tasks, templates), the
//! change-detection values and the setpoints, and which setpoint a path belongs to.

use std::collections::BTreeMap;

use otdrift_config::CipConfig;
use otdrift_core::{Class, Snapshot, Value};

use super::program::{Cache, Probe};
use super::types::{self, Symbol};
use super::wire::IdentityRecord;
use crate::{CollectError, Scope};

/// The identity items of an Identity object answer, and the fingerprint that says whether the
/// controller is still the one browsed (revision, serial number, product code).
pub(crate) fn identity(record: &IdentityRecord) -> (Vec<(String, Value)>, Vec<Value>) {
    let name = match std::str::from_utf8(&record.name) {
        Ok(text) => Value::Text(text.trim_end_matches('\0').to_owned()),
        Err(_) => Value::Bytes(record.name.clone()),
    };
    let revision = Value::Text(format!("{}.{}", record.major, record.minor));
    let serial = Value::Text(format!("{:08X}", record.serial));
    let fingerprint = vec![
        revision.clone(),
        serial.clone(),
        Value::from(u32::from(record.product_code)),
    ];
    (
        vec![
            (
                "cip/identity/vendor_id".to_owned(),
                Value::from(record.vendor),
            ),
            (
                "cip/identity/device_type".to_owned(),
                Value::from(record.device_type),
            ),
            (
                "cip/identity/product_code".to_owned(),
                Value::from(record.product_code),
            ),
            ("cip/identity/revision".to_owned(), revision),
            ("cip/identity/serial_number".to_owned(), serial),
            ("cip/identity/product_name".to_owned(), name),
        ],
        fingerprint,
    )
}

/// The snapshot of a capture: identity and project name from the probe, the program from the
/// browse, and the setpoint values.
pub(crate) fn assemble(
    scope: &Scope,
    probe: &Probe,
    cache: &Cache,
    values: Vec<(String, Value)>,
) -> Result<Snapshot, CollectError> {
    let mut s = Snapshot::new();
    let insert = |s: &mut Snapshot, path: String, class: Class, value: Value| {
        scope.insert(s, scope.new_item(path, class, value)?)
    };
    for (path, value) in &probe.identity {
        insert(&mut s, path.clone(), Class::Identity, value.clone())?;
    }
    insert(
        &mut s,
        "cip/controller/name".into(),
        Class::Program,
        probe.name.clone(),
    )?;
    // The controller's change-detection values are its own history (two controllers
    // running the same project never share them), not content a change delivers.
    insert(
        &mut s,
        "cip/controller/audit_value".into(),
        Class::History,
        cache.audit_value.clone(),
    )?;
    insert(
        &mut s,
        "cip/controller/changes_to_detect".into(),
        Class::History,
        cache.changes_value.clone(),
    )?;
    let browse = &cache.browse;
    if let Some(reason) = &browse.unavailable {
        insert(
            &mut s,
            "cip/tags".into(),
            Class::Program,
            Value::unavailable(reason.clone()),
        )?;
    }
    for task in &browse.tasks {
        insert(
            &mut s,
            format!("cip/task/{task}"),
            Class::Program,
            Value::Null,
        )?;
    }
    let tag_value = |symbol: &Symbol| -> Value {
        let mut map = BTreeMap::new();
        map.insert(
            "type".to_owned(),
            Value::Text(types::type_name(symbol.kind.element(), &browse.templates)),
        );
        if !symbol.dims.is_empty() {
            map.insert(
                "dims".to_owned(),
                Value::List(symbol.dims.iter().map(|d| Value::from(*d)).collect()),
            );
        }
        Value::Map(map)
    };
    for symbol in &browse.controller {
        insert(
            &mut s,
            format!("cip/tag/{}", symbol.name),
            Class::Program,
            tag_value(symbol),
        )?;
    }
    for (program, info) in &browse.programs {
        let mut map = BTreeMap::new();
        map.insert(
            "routines".to_owned(),
            Value::List(
                info.routines
                    .iter()
                    .map(|r| Value::Text(r.clone()))
                    .collect(),
            ),
        );
        insert(
            &mut s,
            format!("cip/program/{program}"),
            Class::Program,
            Value::Map(map),
        )?;
        for symbol in &info.tags {
            insert(
                &mut s,
                format!("cip/tag/Program:{program}.{}", symbol.name),
                Class::Program,
                tag_value(symbol),
            )?;
        }
    }
    for template in browse.templates.values() {
        let mut map = BTreeMap::new();
        map.insert("size".to_owned(), Value::from(template.info.structure_size));
        map.insert("handle".to_owned(), Value::from(template.info.handle));
        // Two templates with one name (a predefined and a user type) stay apart.
        let base = if s.get(&format!("cip/template/{}", template.name)).is_some() {
            format!("cip/template/{}#{:03x}", template.name, template.instance)
        } else {
            format!("cip/template/{}", template.name)
        };
        insert(&mut s, base.clone(), Class::Program, Value::Map(map))?;
        for member in template.members.iter().filter(|m| !m.is_hidden()) {
            let mut map = BTreeMap::new();
            map.insert(
                "type".to_owned(),
                Value::Text(types::type_name(member.element, &browse.templates)),
            );
            map.insert("offset".to_owned(), Value::from(member.offset));
            if member.array > 0 {
                map.insert(
                    "dims".to_owned(),
                    Value::List(vec![Value::from(u32::from(member.array))]),
                );
            }
            if let Some(bit) = member.bit {
                map.insert("bit".to_owned(), Value::from(u32::from(bit)));
            }
            let path = format!("{base}/{}", member.name);
            if s.get(&path).is_none() {
                insert(&mut s, path, Class::Program, Value::Map(map))?;
            }
        }
    }
    for (tag, value) in values {
        insert(&mut s, format!("cip/value/{tag}"), Class::Setpoint, value)?;
    }
    Ok(s)
}

/// The setpoint entry covering `path` (`cip/value/<tag>`).
pub fn setpoint_label(cfg: &CipConfig, path: &str) -> Option<String> {
    let tag = path.strip_prefix("cip/value/")?;
    cfg.setpoints
        .iter()
        .find(|s| s.tag.eq_ignore_ascii_case(tag))
        .map(|s| s.name.clone())
}
