//! The simulated server's address space as the node manager serves it: the subset of
//! namespace 0 a collector needs (Server object, BuildInfo, operation limits), the PLC's
//! folders and variables, and the nodes the walk-testing quirks generate; each node's
//! attributes and references.

use opcua_nodes::AccessLevel;
use opcua_types::{
    AttributeId, DataTypeId, DateTime, ExpandedNodeId, ExtensionObject, Identifier, LocalizedText,
    NodeClass, NodeId, ObjectTypeId, QualifiedName, ReferenceDescription, ReferenceTypeId,
    ServerState, ServerStatusDataType, StatusCode, UAString, VariableTypeId, Variant,
};

use super::manager::MAX_BROWSE_CONTINUATION_POINTS;
use super::state::{DEEP_NESTING_LEVELS, HUGE_STRING_BYTES, MILLION_REFS, OpcuaState, Quirk};
use super::values::ValueType;

// ------------------------------------------------------------------ address space

/// A node of namespace 0 the simulator serves.
pub(crate) struct StdNode {
    pub(crate) id: u32,
    pub(crate) name: &'static str,
    pub(crate) class: NodeClass,
    pub(crate) parent: u32,
    pub(crate) reference: ReferenceTypeId,
    pub(crate) type_definition: u32,
    /// Data type id and value rank, for variables.
    pub(crate) variable: Option<(u32, i32)>,
}

pub(crate) const fn object(
    id: u32,
    name: &'static str,
    parent: u32,
    reference: ReferenceTypeId,
    type_definition: u32,
) -> StdNode {
    StdNode {
        id,
        name,
        class: NodeClass::Object,
        parent,
        reference,
        type_definition,
        variable: None,
    }
}

pub(crate) const fn variable(
    id: u32,
    name: &'static str,
    parent: u32,
    reference: ReferenceTypeId,
    type_definition: u32,
    data_type: u32,
    value_rank: i32,
) -> StdNode {
    StdNode {
        id,
        name,
        class: NodeClass::Variable,
        parent,
        reference,
        type_definition,
        variable: Some((data_type, value_rank)),
    }
}

pub(crate) const FOLDER_TYPE: u32 = ObjectTypeId::FolderType as u32;
pub(crate) const PROPERTY_TYPE: u32 = VariableTypeId::PropertyType as u32;
pub(crate) const DATA_VARIABLE_TYPE: u32 = VariableTypeId::BaseDataVariableType as u32;
pub(crate) const ORGANIZES: ReferenceTypeId = ReferenceTypeId::Organizes;
pub(crate) const HAS_COMPONENT: ReferenceTypeId = ReferenceTypeId::HasComponent;
pub(crate) const HAS_PROPERTY: ReferenceTypeId = ReferenceTypeId::HasProperty;
pub(crate) const STRING: u32 = DataTypeId::String as u32;
pub(crate) const UTC_TIME: u32 = DataTypeId::UtcTime as u32;
pub(crate) const UINT32: u32 = DataTypeId::UInt32 as u32;

pub(crate) const ROOT: u32 = 84;
pub(crate) const OBJECTS: u32 = 85;
pub(crate) const SERVER: u32 = 2253;
pub(crate) const BUILD_INFO: u32 = 2260;
pub(crate) const OPERATION_LIMITS: u32 = 11704;
pub(crate) const MAX_NODES_PER_READ: u32 = 11705;
pub(crate) const MAX_NODES_PER_BROWSE: u32 = 11710;

