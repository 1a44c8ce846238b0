//! What OPC UA answers mean: the service statuses the collector tells apart (a lost
//! connection, a forgotten session, an undecodable or oversized answer, "busy"), and the
//! checked reading of attribute values (mandatory Server variables, attributes of listed
//! nodes, typed values within the size bounds). async-opcua decodes the messages; this file
//! decides what each answer is.

use opcua::types::{AttributeId, DataValue, NodeId, ReadValueId, StatusCode, Variant};
use otdrift_core::Value;

use super::convert;
use crate::{CollectError, Scope};

/// Statuses that mean the connection is gone.
pub(crate) fn connection_lost(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadConnectionClosed
            | StatusCode::BadNotConnected
            | StatusCode::BadSecureChannelClosed
            | StatusCode::BadSecureChannelIdInvalid
            | StatusCode::BadCommunicationError
            | StatusCode::BadTcpInternalError
            | StatusCode::BadDisconnect
            | StatusCode::BadEndOfStream
            | StatusCode::BadServerNotConnected
            | StatusCode::BadNoCommunication
            | StatusCode::BadConnectionRejected
            | StatusCode::BadTcpSecureChannelUnknown
            | StatusCode::BadServerHalted
            | StatusCode::BadShutdown
    )
}

/// Statuses that mean the server forgot our session (it expired or was closed).
pub(crate) fn session_gone(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadSessionIdInvalid
            | StatusCode::BadSessionClosed
            | StatusCode::BadSessionNotActivated
    )
}

/// Statuses that mean the answer could not be decoded or did not fit the request.
pub(crate) fn malformed_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadDecodingError
            | StatusCode::BadUnknownResponse
            | StatusCode::BadDataEncodingInvalid
            | StatusCode::BadTcpMessageTypeInvalid
            | StatusCode::BadSequenceNumberInvalid
            | StatusCode::BadSecurityChecksFailed
    )
}

/// Statuses that mean an answer was larger than our limits ([`MAX_MESSAGE_SIZE`],
/// [`MAX_CHUNK_COUNT`]): a bound. BadResponseTooLarge comes from an honest server refusing to
/// send it, BadEncodingLimitsExceeded from async-opcua cutting off a server that sent it
/// anyway, BadTcpMessageTooLarge from a single chunk over the limit.
pub(crate) fn too_large(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadResponseTooLarge
            | StatusCode::BadEncodingLimitsExceeded
            | StatusCode::BadTcpMessageTooLarge
    )
}

/// Statuses that honestly mean "busy, try later" (OPC 10000-4 status codes): the server or its
/// data source lacks the resources now, not the node or the right to read it.
/// BadTooManyOperations is not among them: it is the server's per-request limit, met by
/// smaller batches.
pub(crate) fn busy_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadServerTooBusy
            | StatusCode::BadTcpServerTooBusy
            | StatusCode::BadTooManySessions
            | StatusCode::BadMaxConnectionsReached
            | StatusCode::BadResourceUnavailable
            | StatusCode::BadOutOfMemory
            | StatusCode::BadNoContinuationPoints
            | StatusCode::BadWaitingForInitialData
    )
}

/// A status as the I/O error of a transport failure.
pub(crate) fn status_error(status: StatusCode) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        convert::status_text(status),
    )
}

/// A failed service call as the capture's error (the driver has dropped the session when
/// the connection or session is gone, or the answer is malformed: [`verdict`]). Sizes are
/// the caller's, who asks for fewer operations at once.
pub(crate) fn service_error(
    scope: &Scope,
    timeout_ms: u64,
    request: String,
    status: StatusCode,
) -> CollectError {
    if status == StatusCode::BadTimeout || status == StatusCode::BadRequestTimeout {
        return scope.timeout(request, timeout_ms, "");
    }
    if connection_lost(status) || session_gone(status) {
        return if session_gone(status) {
            scope.refused(request, convert::status_text(status))
        } else {
            scope.transport(request, status_error(status))
        };
    }
    if malformed_status(status) {
        return scope.malformed(request, convert::status_text(status));
    }
    operation_error(scope, request, status)
}

/// A Bad or Uncertain status on one operation, as the capture's error: busy statuses are
/// [`ErrorKind::Busy`](crate::ErrorKind::Busy), size statuses a bound, everything else a
/// refusal (an uncertain value is not approved state).
pub(crate) fn operation_error(scope: &Scope, request: String, status: StatusCode) -> CollectError {
    let text = convert::status_text(status);
    if busy_status(status) {
        scope.busy(request, format!("server answered {text}"))
    } else if too_large(status) {
        scope.bound(request, format!("server answered {text}"))
    } else if status.is_uncertain() {
        scope.refused(
            request,
            format!(
                "server answered {text}: the server is not sure of the value, and an \
                 uncertain value is not approved state"
            ),
        )
    } else {
        scope.refused(request, format!("server answered {text}"))
    }
}

