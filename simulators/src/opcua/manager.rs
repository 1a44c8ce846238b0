//! The simulator's address space, served by one async-opcua node manager that owns every
//! node (a small subset of namespace 0, the Server object, plus the PLC's nodes), logs every
//! service call it receives and applies the quirks; and the authenticator that logs session
//! activations.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use opcua_nodes::{AccessLevel, DefaultTypeTree};
use opcua_server::{
    CreateMonitoredItem, ServerEndpoint,
    authenticator::{AuthManager, DefaultAuthenticator, Password, UserToken},
    diagnostics::NamespaceMetadata,
    node_manager::{
        AddNodeItem, AddReferenceItem, AddReferenceResult, BrowseNode, BrowsePathItem,
        DeleteNodeItem, DeleteReferenceItem, HistoryNode, HistoryUpdateNode, MethodCall,
        NodeManager, ReadNode, RegisterNodeItem, RequestContext, ServerContext, WriteNode,
    },
};
use opcua_types::{
    AttributeId, DataTypeId, DataValue, DateTime, Error, ExpandedNodeId, ExtensionObject,
    Identifier, LocalizedText, NodeClass, NodeId, ObjectId, ObjectTypeId, QualifiedName,
    ReadAnnotationDataDetails, ReadAtTimeDetails, ReadEventDetails, ReadProcessedDetails,
    ReadRawModifiedDetails, ReferenceDescription, ReferenceTypeId, ServerState,
    ServerStatusDataType, StatusCode, TimestampsToReturn, UAString, UserTokenPolicy,
    VariableTypeId, Variant,
};

use super::{
    Shared,
    state::{
        DEEP_NESTING_LEVELS, HUGE_STRING_BYTES, MILLION_REFS, OpcuaState, Quirk, SLOW_ANSWER_MS,
        ValueType,
    },
};
use crate::request_log::LoggedRequest;

/// The services the node manager sees, with the binary encoding id of their request (the
/// `service` number in the request log) and whether they change server state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Read,
    Browse,
    BrowseNext,
    TranslateBrowsePaths,
    RegisterNodes,
    HistoryRead,
    Write,
    HistoryUpdate,
    Call,
    AddNodes,
    AddReferences,
    DeleteNodes,
    DeleteReferences,
    CreateMonitoredItems,
    ActivateSession,
}

impl Service {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Read => "read",
            Service::Browse => "browse",
            Service::BrowseNext => "browse_next",
            Service::TranslateBrowsePaths => "translate_browse_paths",
            Service::RegisterNodes => "register_nodes",
            Service::HistoryRead => "history_read",
            Service::Write => "write",
            Service::HistoryUpdate => "history_update",
            Service::Call => "call",
            Service::AddNodes => "add_nodes",
            Service::AddReferences => "add_references",
            Service::DeleteNodes => "delete_nodes",
            Service::DeleteReferences => "delete_references",
            Service::CreateMonitoredItems => "create_monitored_items",
            Service::ActivateSession => "activate_session",
        }
    }

    pub(crate) fn code(self) -> u16 {
        let id = match self {
            Service::Read => ObjectId::ReadRequest_Encoding_DefaultBinary,
            Service::Browse => ObjectId::BrowseRequest_Encoding_DefaultBinary,
            Service::BrowseNext => ObjectId::BrowseNextRequest_Encoding_DefaultBinary,
            Service::TranslateBrowsePaths => {
                ObjectId::TranslateBrowsePathsToNodeIdsRequest_Encoding_DefaultBinary
            }
            Service::RegisterNodes => ObjectId::RegisterNodesRequest_Encoding_DefaultBinary,
            Service::HistoryRead => ObjectId::HistoryReadRequest_Encoding_DefaultBinary,
            Service::Write => ObjectId::WriteRequest_Encoding_DefaultBinary,
            Service::HistoryUpdate => ObjectId::HistoryUpdateRequest_Encoding_DefaultBinary,
            Service::Call => ObjectId::CallRequest_Encoding_DefaultBinary,
            Service::AddNodes => ObjectId::AddNodesRequest_Encoding_DefaultBinary,
            Service::AddReferences => ObjectId::AddReferencesRequest_Encoding_DefaultBinary,
            Service::DeleteNodes => ObjectId::DeleteNodesRequest_Encoding_DefaultBinary,
            Service::DeleteReferences => ObjectId::DeleteReferencesRequest_Encoding_DefaultBinary,
            Service::CreateMonitoredItems => {
                ObjectId::CreateMonitoredItemsRequest_Encoding_DefaultBinary
            }
            Service::ActivateSession => ObjectId::ActivateSessionRequest_Encoding_DefaultBinary,
        };
        u16::try_from(id as u32).unwrap_or(u16::MAX)
    }

    /// Whether the service asks the server to change state (what otdrift must never send).
    pub(crate) fn writes(self) -> bool {
        matches!(
            self,
            Service::Write
                | Service::HistoryUpdate
                | Service::Call
                | Service::AddNodes
                | Service::AddReferences
                | Service::DeleteNodes
                | Service::DeleteReferences
        )
    }
}

