//! Batching: every Read cut to the session's MaxNodesPerRead, every Browse to its
//! MaxNodesPerBrowse, continuation points followed with BrowseNext (and released when the walk
//! stops), each within the bounds; a server that refuses a batch size gets smaller batches of
//! the same operations, so the digest cannot change.

use std::collections::BTreeSet;

use opcua::types::{
    BrowseDescription, BrowseDirection, BrowseResultMask, ByteString, DataValue, NodeId,
    ReadValueId, ReferenceDescription, ReferenceTypeId, StatusCode, Variant,
};

use super::link::Limits;
use super::request::{Answer, Request};
use super::wire::{attribute_name, operation_error, service_error, too_large, value_of};
use super::{
    DEFAULT_BATCH, MAX_BATCH, MAX_BROWSE_NEXT_ROUNDS, MAX_BROWSE_NEXT_ROUNDS_PER_NODE,
    MAX_CHUNK_COUNT, MAX_MESSAGE_SIZE, MAX_NODES_PER_BROWSE, MAX_NODES_PER_READ, MAX_REFERENCES,
    MAX_REFERENCES_PER_NODE, OpcuaCollector, convert,
};
use crate::CollectError;

/// A failed request: either the server's status for the whole service (handled by the
/// caller in some cases) or an error ending the capture.
pub(crate) enum Fault {
    Status(StatusCode),
    Fatal(CollectError),
}

