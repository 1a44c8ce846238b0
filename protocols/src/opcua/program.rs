//! The walk: the structure below every configured node, browsed level by level over
//! hierarchical references (bounded in depth, nodes and references), each node with its
//! parents, class, browse name and type definition; then its attributes (`items.rs`).

use std::collections::{BTreeMap, BTreeSet};

use opcua::types::{ExpandedNodeId, NodeClass, NodeId};
use otdrift_core::{Class, Snapshot, Value};

use super::{MAX_DEPTH, MAX_NODES, OpcuaCollector, convert};
use crate::CollectError;

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
    ) -> Result<(), CollectError> {
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
        self.read_attributes(snapshot, namespaces, &nodes).await
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