/// The namespace 0 nodes: the folders, the Server object with its status, BuildInfo,
/// NamespaceArray and OperationLimits. Type nodes are not served (they are referenced as type
/// definitions only).
#[rustfmt::skip]
pub(crate) const STD_NODES: &[StdNode] = &[
    object(ROOT, "Root", 0, ORGANIZES, FOLDER_TYPE),
    object(OBJECTS, "Objects", ROOT, ORGANIZES, FOLDER_TYPE),
    object(SERVER, "Server", OBJECTS, ORGANIZES, ObjectTypeId::ServerType as u32),
    variable(2254, "ServerArray", SERVER, HAS_PROPERTY, PROPERTY_TYPE, STRING, 1),
    variable(2255, "NamespaceArray", SERVER, HAS_PROPERTY, PROPERTY_TYPE, STRING, 1),
    variable(2256, "ServerStatus", SERVER, HAS_COMPONENT, VariableTypeId::ServerStatusType as u32, DataTypeId::ServerStatusDataType as u32, -1),
    variable(2257, "StartTime", 2256, HAS_COMPONENT, DATA_VARIABLE_TYPE, UTC_TIME, -1),
    variable(2258, "CurrentTime", 2256, HAS_COMPONENT, DATA_VARIABLE_TYPE, UTC_TIME, -1),
    variable(2259, "State", 2256, HAS_COMPONENT, DATA_VARIABLE_TYPE, DataTypeId::ServerState as u32, -1),
    variable(BUILD_INFO, "BuildInfo", 2256, HAS_COMPONENT, VariableTypeId::BuildInfoType as u32, DataTypeId::BuildInfo as u32, -1),
    variable(2261, "ProductName", BUILD_INFO, HAS_COMPONENT, DATA_VARIABLE_TYPE, STRING, -1),
    variable(2262, "ProductUri", BUILD_INFO, HAS_COMPONENT, DATA_VARIABLE_TYPE, STRING, -1),
    variable(2263, "ManufacturerName", BUILD_INFO, HAS_COMPONENT, DATA_VARIABLE_TYPE, STRING, -1),
    variable(2264, "SoftwareVersion", BUILD_INFO, HAS_COMPONENT, DATA_VARIABLE_TYPE, STRING, -1),
    variable(2265, "BuildNumber", BUILD_INFO, HAS_COMPONENT, DATA_VARIABLE_TYPE, STRING, -1),
    variable(2266, "BuildDate", BUILD_INFO, HAS_COMPONENT, DATA_VARIABLE_TYPE, UTC_TIME, -1),
    variable(2267, "ServiceLevel", SERVER, HAS_PROPERTY, PROPERTY_TYPE, DataTypeId::Byte as u32, -1),
    object(2268, "ServerCapabilities", SERVER, HAS_COMPONENT, ObjectTypeId::ServerCapabilitiesType as u32),
    variable(2735, "MaxBrowseContinuationPoints", 2268, HAS_PROPERTY, PROPERTY_TYPE, DataTypeId::UInt16 as u32, -1),
    object(OPERATION_LIMITS, "OperationLimits", 2268, HAS_COMPONENT, ObjectTypeId::OperationLimitsType as u32),
    variable(MAX_NODES_PER_READ, "MaxNodesPerRead", OPERATION_LIMITS, HAS_PROPERTY, PROPERTY_TYPE, UINT32, -1),
    variable(MAX_NODES_PER_BROWSE, "MaxNodesPerBrowse", OPERATION_LIMITS, HAS_PROPERTY, PROPERTY_TYPE, UINT32, -1),
];

pub(crate) fn std_node(id: u32) -> Option<&'static StdNode> {
    STD_NODES.iter().find(|n| n.id == id)
}

/// A node as the services see it, resolved against the current state.
pub(crate) struct View {
    pub(crate) id: NodeId,
    pub(crate) class: NodeClass,
    pub(crate) browse_name: QualifiedName,
    pub(crate) type_definition: NodeId,
    pub(crate) variable: Option<VarView>,
}

pub(crate) struct VarView {
    pub(crate) data_type: NodeId,
    pub(crate) value_rank: i32,
    pub(crate) array_dimensions: Option<Vec<u32>>,
    /// The value, or the status a read of it answers.
    pub(crate) value: Result<Variant, StatusCode>,
    /// Whether AccessLevel and UserAccessLevel grant CurrentRead.
    pub(crate) readable: bool,
}

/// The nodes the structural quirks generate below a PLC folder, named
/// `<folder>#deep-<n>`, `<folder>#ref-<n>` and `<folder>#more-<n>` (state ids never hold a
/// `#`). They are computed, never stored: a million references cost nothing until browsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generated {
    /// `deep-nesting`: level `n` of the chain (its child is level `n + 1`).
    Deep,
    /// `million-refs`: the `n`-th extra reference of the folder.
    Ref,
    /// `endless-continuation`: the `n`-th page's reference.
    More,
}