impl OpcuaCollector {
    /// Sends one request under the deadline. The statuses the caller meets by asking for
    /// fewer operations at once come back as [`Fault::Status`]; every other failure is the
    /// capture's error.
    pub(crate) async fn call(&mut self, request: Request) -> Result<Answer, Fault> {
        let describe = request.describe();
        match self.driver.exchange(&request).await {
            Err(e) => Err(Fault::Fatal(e)),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(status)) if status == StatusCode::BadTooManyOperations || too_large(status) => {
                Err(Fault::Status(status))
            }
            Ok(Err(status)) => Err(Fault::Fatal(service_error(
                self.driver.scope(),
                self.driver.timeout_ms(),
                describe,
                status,
            ))),
        }
    }

    /// The operations that read MaxNodesPerRead and MaxNodesPerBrowse, when this session has
    /// not read them yet: they ride on the first identity Read (no request of their own).
    pub(crate) fn limit_ops(&self) -> Vec<ReadValueId> {
        match self.driver.conn() {
            Some(conn) if !conn.limits_known => [MAX_NODES_PER_READ, MAX_NODES_PER_BROWSE]
                .map(|id| value_of(NodeId::new(0, id)))
                .to_vec(),
            _ => Vec::new(),
        }
    }

    /// Takes the session's limits from the values [`limit_ops`](Self::limit_ops) read. These
    /// are not state: a refused or missing one means the defaults.
    pub(crate) fn take_limits(&mut self, values: &[DataValue]) {
        let limit = |dv: Option<&DataValue>| match dv.map(|dv| (dv.status(), dv.value.as_ref())) {
            Some((status, Some(Variant::UInt32(0)))) if status.is_good() => Some(MAX_BATCH),
            Some((status, Some(Variant::UInt32(n)))) if status.is_good() => {
                Some(usize::try_from(*n).unwrap_or(MAX_BATCH).min(MAX_BATCH))
            }
            _ => None,
        };
        let (read, browse) = (limit(values.first()), limit(values.get(1)));
        if let Some(conn) = self.driver.conn_mut() {
            conn.limits = Limits {
                read: read.unwrap_or(DEFAULT_BATCH),
                browse: browse.unwrap_or(DEFAULT_BATCH),
                published: read.is_some(),
            };
            conn.limits_known = true;
        }
    }

    fn limits(&self) -> Limits {
        self.driver.conn().map_or(
            Limits {
                read: DEFAULT_BATCH,
                browse: DEFAULT_BATCH,
                published: false,
            },
            |c| c.limits,
        )
    }

    /// Reads every operation in batches of MaxNodesPerRead; the answer has exactly one value
    /// per operation, in order. A BadTooManyOperations halves the batch for the session (the
    /// server's limit); an answer too large for [`MAX_MESSAGE_SIZE`] halves it for this call
    /// only. Either way the same operations are read, so the digest cannot change; a single
    /// operation whose answer is still too large is a bound naming its node.
    pub(crate) async fn read_all(
        &mut self,
        ops: &[ReadValueId],
    ) -> Result<Vec<DataValue>, CollectError> {
        let mut out = Vec::with_capacity(ops.len());
        let mut size_cap = usize::MAX;
        let mut at = 0;
        while at < ops.len() {
            let batch = self.limits().read.clamp(1, size_cap);
            let end = at.saturating_add(batch).min(ops.len());
            let chunk = ops.get(at..end).unwrap_or_default();
            // What was asked for, which may be less than the batch size: what to halve.
            let sent = chunk.len();
            let request = Request::Read(chunk.to_vec());
            let describe = match chunk {
                [one] => format!(
                    "Read of {} of {}",
                    attribute_name(one.attribute_id),
                    one.node_id
                ),
                _ => request.describe(),
            };
            let status = match self.call(request).await {
                Ok(Answer::Values(values)) => {
                    if values.len() != chunk.len() {
                        self.driver.drop_connection();
                        return Err(self.driver.scope().malformed(
                            describe,
                            format!("asked for {} values, got {}", chunk.len(), values.len()),
                        ));
                    }
                    if values
                        .iter()
                        .all(|v| v.status() == StatusCode::BadTooManyOperations)
                    {
                        StatusCode::BadTooManyOperations
                    } else {
                        out.extend(values);
                        at = end;
                        continue;
                    }
                }
                Ok(Answer::Browsed(_)) => {
                    return Err(self
                        .driver
                        .scope()
                        .malformed(describe, "a browse answer to a read".to_owned()));
                }
                Err(Fault::Status(status)) => status,
                Err(Fault::Fatal(e)) => return Err(e),
            };
            if too_large(status) {
                if sent == 1 {
                    return Err(self.too_large_error(describe, status));
                }
                tracing::debug!(sent, "answer too large; asking for fewer values at once");
                size_cap = sent / 2;
                continue;
            }
            if sent == 1 {
                return Err(self.driver.scope().refused(
                    describe,
                    "server answered BadTooManyOperations to a single operation".to_owned(),
                ));
            }
            tracing::warn!(sent, "server refused the batch size; halving it");
            if let Some(conn) = self.driver.conn_mut() {
                conn.limits.read = sent / 2;
            }
        }
        Ok(out)
    }

    pub(crate) fn too_large_error(&mut self, request: String, status: StatusCode) -> CollectError {
        if status != StatusCode::BadResponseTooLarge {
            // The server sent it anyway: the rest of it may still be on the wire.
            self.driver.drop_connection();
        }
        self.driver.scope().bound(
            request,
            format!(
                "server answered {}: the answer is larger than the {MAX_MESSAGE_SIZE} bytes \
                 ({MAX_CHUNK_COUNT} chunks) a message may have",
                convert::status_text(status)
            ),
        )
    }

    /// Browses nodes (forward hierarchical references, all node classes) in batches of
    /// MaxNodesPerBrowse and follows continuation points with BrowseNext. Per node: its
    /// references, or `None` when the server says the node does not exist (BadNodeIdUnknown;
    /// the caller decides whether that is absence or a contradiction). References are counted
    /// as they arrive against [`MAX_REFERENCES_PER_NODE`] and [`MAX_REFERENCES`].
    pub(crate) async fn browse_all(
        &mut self,
        nodes: &[(String, NodeId)],
    ) -> Result<Vec<Option<Vec<ReferenceDescription>>>, CollectError> {
        let mut out: Vec<Option<Vec<ReferenceDescription>>> =
            nodes.iter().map(|_| Some(Vec::new())).collect();
        let mut size_cap = usize::MAX;
        // Indexes into `nodes` still to browse, in order.
        let mut queue: std::collections::VecDeque<usize> = (0..nodes.len()).collect();
        while !queue.is_empty() {
            let batch = self.limits().browse.clamp(1, size_cap);
            let indexes: Vec<usize> = queue.drain(..batch.min(queue.len())).collect();
            let group: Vec<&(String, NodeId)> =
                indexes.iter().filter_map(|i| nodes.get(*i)).collect();
            let chunk: Vec<BrowseDescription> = group
                .iter()
                .map(|(_, id)| BrowseDescription {
                    node_id: id.clone(),
                    browse_direction: BrowseDirection::Forward,
                    reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
                    include_subtypes: true,
                    node_class_mask: 0,
                    result_mask: BrowseResultMask::All as u32,
                })
                .collect();
            let asked = chunk.len();
            let request = Request::Browse(chunk);
            let describe = match group.as_slice() {
                [(key, _)] => format!("Browse of {key}"),
                _ => request.describe(),
            };
            let results = match self.call(request).await {
                Ok(Answer::Browsed(results)) => results,
                Ok(Answer::Values(_)) => {
                    return Err(self
                        .driver
                        .scope()
                        .malformed(describe, "a read answer to a browse".to_owned()));
                }
                Err(Fault::Status(status)) if too_large(status) => {
                    if indexes.len() == 1 {
                        return Err(self.too_large_error(describe, status));
                    }
                    size_cap = indexes.len() / 2;
                    for index in indexes.into_iter().rev() {
                        queue.push_front(index);
                    }
                    continue;
                }
                Err(Fault::Status(status)) => {
                    return Err(operation_error(self.driver.scope(), describe, status));
                }
                Err(Fault::Fatal(e)) => return Err(e),
            };
            if results.len() != asked {
                self.driver.drop_connection();
                return Err(self.driver.scope().malformed(
                    describe,
                    format!(
                        "asked to browse {asked} nodes, got {} results",
                        results.len()
                    ),
                ));
            }
            // (index into `out`, continuation point, references seen so far for it)
            let mut pending: Vec<(usize, ByteString, BTreeSet<String>)> = Vec::new();
            let mut failed = None;
            // Nodes the server had no continuation point left for: browsed again once the
            // points of this batch are done (the same nodes, so nothing changes but timing).
            let mut again = Vec::new();
            for (&index, result) in indexes.iter().zip(results) {
                if result.status_code == StatusCode::BadNoContinuationPoints {
                    again.push(index);
                    continue;
                }
                let key = nodes
                    .get(index)
                    .map(|(k, _)| k.as_str())
                    .unwrap_or_default();
                if result.status_code == StatusCode::BadNodeIdUnknown {
                    if let Some(slot) = out.get_mut(index) {
                        *slot = None;
                    }
                    continue;
                }
                if !result.status_code.is_good() {
                    failed = Some((format!("Browse of {key}"), result.status_code));
                    if !result.continuation_point.is_null_or_empty() {
                        pending.push((index, result.continuation_point, BTreeSet::new()));
                    }
                    continue;
                }
                let refs = result.references.unwrap_or_default();
                let seen: BTreeSet<String> = refs.iter().map(|r| r.node_id.to_string()).collect();
                if let Some(Some(slot)) = out.get_mut(index) {
                    slot.extend(refs);
                }
                if let Err(e) = self.count_references(&out, index, key) {
                    pending.push((index, result.continuation_point, seen));
                    self.release(pending).await;
                    return Err(e);
                }
                if !result.continuation_point.is_null_or_empty() {
                    pending.push((index, result.continuation_point, seen));
                }
            }
            if let Some((request, status)) = failed {
                self.release(pending).await;
                return Err(operation_error(self.driver.scope(), request, status));
            }
            self.follow(nodes, &mut out, pending).await?;
            if again.len() == indexes.len() {
                // Not one node got a continuation point although none of ours is held: the
                // server is out of them (other sessions hold them), which is "busy".
                let key = again
                    .first()
                    .and_then(|i| nodes.get(*i))
                    .map(|(k, _)| k.clone())
                    .unwrap_or_default();
                return Err(operation_error(
                    self.driver.scope(),
                    format!("Browse of {key}"),
                    StatusCode::BadNoContinuationPoints,
                ));
            }
            for index in again.into_iter().rev() {
                queue.push_front(index);
            }
        }
        Ok(out)
    }

    /// Counts the references of node `index` (after an answer added some) against
    /// [`MAX_REFERENCES_PER_NODE`] and the capture's [`MAX_REFERENCES`].
    fn count_references(
        &mut self,
        out: &[Option<Vec<ReferenceDescription>>],
        index: usize,
        key: &str,
    ) -> Result<(), CollectError> {
        let here = out.get(index).and_then(Option::as_ref).map_or(0, Vec::len);
        if here > MAX_REFERENCES_PER_NODE {
            return Err(self.driver.scope().bound(
                format!("Browse of {key}"),
                format!(
                    "more than {MAX_REFERENCES_PER_NODE} references from one node; configure a \
                     narrower node"
                ),
            ));
        }
        let total: usize = out.iter().flatten().map(Vec::len).sum();
        if self.walk.references.saturating_add(total) > MAX_REFERENCES {
            return Err(self.driver.scope().bound(
                format!("Browse of {key}"),
                format!(
                    "more than {MAX_REFERENCES} references below the configured nodes; \
                     configure narrower nodes"
                ),
            ));
        }
        Ok(())
    }

    /// Frees continuation points the walk will not follow (best effort: the server frees them
    /// with the session anyway).
    async fn release(&mut self, pending: Vec<(usize, ByteString, BTreeSet<String>)>) {
        let points: Vec<ByteString> = pending
            .into_iter()
            .map(|(_, p, _)| p)
            .filter(|p| !p.is_null_or_empty())
            .collect();
        if points.is_empty() || !self.driver.is_connected() {
            return;
        }
        let request = Request::BrowseNext {
            points,
            release: true,
        };
        let _ = self.call(request).await;
    }

    /// BrowseNext until every continuation point is done. A chain longer than
    /// [`MAX_BROWSE_NEXT_ROUNDS_PER_NODE`] (or the capture's [`MAX_BROWSE_NEXT_ROUNDS`]) is a
    /// bound; a server that refuses BrowseNext fails the capture (the node's children would be
    /// incomplete); one that repeats references it already sent is malformed.
    async fn follow(
        &mut self,
        nodes: &[(String, NodeId)],
        out: &mut [Option<Vec<ReferenceDescription>>],
        mut pending: Vec<(usize, ByteString, BTreeSet<String>)>,
    ) -> Result<(), CollectError> {
        let key_of = |index: usize| nodes.get(index).map(|(k, _)| k.clone()).unwrap_or_default();
        let mut rounds = 0usize;
        while !pending.is_empty() {
            rounds += 1;
            if rounds > MAX_BROWSE_NEXT_ROUNDS_PER_NODE
                || self.walk.browse_next >= MAX_BROWSE_NEXT_ROUNDS
            {
                let key = key_of(pending.first().map_or(0, |(i, _, _)| *i));
                self.release(pending).await;
                let limit = if rounds > MAX_BROWSE_NEXT_ROUNDS_PER_NODE {
                    format!(
                        "more than {MAX_BROWSE_NEXT_ROUNDS_PER_NODE} BrowseNext rounds for one \
                         node: the server's continuation points do not end"
                    )
                } else {
                    format!("more than {MAX_BROWSE_NEXT_ROUNDS} BrowseNext requests in one capture")
                };
                return Err(self
                    .driver
                    .scope()
                    .bound(format!("BrowseNext of {key}"), limit));
            }
            let batch = self.limits().browse.max(1);
            let mut next = Vec::new();
            let mut groups = pending.chunks(batch).map(<[_]>::to_vec).collect::<Vec<_>>();
            groups.reverse();
            while let Some(group) = groups.pop() {
                self.walk.browse_next += 1;
                let points: Vec<ByteString> = group.iter().map(|(_, p, _)| p.clone()).collect();
                let request = Request::BrowseNext {
                    points,
                    release: false,
                };
                let describe = match group.as_slice() {
                    [(index, _, _)] => format!("BrowseNext of {}", key_of(*index)),
                    _ => request.describe(),
                };
                let unfinished =
                    |groups: Vec<Vec<(usize, ByteString, BTreeSet<String>)>>,
                     next: Vec<(usize, ByteString, BTreeSet<String>)>| {
                        groups.into_iter().flatten().chain(next).collect::<Vec<_>>()
                    };
                let results = match self.call(request).await {
                    Ok(Answer::Browsed(results)) => results,
                    Ok(Answer::Values(_)) => {
                        return Err(self
                            .driver
                            .scope()
                            .malformed(describe, "a read answer to a browse".to_owned()));
                    }
                    Err(Fault::Status(status)) => {
                        self.release(unfinished(groups, next)).await;
                        return Err(if too_large(status) {
                            self.too_large_error(describe, status)
                        } else {
                            operation_error(self.driver.scope(), describe, status)
                        });
                    }
                    Err(Fault::Fatal(e)) => {
                        if self.driver.is_connected() {
                            self.release(unfinished(groups, next)).await;
                        }
                        return Err(e);
                    }
                };
                if results.len() != group.len() {
                    self.driver.drop_connection();
                    return Err(self.driver.scope().malformed(
                        describe,
                        format!(
                            "asked to continue {} browses, got {} results",
                            group.len(),
                            results.len()
                        ),
                    ));
                }
                let mut failure = None;
                for ((index, _, mut seen), result) in group.into_iter().zip(results) {
                    let more = !result.continuation_point.is_null_or_empty();
                    if failure.is_some() {
                        if more {
                            next.push((index, result.continuation_point, seen));
                        }
                        continue;
                    }
                    if !result.status_code.is_good() {
                        failure = Some(operation_error(
                            self.driver.scope(),
                            format!("BrowseNext of {}", key_of(index)),
                            result.status_code,
                        ));
                        if more {
                            next.push((index, result.continuation_point, seen));
                        }
                        continue;
                    }
                    let refs = result.references.unwrap_or_default();
                    let before = seen.len();
                    seen.extend(refs.iter().map(|r| r.node_id.to_string()));
                    if seen.len() < before + refs.len() {
                        if more {
                            next.push((index, result.continuation_point, seen));
                        }
                        failure = Some(
                            self.driver.scope().malformed(
                                format!("BrowseNext of {}", key_of(index)),
                                "the answer repeats references already received: the server does \
                             not honour continuation points"
                                    .to_owned(),
                            ),
                        );
                        continue;
                    }
                    if let Some(Some(slot)) = out.get_mut(index) {
                        slot.extend(refs);
                    }
                    if let Err(e) = self.count_references(out, index, &key_of(index)) {
                        if more {
                            next.push((index, result.continuation_point, seen));
                        }
                        failure = Some(e);
                        continue;
                    }
                    if more {
                        next.push((index, result.continuation_point, seen));
                    }
                }
                if let Some(e) = failure {
                    self.release(unfinished(groups, next)).await;
                    return Err(e);
                }
            }
            pending = next;
        }
        Ok(())
    }
}
