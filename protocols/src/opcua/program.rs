//! The walk: the structure below every configured node, browsed level by level over
//! hierarchical references (bounded in depth, nodes and references), each node with its
//! parents, class, browse name and type definition; then its attributes (`items.rs`). And
//! what the collector knows of the structure between captures ([`Model`]): when a poll may
//! read the values alone.

use std::collections::{BTreeMap, BTreeSet};
use std::mem::{Discriminant, discriminant};

use opcua::types::{ExpandedNodeId, NodeClass, NodeId, StatusCode};
use otdrift_core::{Class, Item, Snapshot, Value};

use super::wire::{busy_status, listed_attribute, typed, value_of};
use super::{MAX_DEPTH, MAX_NODES, OpcuaCollector, convert};
use crate::CollectError;

/// The browse name of the property a server updates when a reference of its node is added
/// or removed (OPC 10000-3, 5.2.2 / 8.2: NodeVersion).
const NODE_VERSION: &str = "NodeVersion";

/// What the collector knows of the server's structure between captures, so that a poll may
/// read the values alone (one Read per MaxNodesPerRead variables, no Browse, no attribute
/// reads) and never at the cost of a missed change:
///
/// - only on a server whose NodeVersion properties **were seen to move** with a structure
///   change: a full walk found nodes or references added or removed since the previous full
///   walk, and a NodeVersion present in both moved. A structure change without one moving
///   revokes that for good (in this process): the server keeps no NodeVersion we can trust;
/// - never on a new session, after the server restarted (its start time moved: a download
///   restarts a PLC's server and may restart its counters), when the NamespaceArray moved,
///   or while a configured node is absent (nothing inside the tree would tell us it came);
/// - a full walk at least every `full_browse_every` polls (NodeVersion does not move for an
///   attribute change such as a renamed node);
/// - the values-only poll falls back to the full walk within the same capture when a
///   NodeVersion moved, a value's status is not what the full walk saw (a deleted node
///   answers BadNodeIdUnknown), or a value's type or array length changed (a retyped node).
#[derive(Debug, Default)]
pub(crate) struct Model {
    last: Option<LastWalk>,
    proven: bool,
    disproven: bool,
    /// Values-only polls since the last full walk.
    since_full: u32,
}

/// The last full walk, as a values-only poll reuses it.
#[derive(Debug)]
pub(crate) struct LastWalk {
    namespaces: Vec<String>,
    start_time: Option<Value>,
    /// Every `opcua/node/...` item.
    structure: Vec<Item>,
    /// Each node and the nodes referencing it: what NodeVersion speaks for.
    shape: BTreeMap<String, BTreeSet<String>>,
    /// Whether a configured node was absent.
    absent: bool,
    values: Vec<Variable>,
    /// The NodeVersion values by node key.
    versions: BTreeMap<String, Value>,
}

/// A variable whose value a values-only poll reads.
#[derive(Debug)]
struct Variable {
    key: String,
    id: NodeId,
    /// The value was "not available" (refused with an access status its UserAccessLevel
    /// agreed with): kept while the server refuses it the same way.
    unavailable: Option<Value>,
    /// The value's type and array length.
    shape: (Discriminant<Value>, Option<usize>),
}

fn value_shape(value: &Value) -> (Discriminant<Value>, Option<usize>) {
    let len = match value {
        Value::List(items) => Some(items.len()),
        _ => None,
    };
    (discriminant(value), len)
}

impl Model {
    /// Takes in a full walk's result: proves or disproves the server's NodeVersion, and keeps
    /// what a values-only poll needs.
    pub(crate) fn remember(
        &mut self,
        asset: &str,
        snapshot: &Snapshot,
        nodes: &BTreeMap<String, Found>,
        namespaces: Vec<String>,
        start_time: Option<Value>,
    ) {
        let structure: Vec<Item> = snapshot
            .items()
            .filter(|i| i.path().starts_with("opcua/node/"))
            .cloned()
            .collect();
        let absent = structure.iter().any(|i| {
            i.path().ends_with("/node_class")
                && matches!(i.value(), Value::Text(t) if t.starts_with("absent ("))
        });
        let shape: BTreeMap<String, BTreeSet<String>> = nodes
            .iter()
            .map(|(k, f)| (k.clone(), f.parents.clone()))
            .collect();
        let value = |key: &str| {
            snapshot
                .get(&format!("opcua/value/{key}"))
                .map(|i| i.value().clone())
        };
        let mut values = Vec::new();
        let mut versions = BTreeMap::new();
        for (key, found) in nodes {
            let (Some(id), Some(v)) = (&found.id, value(key)) else {
                continue;
            };
            if found.browse_name.as_deref() == Some(NODE_VERSION) && !found.root {
                versions.insert(key.clone(), v.clone());
            }
            values.push(Variable {
                key: key.clone(),
                id: id.clone(),
                unavailable: matches!(v, Value::Unavailable(_)).then(|| v.clone()),
                shape: value_shape(&v),
            });
        }
        if let Some(last) = &self.last
            && last.shape != shape
        {
            let moved = last
                .versions
                .iter()
                .any(|(k, v)| versions.get(k).is_some_and(|now| now != v));
            if moved && !self.disproven {
                if !self.proven {
                    tracing::info!(
                        asset,
                        "the server's NodeVersion moved with a structure change: polls may                          read values only while it stays"
                    );
                }
                self.proven = true;
            } else if !moved {
                if self.proven || !last.versions.is_empty() {
                    tracing::warn!(
                        asset,
                        "the structure changed while no NodeVersion moved: every poll browses                          the structure from now on"
                    );
                }
                self.proven = false;
                self.disproven = true;
            }
        }
        self.since_full = 0;
        self.last = Some(LastWalk {
            namespaces,
            start_time,
            structure,
            shape,
            absent,
            values,
            versions,
        });
    }