impl Generated {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Generated::Deep => "deep",
            Generated::Ref => "ref",
            Generated::More => "more",
        }
    }

    pub(crate) fn quirk(self) -> Quirk {
        match self {
            Generated::Deep => Quirk::DeepNesting,
            Generated::Ref => Quirk::MillionRefs,
            Generated::More => Quirk::EndlessContinuation,
        }
    }

    /// The highest `n` that exists.
    pub(crate) fn last(self) -> u32 {
        match self {
            Generated::Deep => DEEP_NESTING_LEVELS,
            Generated::Ref => MILLION_REFS,
            Generated::More => u32::MAX,
        }
    }
}

pub(crate) enum Located<'a> {
    Std(&'static StdNode),
    Plc(&'a str),
    /// A generated node: the folder it hangs under, its kind and number.
    Generated(&'a str, Generated, u32),
    /// A folder's NodeVersion property (`<folder>#NodeVersion`, with `node_version = true`).
    Version(&'a str),
}

/// The identifier suffix of a folder's NodeVersion property.
pub(crate) const NODE_VERSION_SUFFIX: &str = "NodeVersion";

/// What a node resolves to, given the state and quirks.
pub(crate) fn locate<'a>(state: &OpcuaState, id: &'a NodeId) -> Option<Located<'a>> {
    match (&id.identifier, id.namespace) {
        (Identifier::Numeric(n), 0) => {
            let node = std_node(*n)?;
            let hidden = (state.quirks.get(Quirk::HiddenLimits)
                && matches!(
                    node.id,
                    OPERATION_LIMITS | MAX_NODES_PER_READ | MAX_NODES_PER_BROWSE
                ))
                || (state.quirks.get(Quirk::NoBuildInfo) && (BUILD_INFO..=2266).contains(&node.id));
            (!hidden).then_some(Located::Std(node))
        }
        (Identifier::String(s), ns) if ns == state.namespace_index() => {
            let text = s.as_ref();
            if let Some((folder, rest)) = text.split_once('#') {
                if rest == NODE_VERSION_SUFFIX {
                    return state.node_version(folder).map(|_| Located::Version(folder));
                }
                return locate_generated(state, folder, rest);
            }
            state.nodes.contains_key(text).then_some(Located::Plc(text))
        }
        _ => None,
    }
}

/// A generated node, when its quirk is on and its folder exists.
pub(crate) fn locate_generated<'a>(
    state: &OpcuaState,
    folder: &'a str,
    rest: &str,
) -> Option<Located<'a>> {
    let is_folder = state
        .nodes
        .get(folder)
        .is_some_and(|n| n.variable.is_none());
    let (prefix, n) = rest.split_once('-')?;
    let n: u32 = n.parse().ok()?;
    let kind = [Generated::Deep, Generated::Ref, Generated::More]
        .into_iter()
        .find(|k| k.prefix() == prefix)?;
    (is_folder && state.quirks.get(kind.quirk()) && (1..=kind.last()).contains(&n))
        .then_some(Located::Generated(folder, kind, n))
}

pub(crate) fn generated_id(folder: &str, kind: Generated, n: u32) -> String {
    format!("{folder}#{}-{n}", kind.prefix())
}

pub(crate) fn plc_id(state: &OpcuaState, id: &str) -> NodeId {
    NodeId::new(state.namespace_index(), UAString::from(id))
}

pub(crate) fn build_info_value(state: &OpcuaState) -> opcua_types::BuildInfo {
    let b = &state.build_info;
    if state.quirks.get(Quirk::EmptyBuildInfo) {
        return opcua_types::BuildInfo {
            product_uri: UAString::from(""),
            manufacturer_name: UAString::from(""),
            product_name: UAString::from(""),
            software_version: UAString::from(""),
            build_number: UAString::from(""),
            build_date: DateTime::null(),
        };
    }
    if state.quirks.get(Quirk::PlaceholderBuildInfo) {
        return opcua_types::BuildInfo {
            product_uri: UAString::from("urn:unknown"),
            manufacturer_name: UAString::from("Unknown"),
            product_name: UAString::from("OPC UA Server"),
            software_version: UAString::from("1.0.0"),
            build_number: UAString::from("0"),
            build_date: DateTime::ymd(2000, 1, 1),
        };
    }
    opcua_types::BuildInfo {
        product_uri: UAString::from(b.product_uri.as_str()),
        manufacturer_name: UAString::from(b.manufacturer_name.as_str()),
        product_name: UAString::from(b.product_name.as_str()),
        software_version: UAString::from(b.software_version.as_str()),
        build_number: UAString::from(b.build_number.as_str()),
        build_date: DateTime::parse_from_rfc3339(&b.build_date)
            .unwrap_or_else(|_| DateTime::null()),
    }
}