// ------------------------------------------------------------------ address space

/// A node of namespace 0 the simulator serves.
struct StdNode {
    id: u32,
    name: &'static str,
    class: NodeClass,
    parent: u32,
    reference: ReferenceTypeId,
    type_definition: u32,
    /// Data type id and value rank, for variables.
    variable: Option<(u32, i32)>,
}

const fn object(
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

const fn variable(
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

const FOLDER_TYPE: u32 = ObjectTypeId::FolderType as u32;
const PROPERTY_TYPE: u32 = VariableTypeId::PropertyType as u32;
const DATA_VARIABLE_TYPE: u32 = VariableTypeId::BaseDataVariableType as u32;
const ORGANIZES: ReferenceTypeId = ReferenceTypeId::Organizes;
const HAS_COMPONENT: ReferenceTypeId = ReferenceTypeId::HasComponent;
const HAS_PROPERTY: ReferenceTypeId = ReferenceTypeId::HasProperty;
const STRING: u32 = DataTypeId::String as u32;
const UTC_TIME: u32 = DataTypeId::UtcTime as u32;
const UINT32: u32 = DataTypeId::UInt32 as u32;

const ROOT: u32 = 84;
const OBJECTS: u32 = 85;
const SERVER: u32 = 2253;
const BUILD_INFO: u32 = 2260;
const OPERATION_LIMITS: u32 = 11704;
const MAX_NODES_PER_READ: u32 = 11705;
const MAX_NODES_PER_BROWSE: u32 = 11710;

/// The namespace 0 nodes: the folders, the Server object with its status, BuildInfo,
/// NamespaceArray and OperationLimits. Type nodes are not served (they are referenced as type
/// definitions only).
const STD_NODES: &[StdNode] = &[
    object(ROOT, "Root", 0, ORGANIZES, FOLDER_TYPE),
    object(OBJECTS, "Objects", ROOT, ORGANIZES, FOLDER_TYPE),
    object(
        SERVER,
        "Server",
        OBJECTS,
        ORGANIZES,
        ObjectTypeId::ServerType as u32,
    ),
    variable(
        2254,
        "ServerArray",
        SERVER,
        HAS_PROPERTY,
        PROPERTY_TYPE,
        STRING,
        1,
    ),
    variable(
        2255,
        "NamespaceArray",
        SERVER,
        HAS_PROPERTY,
        PROPERTY_TYPE,
        STRING,
        1,
    ),
    variable(
        2256,
        "ServerStatus",
        SERVER,
        HAS_COMPONENT,
        VariableTypeId::ServerStatusType as u32,
        DataTypeId::ServerStatusDataType as u32,
        -1,
    ),
    variable(
        2257,
        "StartTime",
        2256,
        HAS_COMPONENT,
        DATA_VARIABLE_TYPE,
        UTC_TIME,
        -1,
    ),
    variable(
        2258,
        "CurrentTime",
        2256,
        HAS_COMPONENT,
        DATA_VARIABLE_TYPE,
        UTC_TIME,
        -1,
    ),
    variable(
        2259,
        "State",
        2256,
        HAS_COMPONENT,
        DATA_VARIABLE_TYPE,
        DataTypeId::ServerState as u32,
        -1,
    ),
    variable(
        BUILD_INFO,
        "BuildInfo",
        2256,
        HAS_COMPONENT,
        VariableTypeId::BuildInfoType as u32,
        DataTypeId::BuildInfo as u32,
        -1,
    ),
    variable(
        2261,
        "ProductName",
        BUILD_INFO,
        HAS_COMPONENT,
        DATA_VARIABLE_TYPE,
        STRING,
        -1,
    ),
    variable(
        2262,
        "ProductUri",
        BUILD_INFO,
        HAS_COMPONENT,
        DATA_VARIABLE_TYPE,
        STRING,
        -1,
    ),
    variable(
        2263,
        "ManufacturerName",
        BUILD_INFO,
        HAS_COMPONENT,
        DATA_VARIABLE_TYPE,
        STRING,
        -1,
    ),
    variable(
        2264,
        "SoftwareVersion",
        BUILD_INFO,
        HAS_COMPONENT,
        DATA_VARIABLE_TYPE,
        STRING,
        -1,
    ),
    variable(
        2265,
        "BuildNumber",
        BUILD_INFO,
        HAS_COMPONENT,
        DATA_VARIABLE_TYPE,
        STRING,
        -1,
    ),
    variable(
        2266,
        "BuildDate",
        BUILD_INFO,
        HAS_COMPONENT,
        DATA_VARIABLE_TYPE,
        UTC_TIME,
        -1,
    ),
    variable(
        2267,
        "ServiceLevel",
        SERVER,
        HAS_PROPERTY,
        PROPERTY_TYPE,
        DataTypeId::Byte as u32,
        -1,
    ),
    object(
        2268,
        "ServerCapabilities",
        SERVER,
        HAS_COMPONENT,
        ObjectTypeId::ServerCapabilitiesType as u32,
    ),
    variable(
        2735,
        "MaxBrowseContinuationPoints",
        2268,
        HAS_PROPERTY,
        PROPERTY_TYPE,
        DataTypeId::UInt16 as u32,
        -1,
    ),
    object(
        OPERATION_LIMITS,
        "OperationLimits",
        2268,
        HAS_COMPONENT,
        ObjectTypeId::OperationLimitsType as u32,
    ),
    variable(
        MAX_NODES_PER_READ,
        "MaxNodesPerRead",
        OPERATION_LIMITS,
        HAS_PROPERTY,
        PROPERTY_TYPE,
        UINT32,
        -1,
    ),
    variable(
        MAX_NODES_PER_BROWSE,
        "MaxNodesPerBrowse",
        OPERATION_LIMITS,
        HAS_PROPERTY,
        PROPERTY_TYPE,
        UINT32,
        -1,
    ),
];

fn std_node(id: u32) -> Option<&'static StdNode> {
    STD_NODES.iter().find(|n| n.id == id)
}

/// How many browse continuation points one session may hold.
pub(crate) const MAX_BROWSE_CONTINUATION_POINTS: u16 = 64;

/// A node as the services see it, resolved against the current state.
struct View {
    id: NodeId,
    class: NodeClass,
    browse_name: QualifiedName,
    type_definition: NodeId,
    variable: Option<VarView>,
}

struct VarView {
    data_type: NodeId,
    value_rank: i32,
    array_dimensions: Option<Vec<u32>>,
    /// The value, or the status a read of it answers.
    value: Result<Variant, StatusCode>,
    /// Whether AccessLevel and UserAccessLevel grant CurrentRead.
    readable: bool,
}

/// The nodes the structural quirks generate below a PLC folder, named
/// `<folder>#deep-<n>`, `<folder>#ref-<n>` and `<folder>#more-<n>` (state ids never hold a
/// `#`). They are computed, never stored: a million references cost nothing until browsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generated {
    /// `deep-nesting`: level `n` of the chain (its child is level `n + 1`).
    Deep,
    /// `million-refs`: the `n`-th extra reference of the folder.
    Ref,
    /// `endless-continuation`: the `n`-th page's reference.
    More,
}