    /// The last walk, when this poll may read values only.
    fn usable(
        &mut self,
        namespaces: &[String],
        start_time: Option<&Value>,
        every: u32,
    ) -> Option<LastWalk> {
        let last = self.last.as_ref()?;
        let fits = self.proven
            && !last.absent
            && !last.versions.is_empty()
            && self.since_full.saturating_add(1) < every
            && last.namespaces == namespaces
            && last.start_time.as_ref() == start_time;
        if fits { self.last.take() } else { None }
    }
}

impl OpcuaCollector {
    /// A values-only poll (see [`Model`]): the structure items of the last full walk and the
    /// values read now, or `None` when this poll must walk in full.
    pub(crate) async fn values_only(
        &mut self,
        namespaces: &[String],
        start_time: Option<&Value>,
    ) -> Result<Option<Vec<Item>>, CollectError> {
        let every = self.cfg.full_browse_every;
        let Some(last) = self.model.usable(namespaces, start_time, every) else {
            return Ok(None);
        };
        let read = self.read_values(&last).await;
        self.model.last = Some(last);
        if matches!(read, Ok(Some(_))) {
            self.model.since_full += 1;
        }
        read
    }

    async fn read_values(&mut self, last: &LastWalk) -> Result<Option<Vec<Item>>, CollectError> {
        let ops: Vec<_> = last.values.iter().map(|v| value_of(v.id.clone())).collect();
        let answers = self.read_all(&ops).await?;
        let mut items = last.structure.clone();
        let mut versions = BTreeMap::new();
        for (v, dv) in last.values.iter().zip(answers) {
            let status = dv.status();
            if busy_status(status) {
                let request = format!("Read of Value of {}", v.key);
                listed_attribute(self.driver.scope(), &request, Some(&dv))?;
            }
            let value = match &v.unavailable {
                Some(kept)
                    if matches!(
                        status,
                        StatusCode::BadNotReadable | StatusCode::BadUserAccessDenied
                    ) =>
                {
                    kept.clone()
                }
                Some(_) => return Ok(None),
                None if !status.is_good() => return Ok(None),
                None => {
                    let request = format!("Read of Value of {}", v.key);
                    match typed(self.driver.scope(), &request, &dv) {
                        Ok(value) if value_shape(&value) == v.shape => value,
                        _ => return Ok(None),
                    }
                }
            };
            if last.versions.contains_key(&v.key) {
                versions.insert(v.key.clone(), value.clone());
            }
            items.push(self.driver.scope().new_item(
                format!("opcua/value/{}", v.key),
                Class::Setpoint,
                value,
            )?);
        }
        Ok((versions == last.versions).then_some(items))
    }
}

/// The value of `opcua/node/<node>/node_class` for a configured node the server does not
/// have: its address space (a Browse answering BadNodeIdUnknown) says so, which is state.
const ABSENT: &str = "absent (not in the server's address space)";
/// The same for a configured node whose namespace is not in the server's NamespaceArray.
const ABSENT_NAMESPACE: &str = "absent (namespace not in the server's NamespaceArray)";

/// One node found by the walk.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) id: Option<NodeId>,
    pub(crate) class: Option<NodeClass>,
    pub(crate) browse_name: Option<String>,
    pub(crate) type_definition: Option<String>,
    pub(crate) parents: BTreeSet<String>,
    pub(crate) root: bool,
}

/// What one capture's walk has taken in so far, against the bounds.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Walk {
    /// References received for finished browse levels.
    pub(crate) references: usize,
    /// BrowseNext requests sent.
    pub(crate) browse_next: usize,
}

