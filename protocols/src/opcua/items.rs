//! OPC UA answers as items: the attributes of every node the walk found, the values (and the
//! values this user may not read, when the server's own model agrees), and which setpoint a
//! path belongs to.

use std::collections::BTreeMap;

use opcua::types::{AttributeId, DataValue, NodeClass, NodeId, ReadValueId, StatusCode, Variant};
use otdrift_config::OpcuaConfig;
use otdrift_core::{Class, Snapshot, Value};

use super::program::{Found, class_name};
use super::wire::{attribute_name, listed_attribute, typed};
use super::{OpcuaCollector, convert};
use crate::CollectError;

impl OpcuaCollector {
    pub(crate) fn insert(
        &self,
        snapshot: &mut Snapshot,
        path: String,
        class: Class,
        value: Value,
    ) -> Result<(), CollectError> {
        let item = self.driver.scope().new_item(path, class, value)?;
        snapshot.insert(item).map_err(|e| {
            self.driver.scope().malformed(
                "Browse".to_owned(),
                format!("two nodes of the server map to the same item path ({e})"),
            )
        })
    }

    /// Reads the attributes of every node found (roots 6 operations: class and name are not
    /// known from a browse; variables 4) and inserts the items.
    pub(crate) async fn read_attributes(
        &mut self,
        snapshot: &mut Snapshot,
        namespaces: &[String],
        nodes: &BTreeMap<String, Found>,
    ) -> Result<(), CollectError> {
        let mut ops = Vec::new();
        let mut plan: Vec<(String, Vec<AttributeId>)> = Vec::new();
        for (key, found) in nodes {
            let Some(id) = &found.id else { continue };
            let mut attrs = Vec::new();
            if found.root {
                attrs.extend([AttributeId::NodeClass, AttributeId::BrowseName]);
            }
            if found.root || found.class == Some(NodeClass::Variable) {
                attrs.extend([
                    AttributeId::DataType,
                    AttributeId::ValueRank,
                    AttributeId::ArrayDimensions,
                    AttributeId::Value,
                ]);
            }
            for a in &attrs {
                ops.push(ReadValueId {
                    node_id: id.clone(),
                    attribute_id: *a as u32,
                    ..Default::default()
                });
            }
            plan.push((key.clone(), attrs));
        }
        let values = self.read_all(&ops).await?;
        let mut values = values.into_iter();
        let mut read: BTreeMap<String, BTreeMap<u32, DataValue>> = BTreeMap::new();
        for (key, attrs) in plan {
            let entry = read.entry(key).or_default();
            for a in attrs {
                entry.insert(a as u32, values.next().unwrap_or_default());
            }
        }
        // Values the server refused to read with an access status: kept as "not available"
        // only when the node's own UserAccessLevel agrees (see `refused_values`).
        let mut access_refused: Vec<(String, NodeId, StatusCode)> = Vec::new();
        for (key, found) in nodes {
            let attrs = read.remove(key).unwrap_or_default();
            let attr = |a: AttributeId| attrs.get(&(a as u32));
            let node = |attribute: &str| format!("opcua/node/{key}/{attribute}");
            let request = |a: AttributeId| format!("Read of {} of {key}", attribute_name(a as u32));
            let class = if found.root {
                let dv = listed_attribute(
                    self.driver.scope(),
                    &request(AttributeId::NodeClass),
                    attr(AttributeId::NodeClass),
                )?;
                match dv.value {
                    Some(Variant::Int32(n)) => NodeClass::try_from(n).ok(),
                    _ => None,
                }
                .ok_or_else(|| {
                    self.driver.scope().malformed(
                        request(AttributeId::NodeClass),
                        format!("expected a NodeClass, got {:?}", dv.value),
                    )
                })?
            } else {
                found.class.unwrap_or(NodeClass::Unspecified)
            };
            self.insert(
                snapshot,
                node("node_class"),
                Class::Program,
                Value::Text(class_name(class)),
            )?;
            let browse = if found.root {
                let dv = listed_attribute(
                    self.driver.scope(),
                    &request(AttributeId::BrowseName),
                    attr(AttributeId::BrowseName),
                )?;
                match &dv.value {
                    Some(Variant::QualifiedName(q)) => convert::browse_name(q, namespaces),
                    other => {
                        return Err(self.driver.scope().malformed(
                            request(AttributeId::BrowseName),
                            format!("expected a QualifiedName, got {other:?}"),
                        ));
                    }
                }
            } else {
                found.browse_name.clone().unwrap_or_default()
            };
            let browse = convert::text(&browse).map_err(|convert::Oversize(why)| {
                self.driver
                    .scope()
                    .bound(format!("Browse of {key}"), format!("browse name: {why}"))
            })?;
            self.insert(
                snapshot,
                node("browse_name"),
                Class::Program,
                Value::Text(browse),
            )?;
            if let Some(t) = &found.type_definition {
                self.insert(
                    snapshot,
                    node("type_definition"),
                    Class::Program,
                    Value::Text(t.clone()),
                )?;
            }
            if !found.parents.is_empty() {
                self.insert(
                    snapshot,
                    node("parents"),
                    Class::Program,
                    Value::List(found.parents.iter().cloned().map(Value::Text).collect()),
                )?;
            }
            if class != NodeClass::Variable {
                continue;
            }
            let data_type = {
                let dv = listed_attribute(
                    self.driver.scope(),
                    &request(AttributeId::DataType),
                    attr(AttributeId::DataType),
                )?;
                match &dv.value {
                    Some(Variant::NodeId(id)) => convert::data_type_name(id, namespaces),
                    other => {
                        return Err(self.driver.scope().malformed(
                            request(AttributeId::DataType),
                            format!("expected a NodeId, got {other:?}"),
                        ));
                    }
                }
            };
            self.insert(
                snapshot,
                node("data_type"),
                Class::Program,
                Value::Text(data_type),
            )?;
            let rank = {
                let dv = listed_attribute(
                    self.driver.scope(),
                    &request(AttributeId::ValueRank),
                    attr(AttributeId::ValueRank),
                )?;
                match dv.value {
                    Some(Variant::Int32(n)) => Value::Int(i64::from(n)),
                    other => {
                        return Err(self.driver.scope().malformed(
                            request(AttributeId::ValueRank),
                            format!("expected an Int32, got {other:?}"),
                        ));
                    }
                }
            };
            self.insert(snapshot, node("value_rank"), Class::Program, rank)?;
            // ArrayDimensions is optional: BadAttributeIdInvalid is the server saying the
            // node has none, which is what an empty one says too.
            let dims = match attr(AttributeId::ArrayDimensions) {
                Some(dv) if dv.status() == StatusCode::BadAttributeIdInvalid => Value::Null,
                dv => {
                    let dv = listed_attribute(
                        self.driver.scope(),
                        &request(AttributeId::ArrayDimensions),
                        dv,
                    )?;
                    typed(
                        self.driver.scope(),
                        &request(AttributeId::ArrayDimensions),
                        &dv,
                    )?
                }
            };
            self.insert(snapshot, node("array_dimensions"), Class::Program, dims)?;
            let value_request = request(AttributeId::Value);
            let dv = attr(AttributeId::Value).cloned().unwrap_or_default();
            let status = dv.status();
            let value = if matches!(
                status,
                StatusCode::BadNotReadable | StatusCode::BadUserAccessDenied
            ) && !found.root
            {
                if let Some(id) = &found.id {
                    access_refused.push((key.clone(), id.clone(), status));
                }
                continue;
            } else {
                let dv = listed_attribute(self.driver.scope(), &value_request, Some(&dv))?;
                typed(self.driver.scope(), &value_request, &dv)?
            };
            self.insert(
                snapshot,
                format!("opcua/value/{key}"),
                Class::Setpoint,
                value,
            )?;
        }
        self.refused_values(snapshot, access_refused).await
    }