/// A mandatory text field of the Server object (BuildInfo): a String, or null.
pub(crate) fn server_text(
    scope: &Scope,
    field: &str,
    dv: &DataValue,
) -> Result<Value, CollectError> {
    let request = format!("Read of Server/ServerStatus/BuildInfo/{field}");
    mandatory_status(scope, &request, dv)?;
    match &dv.value {
        None | Some(Variant::Empty) => Ok(Value::Null),
        Some(Variant::String(s)) => match s.value() {
            None => Ok(Value::Null),
            Some(t) => convert::text(t)
                .map(Value::Text)
                .map_err(|convert::Oversize(why)| scope.bound(request, why)),
        },
        Some(Variant::DateTime(d)) if field == "build_date" => Ok(if d.is_null() {
            Value::Null
        } else {
            Value::Text(d.to_rfc3339())
        }),
        Some(other) => Err(scope.malformed(
            request,
            format!(
                "expected a {}, got {other:?}",
                if field == "build_date" {
                    "DateTime"
                } else {
                    "String"
                }
            ),
        )),
    }
}

/// The status of a variable every server must have (NamespaceArray, BuildInfo): a node
/// the server says it lacks, or says no one may read (BadNotReadable: its AccessLevel),
/// is malformed (the Server object is incomplete); any other Bad or Uncertain status is
/// the operation's error (BadUserAccessDenied: this user is refused, which the operator
/// can change, so `refused`).
pub(crate) fn mandatory_status(
    scope: &Scope,
    request: &str,
    dv: &DataValue,
) -> Result<(), CollectError> {
    let status = dv.status();
    if status.is_good() {
        return Ok(());
    }
    if matches!(
        status,
        StatusCode::BadNodeIdUnknown
            | StatusCode::BadAttributeIdInvalid
            | StatusCode::BadNotReadable
    ) {
        return Err(scope.malformed(
            request.to_owned(),
            format!(
                "server answered {}: the Server object lacks a readable variable every \
                 OPC UA server must have",
                convert::status_text(status)
            ),
        ));
    }
    Err(operation_error(scope, request.to_owned(), status))
}

/// An attribute of a node the walk found (or the config names and the browse confirmed):
/// Good, or the capture's error. BadNodeIdUnknown here contradicts the browse.
pub(crate) fn listed_attribute(
    scope: &Scope,
    request: &str,
    dv: Option<&DataValue>,
) -> Result<DataValue, CollectError> {
    let Some(dv) = dv else {
        return Err(scope.malformed(request.to_owned(), "no value in the answer".to_owned()));
    };
    let status = dv.status();
    if status.is_good() {
        return Ok(dv.clone());
    }
    if status == StatusCode::BadNodeIdUnknown {
        return Err(scope.refused(
            request.to_owned(),
            "server answered BadNodeIdUnknown for a node its own Browse lists (a \
             contradiction)"
                .to_owned(),
        ));
    }
    Err(operation_error(scope, request.to_owned(), status))
}

/// A Good attribute value as a typed item value; a value beyond the size bounds is a bound.
pub(crate) fn typed(scope: &Scope, request: &str, dv: &DataValue) -> Result<Value, CollectError> {
    match &dv.value {
        None => Ok(Value::Null),
        Some(v) => convert::variant(v)
            .map_err(|convert::Oversize(why)| scope.bound(request.to_owned(), why)),
    }
}

/// The name of an attribute in requests (`Read of Value of <node>`).
pub(crate) fn attribute_name(id: u32) -> &'static str {
    match AttributeId::from_u32(id) {
        Ok(AttributeId::NodeClass) => "NodeClass",
        Ok(AttributeId::BrowseName) => "BrowseName",
        Ok(AttributeId::DataType) => "DataType",
        Ok(AttributeId::ValueRank) => "ValueRank",
        Ok(AttributeId::ArrayDimensions) => "ArrayDimensions",
        Ok(AttributeId::Value) => "Value",
        Ok(AttributeId::UserAccessLevel) => "UserAccessLevel",
        _ => "an attribute",
    }
}

/// A ReadValueId for the Value attribute.
pub(crate) fn value_of(node_id: NodeId) -> ReadValueId {
    ReadValueId {
        node_id,
        attribute_id: AttributeId::Value as u32,
        ..Default::default()
    }
}
