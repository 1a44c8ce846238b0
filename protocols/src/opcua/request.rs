//! The only requests the OPC UA collector sends on a session, and the one function that hands
//! them to async-opcua: the read-only boundary. [`Request`] is a Read, a Browse or a BrowseNext
//! and nothing else; Write, Call, node management and history updates are unreachable. The
//! only other services the collector uses are discovery (GetEndpoints) and session management
//! (CreateSession, ActivateSession, CloseSession), in `link.rs`.

use opcua::client::Session;
use opcua::types::{
    BrowseDescription, BrowseResult, ByteString, DataValue, ReadValueId, ReferenceDescription,
    TimestampsToReturn, UAString, Variant,
};

use super::REFERENCES_PER_NODE;

/// The only requests a session carries: reads and browses.
#[derive(Debug)]
pub(crate) enum Request {
    /// Read attributes.
    Read(Vec<ReadValueId>),
    /// Browse references.
    Browse(Vec<BrowseDescription>),
    /// Continue (or release) browse continuation points.
    BrowseNext {
        points: Vec<ByteString>,
        release: bool,
    },
}

impl Request {
    /// The OPC UA service this request is.
    fn service(&self) -> &'static str {
        match self {
            Request::Read(_) => "Read",
            Request::Browse(_) => "Browse",
            Request::BrowseNext { .. } => "BrowseNext",
        }
    }

    fn len(&self) -> usize {
        match self {
            Request::Read(ops) => ops.len(),
            Request::Browse(nodes) => nodes.len(),
            Request::BrowseNext { points, .. } => points.len(),
        }
    }

    /// The request as errors name it.
    pub(crate) fn describe(&self) -> String {
        match self {
            Request::BrowseNext { release: true, .. } => {
                format!("BrowseNext (release {} continuation points)", self.len())
            }
            _ => format!("{} of {} operations", self.service(), self.len()),
        }
    }
}

/// What a server answered to a [`Request`].
pub(crate) enum Answer {
    Values(Vec<DataValue>),
    Browsed(Vec<BrowseResult>),
}

impl Answer {
    /// The bytes the decoded answer holds, about: each value or reference at its in-memory
    /// size plus the text and bytes it carries (what the memory budget charges).
    pub(crate) fn size(&self) -> usize {
        match self {
            Answer::Values(values) => values
                .iter()
                .map(|v| {
                    size_of::<DataValue>().saturating_add(v.value.as_ref().map_or(0, variant_size))
                })
                .fold(0, usize::saturating_add),
            Answer::Browsed(results) => results
                .iter()
                .map(|r| {
                    let references = r.references.as_deref().unwrap_or_default();
                    references
                        .iter()
                        .map(|d| {
                            size_of::<ReferenceDescription>()
                                .saturating_add(text_size(&d.browse_name.name))
                                .saturating_add(text_size(&d.display_name.text))
                        })
                        .fold(size_of::<BrowseResult>(), usize::saturating_add)
                })
                .fold(0, usize::saturating_add),
        }
    }
}

fn text_size(s: &UAString) -> usize {
    s.value().as_ref().map_or(0, String::len)
}

/// The heap bytes a value carries beyond its own size.
fn variant_size(v: &Variant) -> usize {
    match v {
        Variant::String(s) => text_size(s),
        Variant::ByteString(b) => b.value.as_ref().map_or(0, Vec::len),
        Variant::LocalizedText(t) => text_size(&t.text).saturating_add(text_size(&t.locale)),
        Variant::QualifiedName(q) => text_size(&q.name),
        Variant::Array(array) => array
            .values
            .iter()
            .map(|v| size_of::<Variant>().saturating_add(variant_size(v)))
            .fold(0, usize::saturating_add),
        Variant::Variant(inner) => variant_size(inner),
        _ => 0,
    }
}

/// Sends one request on the session. Read, Browse and BrowseNext only.
pub(crate) async fn send(
    session: &Session,
    request: &Request,
) -> Result<Answer, opcua::types::Error> {
    match request {
        Request::Read(ops) => session
            .read(ops, TimestampsToReturn::Neither, 0.0)
            .await
            .map(Answer::Values),
        Request::Browse(nodes) => session
            .browse(nodes, REFERENCES_PER_NODE, None)
            .await
            .map(Answer::Browsed),
        Request::BrowseNext { points, release } => session
            .browse_next(*release, points)
            .await
            .map(Answer::Browsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_and_browse_requests_exist() {
        let ops = vec![ReadValueId::default()];
        let nodes = vec![BrowseDescription::default()];
        let points = vec![ByteString::from(vec![1u8])];
        for request in [
            Request::Read(ops),
            Request::Browse(nodes),
            Request::BrowseNext {
                points: points.clone(),
                release: false,
            },
            Request::BrowseNext {
                points,
                release: true,
            },
        ] {
            assert!(
                matches!(request.service(), "Read" | "Browse" | "BrowseNext"),
                "{}",
                request.service()
            );
            assert_eq!(request.len(), 1);
        }
    }
}