impl Generated {
    fn prefix(self) -> &'static str {
        match self {
            Generated::Deep => "deep",
            Generated::Ref => "ref",
            Generated::More => "more",
        }
    }

    fn quirk(self) -> Quirk {
        match self {
            Generated::Deep => Quirk::DeepNesting,
            Generated::Ref => Quirk::MillionRefs,
            Generated::More => Quirk::EndlessContinuation,
        }
    }

    /// The highest `n` that exists.
    fn last(self) -> u32 {
        match self {
            Generated::Deep => DEEP_NESTING_LEVELS,
            Generated::Ref => MILLION_REFS,
            Generated::More => u32::MAX,
        }
    }
}

enum Located<'a> {
    Std(&'static StdNode),
    Plc(&'a str),
    /// A generated node: the folder it hangs under, its kind and number.
    Generated(&'a str, Generated, u32),
}

/// What a node resolves to, given the state and quirks.
fn locate<'a>(state: &OpcuaState, id: &'a NodeId) -> Option<Located<'a>> {
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
                return locate_generated(state, folder, rest);
            }
            state.nodes.contains_key(text).then_some(Located::Plc(text))
        }
        _ => None,
    }
}

/// A generated node, when its quirk is on and its folder exists.
fn locate_generated<'a>(state: &OpcuaState, folder: &'a str, rest: &str) -> Option<Located<'a>> {
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