pub(crate) fn std_value(
    state: &OpcuaState,
    start_time: DateTime,
    node: &StdNode,
) -> Result<Variant, StatusCode> {
    let refused = state.quirks.get(Quirk::RefuseIdentity);
    let limits = state.effective_limits();
    let build = || build_info_value(state);
    let strings = |items: Vec<String>| {
        Variant::from(items.into_iter().map(UAString::from).collect::<Vec<_>>())
    };
    Ok(match node.id {
        2254 => strings(vec![state.application_uri.clone()]),
        2255 => strings(state.namespace_array()),
        2256 => Variant::from(ExtensionObject::from_message(ServerStatusDataType {
            start_time,
            current_time: DateTime::now(),
            state: ServerState::Running,
            build_info: build(),
            seconds_till_shutdown: 0,
            shutdown_reason: LocalizedText::null(),
        })),
        2257 => Variant::from(start_time),
        2258 => Variant::from(DateTime::now()),
        2259 => Variant::Int32(0),
        BUILD_INFO..=2266 if refused => return Err(StatusCode::BadUserAccessDenied),
        BUILD_INFO => Variant::from(ExtensionObject::from_message(build())),
        2261 => Variant::from(build().product_name),
        2262 => Variant::from(build().product_uri),
        2263 => Variant::from(build().manufacturer_name),
        2264 => Variant::from(build().software_version),
        2265 => Variant::from(build().build_number),
        2266 => Variant::from(build().build_date),
        2267 => Variant::Byte(255),
        2735 => Variant::UInt16(MAX_BROWSE_CONTINUATION_POINTS),
        MAX_NODES_PER_READ => Variant::UInt32(limits.max_nodes_per_read),
        MAX_NODES_PER_BROWSE => Variant::UInt32(limits.max_nodes_per_browse),
        _ => return Err(StatusCode::BadAttributeIdInvalid),
    })
}

pub(crate) fn view(state: &OpcuaState, start_time: DateTime, located: &Located<'_>) -> View {
    match located {
        Located::Std(node) => View {
            id: NodeId::new(0, node.id),
            class: node.class,
            browse_name: QualifiedName::new(0, node.name),
            type_definition: NodeId::new(0, node.type_definition),
            variable: node.variable.map(|(data_type, value_rank)| VarView {
                data_type: NodeId::new(0, data_type),
                value_rank,
                array_dimensions: (value_rank == 1).then(|| vec![0]),
                value: std_value(state, start_time, node),
                readable: true,
            }),
        },
        Located::Version(folder) => View {
            id: plc_id(state, &format!("{folder}#{NODE_VERSION_SUFFIX}")),
            class: NodeClass::Variable,
            browse_name: QualifiedName::new(0, NODE_VERSION_SUFFIX),
            type_definition: NodeId::new(0, PROPERTY_TYPE),
            variable: Some(VarView {
                data_type: NodeId::new(0, STRING),
                value_rank: -1,
                array_dimensions: None,
                value: state
                    .node_version(folder)
                    .map(Variant::from)
                    .ok_or(StatusCode::BadNodeIdUnknown),
                readable: true,
            }),
        },
        Located::Generated(folder, kind, n) => View {
            id: plc_id(state, &generated_id(folder, *kind, *n)),
            class: NodeClass::Object,
            browse_name: QualifiedName::new(
                state.namespace_index(),
                format!("{}-{n}", kind.prefix()),
            ),
            type_definition: NodeId::new(0, FOLDER_TYPE),
            variable: None,
        },
        Located::Plc(id) => {
            let ns = state.namespace_index();
            let node = state.nodes.get(*id);
            let name = node.map(|n| n.name.as_str()).unwrap_or(id);
            let variable = node.and_then(|n| n.variable.as_ref()).map(|v| {
                let dims = match &v.value {
                    Variant::Array(a) => {
                        Some(vec![u32::try_from(a.values.len()).unwrap_or(u32::MAX)])
                    }
                    _ => None,
                };
                let value = if !v.readable || state.quirks.get(Quirk::UnreadableValues) {
                    Err(StatusCode::BadNotReadable)
                } else if state.quirks.get(Quirk::BadValues) {
                    Err(StatusCode::BadOutOfService)
                } else if state.quirks.get(Quirk::HugeString) && v.vtype == ValueType::String {
                    Ok(Variant::from("x".repeat(HUGE_STRING_BYTES)))
                } else {
                    Ok(v.value.clone())
                };
                VarView {
                    data_type: NodeId::new(0, v.vtype.data_type_id()),
                    value_rank: if dims.is_some() { 1 } else { -1 },
                    array_dimensions: dims,
                    value,
                    readable: v.readable,
                }
            });
            View {
                id: plc_id(state, id),
                class: if variable.is_some() {
                    NodeClass::Variable
                } else {
                    NodeClass::Object
                },
                browse_name: QualifiedName::new(ns, name),
                type_definition: NodeId::new(
                    0,
                    if variable.is_some() {
                        DATA_VARIABLE_TYPE
                    } else {
                        FOLDER_TYPE
                    },
                ),
                variable,
            }
        }
    }
}

