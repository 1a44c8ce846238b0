//! The simulator's address space, served by one async-opcua node manager that owns every
//! node (a small subset of namespace 0, the Server object, plus the PLC's nodes), logs every
//! service call it receives and applies the quirks; and the authenticator that logs session
//! activations.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use opcua_nodes::DefaultTypeTree;
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
    AttributeId, DataValue, DateTime, Error, ExpandedNodeId, Identifier, NodeClass, NodeId,
    ObjectId, ReadAnnotationDataDetails, ReadAtTimeDetails, ReadEventDetails, ReadProcessedDetails,
    ReadRawModifiedDetails, ReferenceTypeId, StatusCode, TimestampsToReturn, UserTokenPolicy,
    Variant,
};

use super::nodes::{
    Generated, Generator, Located, Remaining, locate, read_attribute, references, view,
};
use super::values::ValueType;
use super::{
    Shared,
    state::{Limits, Quirk, SLOW_ANSWER_MS},
};
use crate::request_log::Described;

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

/// How many browse continuation points one session may hold.
pub(crate) const MAX_BROWSE_CONTINUATION_POINTS: u16 = 64;

// ------------------------------------------------------------------ node manager

/// The one node manager of the simulated server.
pub(crate) struct SimNodeManager {
    pub(crate) shared: Arc<Shared>,
}

impl SimNodeManager {
    pub(crate) fn new(shared: Arc<Shared>, _context: ServerContext) -> Self {
        SimNodeManager { shared }
    }

    /// Records one service call in the request log, with the peer and security mode.
    pub(crate) fn log(
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
        let described = Described {
            count: u32::try_from(count).ok(),
            write: service.writes(),
            ..Described::new(
                service.code(),
                service.name(),
                format!("{detail} mode={mode}"),
            )
        };
        self.shared.record(peer, described, outcome);
    }

    /// Logs a service this simulated PLC refuses (writes to the address space, history,
    /// method calls, subscriptions) as `refused: <status>` and answers it with `status`.
    pub(crate) fn refuse(
        &self,
        context: &RequestContext,
        service: Service,
        count: usize,
        detail: String,
        status: StatusCode,
    ) -> Result<(), StatusCode> {
        let outcome = format!("refused: {}", status.sub_code().name());
        self.log(context, service, count, detail, &outcome);
        Err(status)
    }

    /// Applies the transport quirks before a service is answered: `stall` waits until the
    /// quirk is switched off (or the simulator stops), `drop-session` closes every client
    /// connection, `slow` delays the answer, `busy` refuses it. Returns the error the service
    /// must end with, if any.
    pub(crate) async fn transport_quirks(&self) -> Result<(), StatusCode> {
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

    /// The outcome a request will have, for its log entry; `over` says whether it asks for
    /// more operations than the state's limits allow (answered BadTooManyOperations).
    pub(crate) fn outcome_within(&self, over: impl Fn(&Limits) -> bool) -> &'static str {
        let over = over(&self.shared.lock_state().effective_limits());
        match self.outcome() {
            "ok" if over => "refused: BadTooManyOperations (over the published limit)",
            other => other,
        }
    }

    pub(crate) fn outcome(&self) -> &'static str {
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

/// The answer to every history service: this simulated PLC keeps no history.
const NO_HISTORY: StatusCode = StatusCode::BadHistoryOperationUnsupported;

pub(crate) fn describe_nodes<'a>(ids: impl Iterator<Item = &'a NodeId>) -> String {
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
        let over = |l: &Limits| {
            nodes_to_read.len() > usize::try_from(l.max_nodes_per_read).unwrap_or(usize::MAX)
        };
        self.log(
            context,
            Service::Read,
            nodes_to_read.len(),
            describe_nodes(nodes_to_read.iter().map(|n| &n.node().node_id)),
            self.outcome_within(over),
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
        let over = |l: &Limits| {
            !next
                && nodes_to_browse.len()
                    > usize::try_from(l.max_nodes_per_browse).unwrap_or(usize::MAX)
        };
        let outcome = self.outcome_within(over);
        self.log(
            context,
            service,
            nodes_to_browse.len(),
            describe_nodes(nodes_to_browse.iter().map(|n| n.node_id())),
            outcome,
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
        self.refuse(
            context,
            Service::TranslateBrowsePaths,
            nodes.len(),
            describe_nodes(nodes.iter().map(|n| n.node_id())),
            StatusCode::BadServiceUnsupported,
        )
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
            String::new(),
            NO_HISTORY,
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
            String::new(),
            NO_HISTORY,
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
            String::new(),
            NO_HISTORY,
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
            String::new(),
            NO_HISTORY,
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
            String::new(),
            NO_HISTORY,
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
            String::new(),
            NO_HISTORY,
        )
    }

    async fn call(
        &self,
        context: &RequestContext,
        methods_to_call: &mut [&mut MethodCall],
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::Call,
            methods_to_call.len(),
            describe_nodes(methods_to_call.iter().map(|m| m.method_id())),
            StatusCode::BadMethodInvalid,
        )
    }

    async fn add_nodes(
        &self,
        context: &RequestContext,
        nodes_to_add: &mut [&mut AddNodeItem],
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::AddNodes,
            nodes_to_add.len(),
            String::new(),
            StatusCode::BadUserAccessDenied,
        )
    }

    async fn add_references(
        &self,
        context: &RequestContext,
        references_to_add: &mut [&mut AddReferenceItem],
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::AddReferences,
            references_to_add.len(),
            String::new(),
            StatusCode::BadUserAccessDenied,
        )
    }

    async fn delete_nodes(
        &self,
        context: &RequestContext,
        nodes_to_delete: &mut [&mut DeleteNodeItem],
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::DeleteNodes,
            nodes_to_delete.len(),
            describe_nodes(nodes_to_delete.iter().map(|n| n.node_id())),
            StatusCode::BadUserAccessDenied,
        )
    }

    async fn delete_references(
        &self,
        context: &RequestContext,
        references_to_delete: &mut [&mut DeleteReferenceItem],
    ) -> Result<(), StatusCode> {
        self.refuse(
            context,
            Service::DeleteReferences,
            references_to_delete.len(),
            String::new(),
            StatusCode::BadUserAccessDenied,
        )
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
            String::new(),
            StatusCode::BadServiceUnsupported,
        )
    }
}

pub(crate) fn same_type(new: &Variant, old: &Variant, vtype: ValueType) -> bool {
    match (new, old) {
        (Variant::Array(a), Variant::Array(_)) => a.value_type == vtype.scalar_type(),
        (Variant::Array(_), _) | (_, Variant::Array(_)) => false,
        (new, _) => new.scalar_type_id() == Some(vtype.scalar_type()),
    }
}

// ------------------------------------------------------------------ authentication

/// Checks users like async-opcua's default authenticator and logs every activation.
pub(crate) struct SimAuthenticator {
    pub(crate) inner: DefaultAuthenticator,
    pub(crate) shared: Arc<Shared>,
}

impl SimAuthenticator {
    pub(crate) fn new(inner: DefaultAuthenticator, shared: Arc<Shared>) -> Self {
        SimAuthenticator { inner, shared }
    }

    pub(crate) fn log(&self, endpoint: &ServerEndpoint, user: &str, outcome: &str) {
        let detail = format!(
            "user={user} mode={} policy={}",
            endpoint.security_mode, endpoint.security_policy
        );
        self.shared.record(
            SocketAddr::from(([0, 0, 0, 0], 0)),
            Described::new(
                Service::ActivateSession.code(),
                Service::ActivateSession.name(),
                detail,
            ),
            outcome,
        );
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