fn generated_id(folder: &str, kind: Generated, n: u32) -> String {
    format!("{folder}#{}-{n}", kind.prefix())
}

fn plc_id(state: &OpcuaState, id: &str) -> NodeId {
    NodeId::new(state.namespace_index(), UAString::from(id))
}

fn build_info_value(state: &OpcuaState) -> opcua_types::BuildInfo {
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

fn std_value(
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

fn view(state: &OpcuaState, start_time: DateTime, located: &Located<'_>) -> View {
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

fn read_attribute(view: &View, attribute: AttributeId) -> Result<Variant, StatusCode> {
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

fn reference(
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
fn references(
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
struct Remaining {
    references: std::collections::VecDeque<ReferenceDescription>,
    generator: Option<Generator>,
}

/// Makes the references of a quirk on demand: a folder's millionth reference costs nothing
/// until a client pages that far.
struct Generator {
    folder: String,
    kind: Generated,
    next: u32,
}

impl Generator {
    /// The generator for a browsed node, when a quirk adds references to it.
    fn for_node(state: &OpcuaState, located: &Located<'_>) -> Option<Generator> {
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

    fn exhausted(&self) -> bool {
        self.next > self.kind.last()
    }

    /// The current reference (its node id, name and class only: what a browse needs).
    fn current(&self, state: &OpcuaState) -> ReferenceDescription {
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

// ------------------------------------------------------------------ node manager

/// The one node manager of the simulated server.
pub(crate) struct SimNodeManager {
    shared: Arc<Shared>,
}

impl SimNodeManager {
    pub(crate) fn new(shared: Arc<Shared>, _context: ServerContext) -> Self {
        SimNodeManager { shared }
    }

    /// Records one service call in the request log, with the peer and security mode.
    fn log(
        &self,
        context: &RequestContext,
        service: Service,
        count: usize,
        detail: String,
        outcome: &str,
    ) {
        let (channel, mode) = {
            let session = context.session().read();
            (session.secure_channel_id(), session.message_security_mode())
        };
        let peer = self.shared.peer_of(channel);
        self.shared.log().record(LoggedRequest {
            seq: 0,
            time: chrono::Utc::now(),
            protocol: "opcua".into(),
            peer,
            unit_id: None,
            service: service.code(),
            name: service.name().into(),
            detail: format!("{detail} mode={mode}"),
            address: None,
            count: u32::try_from(count).ok(),
            write: service.writes(),
            outcome: outcome.into(),
        });
    }

    /// Logs a service this simulated PLC does not offer (history, method calls,
    /// subscriptions) as refused and answers it with `status`.
    fn refuse(
        &self,
        context: &RequestContext,
        service: Service,
        count: usize,
        status: StatusCode,
    ) -> Result<(), StatusCode> {
        self.log(context, service, count, String::new(), "refused");
        Err(status)
    }

    /// Applies the transport quirks before a service is answered: `stall` waits until the
    /// quirk is switched off (or the simulator stops), `drop-session` closes every client
    /// connection, `slow` delays the answer, `busy` refuses it. Returns the error the service
    /// must end with, if any.
    async fn transport_quirks(&self) -> Result<(), StatusCode> {
        let (stall, drop, slow, busy) = {
            let state = self.shared.lock_state();
            (
                state.quirks.get(Quirk::Stall),
                state.quirks.get(Quirk::DropSession),
                state.quirks.get(Quirk::Slow),
                state.quirks.get(Quirk::Busy),
            )
        };
        if slow {
            // A simulated slow PLC stack: the delay is the behaviour under test.
            tokio::time::sleep(Duration::from_millis(SLOW_ANSWER_MS)).await;
        }
        if busy {
            return Err(StatusCode::BadServerTooBusy);
        }
        if stall {
            self.shared.wait_while_stalled().await;
            return Err(StatusCode::BadTimeout);
        }
        if drop {
            self.shared.drop_connections();
            // Let the proxy close the sockets before any answer could go out.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(StatusCode::BadConnectionClosed);
        }
        Ok(())
    }

    fn outcome(&self) -> &'static str {
        let state = self.shared.lock_state();
        if state.quirks.get(Quirk::Stall) {
            "no answer (stall quirk)"
        } else if state.quirks.get(Quirk::DropSession) {
            "connection dropped (drop-session quirk)"
        } else if state.quirks.get(Quirk::Busy) {
            "refused: BadServerTooBusy (busy quirk)"
        } else {
            "ok"
        }
    }
}

fn describe_nodes<'a>(ids: impl Iterator<Item = &'a NodeId>) -> String {
    let ids: Vec<&NodeId> = ids.collect();
    let shown: Vec<String> = ids.iter().take(3).map(|id| id.to_string()).collect();
    let more = ids.len().saturating_sub(shown.len());
    if more > 0 {
        format!("nodes={} [{} +{more}]", ids.len(), shown.join(", "))
    } else {
        format!("nodes={} [{}]", ids.len(), shown.join(", "))
    }
}

#[async_trait]
impl NodeManager for SimNodeManager {
    fn owns_node(&self, _id: &NodeId) -> bool {
        true
    }

    fn name(&self) -> &str {
        "otdrift-sim"
    }

    fn handle_new_node(&self, _parent_id: &ExpandedNodeId) -> bool {
        true
    }

    fn namespaces_for_user(&self, _context: &RequestContext) -> Vec<NamespaceMetadata> {
        self.shared
            .lock_state()
            .namespace_array()
            .into_iter()
            .enumerate()
            .map(|(index, uri)| NamespaceMetadata {
                namespace_uri: uri,
                namespace_index: u16::try_from(index).unwrap_or(u16::MAX),
                ..Default::default()
            })
            .collect()
    }

    async fn init(&self, type_tree: &mut DefaultTypeTree, _context: ServerContext) {
        let references: NodeId = ReferenceTypeId::References.into();
        let tree = [
            (
                ReferenceTypeId::HierarchicalReferences,
                ReferenceTypeId::References,
            ),
            (
                ReferenceTypeId::NonHierarchicalReferences,
                ReferenceTypeId::References,
            ),
            (
                ReferenceTypeId::HasChild,
                ReferenceTypeId::HierarchicalReferences,
            ),
            (
                ReferenceTypeId::Organizes,
                ReferenceTypeId::HierarchicalReferences,
            ),
            (ReferenceTypeId::Aggregates, ReferenceTypeId::HasChild),
            (ReferenceTypeId::HasSubtype, ReferenceTypeId::HasChild),
            (ReferenceTypeId::HasComponent, ReferenceTypeId::Aggregates),
            (ReferenceTypeId::HasProperty, ReferenceTypeId::Aggregates),
            (
                ReferenceTypeId::HasTypeDefinition,
                ReferenceTypeId::NonHierarchicalReferences,
            ),
        ];
        let _ = references;
        for (id, parent) in tree {
            type_tree.add_type_node(&id.into(), &parent.into(), NodeClass::ReferenceType);
        }
        for uri in self.shared.lock_state().namespace_array() {
            type_tree.namespaces_mut().add_namespace(&uri);
        }
    }

    async fn read(
        &self,
        context: &RequestContext,
        _max_age: f64,
        _timestamps_to_return: TimestampsToReturn,
        nodes_to_read: &mut [&mut ReadNode],
    ) -> Result<(), StatusCode> {
        self.log(
            context,
            Service::Read,
            nodes_to_read.len(),
            describe_nodes(nodes_to_read.iter().map(|n| &n.node().node_id)),
            self.outcome(),
        );
        self.transport_quirks().await?;
        let state = self.shared.lock_state();
        let limit = state.effective_limits().max_nodes_per_read;
        if nodes_to_read.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
            return Err(StatusCode::BadTooManyOperations);
        }
        for node in nodes_to_read.iter_mut() {
            let wanted = node.node().clone();
            let Some(located) = locate(&state, &wanted.node_id) else {
                node.set_error(StatusCode::BadNodeIdUnknown);
                continue;
            };
            if !wanted.index_range.is_none() {
                node.set_error(StatusCode::BadIndexRangeInvalid);
                continue;
            }
            let is_variable = matches!(located, Located::Plc(id)
                if state.nodes.get(id).is_some_and(|n| n.variable.is_some()));
            if is_variable && state.quirks.get(Quirk::UnknownOnRead) {
                node.set_error(StatusCode::BadNodeIdUnknown);
                continue;
            }
            let v = view(&state, self.shared.extra.start_time, &located);
            match read_attribute(&v, wanted.attribute_id) {
                Ok(value) => {
                    let mut dv = DataValue::value_only(value);
                    if wanted.attribute_id == AttributeId::Value {
                        dv.source_timestamp = Some(DateTime::now());
                        dv.server_timestamp = Some(DateTime::now());
                        if state.quirks.get(Quirk::UncertainValues)
                            && matches!(located, Located::Plc(_))
                        {
                            dv.status = Some(StatusCode::UncertainLastUsableValue);
                        }
                    }
                    node.set_result(dv);
                }
                Err(status) => node.set_error(status),
            }
        }
        Ok(())
    }

    async fn browse(
        &self,
        context: &RequestContext,
        nodes_to_browse: &mut [BrowseNode],
    ) -> Result<(), StatusCode> {
        let next = nodes_to_browse
            .iter()
            .any(|n| n.continuation_point::<Remaining>().is_some());
        let service = if next {
            Service::BrowseNext
        } else {
            Service::Browse
        };
        self.log(
            context,
            service,
            nodes_to_browse.len(),
            describe_nodes(nodes_to_browse.iter().map(|n| n.node_id())),
            self.outcome(),
        );
        self.transport_quirks().await?;
        let type_tree = context.get_type_tree_for_user();
        let state = self.shared.lock_state();
        let limits = state.effective_limits();
        if !next
            && nodes_to_browse.len()
                > usize::try_from(limits.max_nodes_per_browse).unwrap_or(usize::MAX)
        {
            return Err(StatusCode::BadTooManyOperations);
        }
        if next && state.quirks.get(Quirk::NoBrowseNext) {
            for node in nodes_to_browse.iter_mut() {
                let _ = node.take_continuation_point::<Remaining>();
                node.set_status(StatusCode::BadServiceUnsupported);
            }
            return Ok(());
        }
        let page = usize::try_from(limits.max_references_per_node).unwrap_or(usize::MAX);
        let restarts = state.quirks.get(Quirk::BrowseNextRestarts);
        for node in nodes_to_browse.iter_mut() {
            let id = node.node_id().clone();
            let pending = node.take_continuation_point::<Remaining>();
            let first_page = pending.is_none() || restarts;
            let mut rest = match pending {
                Some(rest) if !restarts => *rest,
                _ => {
                    let Some(located) = locate(&state, &id) else {
                        node.set_status(StatusCode::BadNodeIdUnknown);
                        continue;
                    };
                    let mut all = references(&state, self.shared.extra.start_time, &located);
                    if state.quirks.get(Quirk::ReverseOrder) {
                        all.reverse();
                    }
                    let (forward, inverse) = (node.allows_forward(), node.allows_inverse());
                    all.retain(|r| if r.is_forward { forward } else { inverse });
                    Remaining {
                        references: all.into(),
                        generator: Generator::for_node(&state, &located),
                    }
                }
            };
            node.set_status(StatusCode::Good);
            let mut added = 0usize;
            while added < page {
                if let Some(r) = rest.references.pop_front() {
                    match node.add(type_tree.get(), r) {
                        AddReferenceResult::Added => added += 1,
                        AddReferenceResult::Full(r) => {
                            rest.references.push_front(r);
                            break;
                        }
                        AddReferenceResult::Rejected => {}
                    }
                    continue;
                }
                let Some(generator) = rest.generator.as_mut() else {
                    break;
                };
                // `endless-continuation`: the first answer lists the folder, every later one
                // a single new reference, and each carries another continuation point.
                if generator.kind == Generated::More && (first_page || added > 0) {
                    break;
                }
                if generator.exhausted() {
                    rest.generator = None;
                    break;
                }
                match node.add(type_tree.get(), generator.current(&state)) {
                    AddReferenceResult::Added => {
                        added += 1;
                        generator.next = generator.next.saturating_add(1);
                    }
                    AddReferenceResult::Full(_) => break,
                    // The client's filter excludes them all (they are all alike).
                    AddReferenceResult::Rejected => rest.generator = None,
                }
            }
            rest.references
                .retain(|r| node.matches_filter(type_tree.get(), r));
            if !rest.references.is_empty() || rest.generator.is_some() {
                node.set_next_continuation_point(Box::new(rest));
            }
        }
        Ok(())
    }

    async fn translate_browse_paths_to_node_ids(
        &self,
        context: &RequestContext,
        nodes: &mut [&mut BrowsePathItem],
    ) -> Result<(), StatusCode> {
        self.log(
            context,
            Service::TranslateBrowsePaths,
            nodes.len(),
            describe_nodes(nodes.iter().map(|n| n.node_id())),
            "refused: BadServiceUnsupported",
        );
        Err(StatusCode::BadServiceUnsupported)
    }

    async fn register_nodes(
        &self,
        context: &RequestContext,
        nodes: &mut [&mut RegisterNodeItem],
    ) -> Result<(), StatusCode> {
        self.log(
            context,
            Service::RegisterNodes,
            nodes.len(),
            describe_nodes(nodes.iter().map(|n| n.node_id())),
            "ok",
        );
        for node in nodes {
            node.set_registered(true);
        }
        Ok(())
    }

    async fn write(
        &self,
        context: &RequestContext,
        nodes_to_write: &mut [&mut WriteNode],
    ) -> Result<(), StatusCode> {
        self.log(
            context,
            Service::Write,
            nodes_to_write.len(),
            describe_nodes(nodes_to_write.iter().map(|n| &n.value().node_id)),
            "applied where the value fits",
        );
        let mut state = self.shared.lock_state();
        let ns = state.namespace_index();
        for node in nodes_to_write.iter_mut() {
            let wanted = node.value().clone();
            let status = match (&wanted.node_id.identifier, wanted.node_id.namespace) {
                (Identifier::String(s), n)
                    if n == ns && wanted.attribute_id == AttributeId::Value =>
                {
                    match state
                        .nodes
                        .get_mut(s.as_ref())
                        .and_then(|n| n.variable.as_mut())
                    {
                        Some(var) => match wanted.value.value {
                            Some(value) if same_type(&value, &var.value, var.vtype) => {
                                var.value = value;
                                StatusCode::Good
                            }
                            _ => StatusCode::BadTypeMismatch,
                        },
                        None => StatusCode::BadNotWritable,
                    }
                }
                _ => StatusCode::BadNotWritable,
            };
            node.set_status(status);
        }
        Ok(())
    }

    async fn history_read_raw_modified(
        &self,
        context: &RequestContext,
        _details: &ReadRawModifiedDetails,
        nodes: &mut [&mut HistoryNode],
        _timestamps_to_return: TimestampsToReturn,
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::HistoryRead,
            nodes.len(),
            StatusCode::BadHistoryOperationUnsupported,
        )
    }

    async fn history_read_processed(
        &self,
        context: &RequestContext,
        _details: &ReadProcessedDetails,
        nodes: &mut [&mut HistoryNode],
        _timestamps_to_return: TimestampsToReturn,
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::HistoryRead,
            nodes.len(),
            StatusCode::BadHistoryOperationUnsupported,
        )
    }

    async fn history_read_at_time(
        &self,
        context: &RequestContext,
        _details: &ReadAtTimeDetails,
        nodes: &mut [&mut HistoryNode],
        _timestamps_to_return: TimestampsToReturn,
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::HistoryRead,
            nodes.len(),
            StatusCode::BadHistoryOperationUnsupported,
        )
    }

    async fn history_read_events(
        &self,
        context: &RequestContext,
        _details: &ReadEventDetails,
        nodes: &mut [&mut HistoryNode],
        _timestamps_to_return: TimestampsToReturn,
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::HistoryRead,
            nodes.len(),
            StatusCode::BadHistoryOperationUnsupported,
        )
    }

    async fn history_read_annotations(
        &self,
        context: &RequestContext,
        _details: &ReadAnnotationDataDetails,
        nodes: &mut [&mut HistoryNode],
        _timestamps_to_return: TimestampsToReturn,
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::HistoryRead,
            nodes.len(),
            StatusCode::BadHistoryOperationUnsupported,
        )
    }

    async fn history_update(
        &self,
        context: &RequestContext,
        nodes: &mut [&mut HistoryUpdateNode],
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::HistoryUpdate,
            nodes.len(),
            StatusCode::BadHistoryOperationUnsupported,
        )
    }

    async fn call(
        &self,
        context: &RequestContext,
        methods_to_call: &mut [&mut MethodCall],
    ) -> Result<(), StatusCode> {
        self.log(
            context,
            Service::Call,
            methods_to_call.len(),
            describe_nodes(methods_to_call.iter().map(|m| m.method_id())),
            "refused: BadMethodInvalid",
        );
        Err(StatusCode::BadMethodInvalid)
    }

    async fn add_nodes(
        &self,
        context: &RequestContext,
        nodes_to_add: &mut [&mut AddNodeItem],
    ) -> Result<(), StatusCode> {
        self.log(
            context,
            Service::AddNodes,
            nodes_to_add.len(),
            String::new(),
            "refused: BadUserAccessDenied",
        );
        Err(StatusCode::BadUserAccessDenied)
    }

    async fn add_references(
        &self,
        context: &RequestContext,
        references_to_add: &mut [&mut AddReferenceItem],
    ) -> Result<(), StatusCode> {
        self.log(
            context,
            Service::AddReferences,
            references_to_add.len(),
            String::new(),
            "refused: BadUserAccessDenied",
        );
        Err(StatusCode::BadUserAccessDenied)
    }

    async fn delete_nodes(
        &self,
        context: &RequestContext,
        nodes_to_delete: &mut [&mut DeleteNodeItem],
    ) -> Result<(), StatusCode> {
        self.log(
            context,
            Service::DeleteNodes,
            nodes_to_delete.len(),
            describe_nodes(nodes_to_delete.iter().map(|n| n.node_id())),
            "refused: BadUserAccessDenied",
        );
        Err(StatusCode::BadUserAccessDenied)
    }

    async fn delete_references(
        &self,
        context: &RequestContext,
        references_to_delete: &mut [&mut DeleteReferenceItem],
    ) -> Result<(), StatusCode> {
        self.log(
            context,
            Service::DeleteReferences,
            references_to_delete.len(),
            String::new(),
            "refused: BadUserAccessDenied",
        );
        Err(StatusCode::BadUserAccessDenied)
    }

    async fn create_monitored_items(
        &self,
        context: &RequestContext,
        items: &mut [&mut CreateMonitoredItem],
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::CreateMonitoredItems,
            items.len(),
            StatusCode::BadServiceUnsupported,
        )
    }
}