    /// Values refused with BadNotReadable or BadUserAccessDenied, below (not at) a configured
    /// node: a stable capability refusal when the node's UserAccessLevel agrees (no
    /// CurrentRead: the server's own model says this user may not read it), recorded as "not
    /// available" with a text that is the same every poll; a contradiction otherwise. One more
    /// Read, sent only when there is such a value.
    async fn refused_values(
        &mut self,
        snapshot: &mut Snapshot,
        refused: Vec<(String, NodeId, StatusCode)>,
    ) -> Result<(), CollectError> {
        if refused.is_empty() {
            return Ok(());
        }
        let ops: Vec<ReadValueId> = refused
            .iter()
            .map(|(_, id, _)| ReadValueId {
                node_id: id.clone(),
                attribute_id: AttributeId::UserAccessLevel as u32,
                ..Default::default()
            })
            .collect();
        let levels = self.read_all(&ops).await?;
        for ((key, _, status), level) in refused.into_iter().zip(levels) {
            let request = format!("Read of UserAccessLevel of {key}");
            let level = listed_attribute(self.driver.scope(), &request, Some(&level))?;
            let readable = match level.value {
                Some(Variant::Byte(bits)) => bits & 1 != 0,
                other => {
                    return Err(self
                        .driver
                        .scope()
                        .malformed(request, format!("expected a Byte, got {other:?}")));
                }
            };
            if readable {
                return Err(self.driver.scope().refused(
                    format!("Read of Value of {key}"),
                    format!(
                        "server answered {} although the node's UserAccessLevel grants \
                         CurrentRead (a contradiction)",
                        convert::status_text(status)
                    ),
                ));
            }
            self.insert(
                snapshot,
                format!("opcua/value/{key}"),
                Class::Setpoint,
                Value::unavailable(
                    "the server does not let this user read it (UserAccessLevel without \
                     CurrentRead)",
                ),
            )?;
        }
        Ok(())
    }
}

/// The setpoint entry covering an item path (`opcua/value/<node>` or
/// `opcua/node/<node>/<attribute>`): the configured node itself or, for string NodeIds, the
/// most specific configured node whose identifier the item's extends (`s=Mixer.Setpoints`
/// covers `s=Mixer.Setpoints.MixSpeed`). Numeric children of a numeric folder carry no name.
pub fn setpoint_label(cfg: &OpcuaConfig, path: &str) -> Option<String> {
    let roots: Vec<(String, String)> = cfg
        .setpoints
        .iter()
        .map(|s| (s.name.clone(), s.node.clone()))
        .collect();
    convert::label(&roots, path)
}