pub(crate) fn read_attribute(view: &View, attribute: AttributeId) -> Result<Variant, StatusCode> {
    let var = view.variable.as_ref();
    let need_var = || var.ok_or(StatusCode::BadAttributeIdInvalid);
    Ok(match attribute {
        AttributeId::NodeId => Variant::from(view.id.clone()),
        AttributeId::NodeClass => Variant::Int32(view.class as i32),
        AttributeId::BrowseName => Variant::from(view.browse_name.clone()),
        AttributeId::DisplayName => {
            Variant::from(LocalizedText::new("", view.browse_name.name.as_ref()))
        }
        AttributeId::Description => Variant::from(LocalizedText::null()),
        AttributeId::WriteMask | AttributeId::UserWriteMask => Variant::UInt32(0),
        AttributeId::EventNotifier if var.is_none() => Variant::Byte(0),
        AttributeId::Value => return need_var()?.value.clone(),
        AttributeId::DataType => Variant::from(need_var()?.data_type.clone()),
        AttributeId::ValueRank => Variant::Int32(need_var()?.value_rank),
        AttributeId::ArrayDimensions => match &need_var()?.array_dimensions {
            Some(dims) => Variant::from(dims.clone()),
            None => Variant::Empty,
        },
        AttributeId::AccessLevel | AttributeId::UserAccessLevel => {
            if need_var()?.readable {
                Variant::Byte(AccessLevel::CURRENT_READ.bits())
            } else {
                Variant::Byte(0)
            }
        }
        AttributeId::MinimumSamplingInterval => {
            need_var()?;
            Variant::Double(100.0)
        }
        AttributeId::Historizing => {
            need_var()?;
            Variant::Boolean(false)
        }
        _ => return Err(StatusCode::BadAttributeIdInvalid),
    })
}

pub(crate) fn reference(
    state: &OpcuaState,
    start_time: DateTime,
    target: &Located<'_>,
    reference_type: ReferenceTypeId,
    is_forward: bool,
) -> ReferenceDescription {
    let v = view(state, start_time, target);
    ReferenceDescription {
        reference_type_id: reference_type.into(),
        is_forward,
        node_id: ExpandedNodeId::from(v.id),
        display_name: LocalizedText::new("", v.browse_name.name.as_ref()),
        browse_name: v.browse_name,
        node_class: v.class,
        type_definition: ExpandedNodeId::from(v.type_definition),
    }
}