fn same_type(new: &Variant, old: &Variant, vtype: ValueType) -> bool {
    match (new, old) {
        (Variant::Array(a), Variant::Array(_)) => a.value_type == vtype.scalar_type(),
        (Variant::Array(_), _) | (_, Variant::Array(_)) => false,
        (new, _) => new.scalar_type_id() == Some(vtype.scalar_type()),
    }
}

// ------------------------------------------------------------------ authentication

/// Checks users like async-opcua's default authenticator and logs every activation.
pub(crate) struct SimAuthenticator {
    inner: DefaultAuthenticator,
    shared: Arc<Shared>,
}

impl SimAuthenticator {
    pub(crate) fn new(inner: DefaultAuthenticator, shared: Arc<Shared>) -> Self {
        SimAuthenticator { inner, shared }
    }

    fn log(&self, endpoint: &ServerEndpoint, user: &str, outcome: &str) {
        self.shared.log().record(LoggedRequest {
            seq: 0,
            time: chrono::Utc::now(),
            protocol: "opcua".into(),
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            unit_id: None,
            service: Service::ActivateSession.code(),
            name: Service::ActivateSession.name().into(),
            detail: format!(
                "user={user} mode={} policy={}",
                endpoint.security_mode, endpoint.security_policy
            ),
            address: None,
            count: None,
            write: false,
            outcome: outcome.into(),
        });
    }
}

#[async_trait]
impl AuthManager for SimAuthenticator {
    async fn authenticate_anonymous_token(&self, endpoint: &ServerEndpoint) -> Result<(), Error> {
        let result = self.inner.authenticate_anonymous_token(endpoint).await;
        self.log(
            endpoint,
            "anonymous",
            if result.is_ok() { "ok" } else { "refused" },
        );
        result
    }

    async fn authenticate_username_identity_token(
        &self,
        endpoint: &ServerEndpoint,
        username: &str,
        password: &Password,
    ) -> Result<UserToken, Error> {
        let result = self
            .inner
            .authenticate_username_identity_token(endpoint, username, password)
            .await;
        self.log(
            endpoint,
            username,
            if result.is_ok() { "ok" } else { "refused" },
        );
        result
    }

    fn user_token_policies(&self, endpoint: &ServerEndpoint) -> Vec<UserTokenPolicy> {
        self.inner.user_token_policies(endpoint)
    }
}
