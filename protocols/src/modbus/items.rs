//! Modbus answers as items.

use otdrift_core::{Class, Item, Value};

use super::plan::ReadOp;
use crate::{CollectError, Scope};

/// Names of the basic and regular identification objects (Modbus Application Protocol
/// v1.1b3, 6.21).
pub(crate) fn object_name(id: u8) -> String {
    match id {
        0x00 => "vendor_name".to_owned(),
        0x01 => "product_code".to_owned(),
        0x02 => "revision".to_owned(),
        0x03 => "vendor_url".to_owned(),
        0x04 => "product_name".to_owned(),
        0x05 => "model_name".to_owned(),
        0x06 => "user_application_name".to_owned(),
        other => format!("object_0x{other:02x}"),
    }
}

/// An identity item (`modbus/identity/<name>`).
pub(crate) fn identity(scope: &Scope, name: &str, value: Value) -> Result<Item, CollectError> {
    scope.new_item(format!("modbus/identity/{name}"), Class::Identity, value)
}

/// The setpoint items of one table read: `modbus/<table>/<address>`.
pub(crate) fn setpoints(
    scope: &Scope,
    op: ReadOp,
    values: Vec<Value>,
) -> Result<Vec<Item>, CollectError> {
    values
        .into_iter()
        .enumerate()
        .map(|(offset, value)| {
            let addr = usize::from(op.start) + offset;
            let path = format!("modbus/{}/{addr}", op.table.as_str());
            scope.new_item(path, Class::Setpoint, value)
        })
        .collect()
}

/// The setpoint entry covering `path` (`modbus/<table>/<address>`).
pub fn setpoint_label(cfg: &otdrift_config::ModbusConfig, path: &str) -> Option<String> {
    let mut parts = path.split('/');
    if parts.next() != Some("modbus") {
        return None;
    }
    let table = parts.next()?;
    let addr: u32 = parts.next()?.parse().ok()?;
    cfg.setpoints
        .iter()
        .find(|s| {
            s.table.as_str() == table
                && addr >= u32::from(s.start)
                && addr < u32::from(s.start) + u32::from(s.count)
        })
        .map(|s| s.name.clone())
}