/// Every reference of a node, forward children first (in the state's order), then the type
/// definition, then the inverse reference to the parent.
pub(crate) fn references(
    state: &OpcuaState,
    start_time: DateTime,
    located: &Located<'_>,
) -> Vec<ReferenceDescription> {
    let mut out = Vec::new();
    let me = view(state, start_time, located);
    match located {
        Located::Std(node) => {
            for child in STD_NODES.iter().filter(|c| c.parent == node.id) {
                if let Some(found) = locate(state, &NodeId::new(0, child.id)) {
                    out.push(reference(state, start_time, &found, child.reference, true));
                }
            }
            if node.id == OBJECTS {
                for child in state.children.get("").into_iter().flatten() {
                    out.push(reference(
                        state,
                        start_time,
                        &Located::Plc(child),
                        ORGANIZES,
                        true,
                    ));
                }
            }
            if node.parent != 0
                && let Some(parent) = std_node(node.parent)
            {
                out.push(reference(
                    state,
                    start_time,
                    &Located::Std(parent),
                    node.reference,
                    false,
                ));
            }
        }
        Located::Version(folder) => {
            out.push(reference(
                state,
                start_time,
                &Located::Plc(folder),
                HAS_PROPERTY,
                false,
            ));
        }
        Located::Generated(folder, kind, n) => {
            if *kind == Generated::Deep && *n < DEEP_NESTING_LEVELS {
                let child = Located::Generated(folder, Generated::Deep, n + 1);
                out.push(reference(state, start_time, &child, ORGANIZES, true));
            }
            let parent = if *kind == Generated::Deep && *n > 1 {
                Located::Generated(folder, Generated::Deep, n - 1)
            } else {
                Located::Plc(folder)
            };
            out.push(reference(state, start_time, &parent, ORGANIZES, false));
        }
        Located::Plc(id) => {
            for child in state.children.get(*id).into_iter().flatten() {
                out.push(reference(
                    state,
                    start_time,
                    &Located::Plc(child),
                    ORGANIZES,
                    true,
                ));
            }
            if state.node_version(id).is_some() {
                let version = Located::Version(id);
                out.push(reference(state, start_time, &version, HAS_PROPERTY, true));
            }
            let is_folder = state.nodes.get(*id).is_some_and(|n| n.variable.is_none());
            if is_folder && state.quirks.get(Quirk::DeepNesting) {
                let chain = Located::Generated(id, Generated::Deep, 1);
                out.push(reference(state, start_time, &chain, ORGANIZES, true));
            }
            let parent = OpcuaState::parent_of(id);
            let parent_ref = if parent.is_empty() {
                std_node(OBJECTS).map(Located::Std)
            } else {
                Some(Located::Plc(parent))
            };
            if let Some(parent) = parent_ref {
                out.push(reference(state, start_time, &parent, ORGANIZES, false));
            }
        }
    }
    out.push(ReferenceDescription {
        reference_type_id: ReferenceTypeId::HasTypeDefinition.into(),
        is_forward: true,
        node_id: ExpandedNodeId::from(me.type_definition.clone()),
        browse_name: QualifiedName::null(),
        display_name: LocalizedText::null(),
        node_class: if me.class == NodeClass::Variable {
            NodeClass::VariableType
        } else {
            NodeClass::ObjectType
        },
        type_definition: ExpandedNodeId::null(),
    });
    out
}

/// The rest of a node's references, handed back through a browse continuation point: the
/// listed ones still to send, then the generated ones (`million-refs`, or the
/// `endless-continuation` page that never ends), made page by page.
pub(crate) struct Remaining {
    pub(crate) references: std::collections::VecDeque<ReferenceDescription>,
    pub(crate) generator: Option<Generator>,
}

/// Makes the references of a quirk on demand: a folder's millionth reference costs nothing
/// until a client pages that far.
pub(crate) struct Generator {
    pub(crate) folder: String,
    pub(crate) kind: Generated,
    pub(crate) next: u32,
}

impl Generator {
    /// The generator for a browsed node, when a quirk adds references to it.
    pub(crate) fn for_node(state: &OpcuaState, located: &Located<'_>) -> Option<Generator> {
        let Located::Plc(id) = located else {
            return None;
        };
        if state.nodes.get(*id).is_none_or(|n| n.variable.is_some()) {
            return None;
        }
        let kind = if state.quirks.get(Quirk::EndlessContinuation) {
            Generated::More
        } else if state.quirks.get(Quirk::MillionRefs) {
            Generated::Ref
        } else {
            return None;
        };
        Some(Generator {
            folder: (*id).to_owned(),
            kind,
            next: 1,
        })
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.next > self.kind.last()
    }

    /// The current reference (its node id, name and class only: what a browse needs).
    pub(crate) fn current(&self, state: &OpcuaState) -> ReferenceDescription {
        let ns = state.namespace_index();
        let name = format!("{}-{}", self.kind.prefix(), self.next);
        ReferenceDescription {
            reference_type_id: ORGANIZES.into(),
            is_forward: true,
            node_id: ExpandedNodeId::from(plc_id(
                state,
                &generated_id(&self.folder, self.kind, self.next),
            )),
            display_name: LocalizedText::new("", &name),
            browse_name: QualifiedName::new(ns, name),
            node_class: NodeClass::Object,
            type_definition: ExpandedNodeId::from(NodeId::new(0, FOLDER_TYPE)),
        }
    }
}