impl OpcuaCollector {
    /// The structure and values below the configured nodes.
    pub(crate) async fn read_tree(
        &mut self,
        snapshot: &mut Snapshot,
        namespaces: &[String],
    ) -> Result<BTreeMap<String, Found>, CollectError> {
        let mut nodes: BTreeMap<String, Found> = BTreeMap::new();
        for setpoint in &self.cfg.setpoints.clone() {
            let parsed = convert::ConfigNode::parse(&setpoint.node).ok_or_else(|| {
                self.driver.scope().config(format!(
                    "setpoint {:?}: {:?} is not a NodeId",
                    setpoint.name, setpoint.node
                ))
            })?;
            match parsed.resolve(namespaces) {
                Ok(id) => {
                    let key = convert::node_key(&id, namespaces);
                    let found = nodes.entry(key).or_default();
                    found.id = Some(id);
                    found.root = true;
                }
                Err(_) => {
                    // The server's own list of namespaces does not have it: absent, as the
                    // server says.
                    let path = format!("opcua/node/{}/node_class", setpoint.node);
                    if snapshot.get(&path).is_none() {
                        self.insert(
                            snapshot,
                            path,
                            Class::Program,
                            Value::Text(ABSENT_NAMESPACE.to_owned()),
                        )?;
                    }
                }
            }
        }
        let mut frontier: Vec<String> = nodes.keys().cloned().collect();
        let mut absent_roots: BTreeSet<String> = BTreeSet::new();
        for depth in 0..=MAX_DEPTH {
            let walkable: Vec<(String, NodeId)> = frontier
                .iter()
                .filter_map(|key| {
                    let found = nodes.get(key)?;
                    let walk = matches!(
                        found.class,
                        None | Some(NodeClass::Object | NodeClass::Variable | NodeClass::View)
                    );
                    walk.then(|| found.id.clone().map(|id| (key.clone(), id)))
                        .flatten()
                })
                .collect();
            if walkable.is_empty() {
                break;
            }
            if depth == MAX_DEPTH {
                let key = walkable.first().map(|(k, _)| k.clone()).unwrap_or_default();
                return Err(self.driver.scope().bound(
                    format!("Browse of {key}"),
                    format!("nodes nested more than {MAX_DEPTH} levels below a configured node"),
                ));
            }
            let browsed = self.browse_all(&walkable).await?;
            self.walk.references = self
                .walk
                .references
                .saturating_add(browsed.iter().flatten().map(Vec::len).sum());
            let mut next = Vec::new();
            for ((parent, _), refs) in walkable.iter().zip(browsed) {
                let Some(refs) = refs else {
                    let is_root = nodes.get(parent).is_some_and(|f| f.root);
                    if is_root && depth == 0 {
                        absent_roots.insert(parent.clone());
                        continue;
                    }
                    return Err(self.driver.scope().refused(
                        format!("Browse of {parent}"),
                        "server answered BadNodeIdUnknown for a node its own Browse lists (a \
                         contradiction)"
                            .to_owned(),
                    ));
                };
                for r in refs {
                    if !r.is_forward || r.node_id.server_index != 0 {
                        continue;
                    }
                    let (child_key, child_id) = expanded_key(&r.node_id, namespaces);
                    let is_new = !nodes.contains_key(&child_key);
                    if is_new && nodes.len() >= MAX_NODES {
                        return Err(self.driver.scope().bound(
                            format!("Browse of {parent}"),
                            format!(
                                "more than {MAX_NODES} nodes below the configured setpoint \
                                 nodes; configure narrower nodes"
                            ),
                        ));
                    }
                    let found = nodes.entry(child_key.clone()).or_default();
                    found.parents.insert(parent.clone());
                    if is_new {
                        found.id = child_id;
                        found.class = Some(r.node_class);
                        found.browse_name = Some(convert::browse_name(&r.browse_name, namespaces));
                        if !r.type_definition.is_null() {
                            found.type_definition =
                                Some(expanded_key(&r.type_definition, namespaces).0);
                        }
                        if found.id.is_some() {
                            next.push(child_key);
                        }
                    }
                }
            }
            frontier = next;
        }
        for key in &absent_roots {
            nodes.remove(key);
            self.insert(
                snapshot,
                format!("opcua/node/{key}/node_class"),
                Class::Program,
                Value::Text(ABSENT.to_owned()),
            )?;
        }
        self.read_attributes(snapshot, namespaces, &nodes).await?;
        Ok(nodes)
    }
}

/// The key of an ExpandedNodeId (with its URI when the reference carries one) and the NodeId
/// to browse it with (when its namespace is known here).
pub(crate) fn expanded_key(id: &ExpandedNodeId, namespaces: &[String]) -> (String, Option<NodeId>) {
    let uri = id.namespace_uri.as_ref();
    if uri.is_empty() {
        return (
            convert::node_key(&id.node_id, namespaces),
            Some(id.node_id.clone()),
        );
    }
    let index = namespaces
        .iter()
        .position(|u| u == uri)
        .and_then(|i| u16::try_from(i).ok());
    let node = index.map(|namespace| NodeId {
        namespace,
        identifier: id.node_id.identifier.clone(),
    });
    let key = match &node {
        Some(n) => convert::node_key(n, namespaces),
        None => format!("nsu={uri};{}", id.node_id.identifier),
    };
    (key, node)
}

pub(crate) fn class_name(class: NodeClass) -> String {
    match class {
        NodeClass::Object => "Object",
        NodeClass::Variable => "Variable",
        NodeClass::Method => "Method",
        NodeClass::ObjectType => "ObjectType",
        NodeClass::VariableType => "VariableType",
        NodeClass::ReferenceType => "ReferenceType",
        NodeClass::DataType => "DataType",
        NodeClass::View => "View",
        NodeClass::Unspecified => "Unspecified",
    }
    .to_owned()
}
