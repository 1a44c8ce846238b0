//! OPC UA binary (opc.tcp): an opcua asset's settings, the keys it takes, and their checks
//! (the endpoint URL as address, security mode and policy, user and password file).

use std::fmt;
use std::path::PathBuf;

use super::{Address, Asset, Unit, all};
use crate::check;
use crate::error::ConfigErrorKind as Kind;
use crate::validate::read::{Cx, Tbl, get_bool, get_checked, get_int, get_path};
use crate::{Protocol, ProtocolConfig};

/// OPC UA in the registry ([`super::UNITS`]).
pub(super) const UNIT: Unit = Unit {
    protocol: Protocol::Opcua,
    name: "opcua",
    article: "an",
    default_port: 4840,
    address: Address::Url(check::opcua_endpoint),
    asset_keys: &[
        "security",
        "security_policy",
        "username",
        "password_file",
        "allow_unencrypted_password",
        "full_browse_every",
    ],
    setpoint_keys: &["node"],
    setpoint_optional_keys: &[],
    validate,
};

/// OPC UA settings of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpcuaConfig {
    /// Endpoint URL (the asset's `address`).
    pub endpoint: String,
    /// Message security mode to request.
    pub security: OpcuaSecurity,
    /// Security policy for `sign` and `sign-and-encrypt` (`security_policy`; the collector's
    /// default when absent).
    pub security_policy: Option<String>,
    /// User name to log in with; anonymous when absent.
    pub username: Option<String>,
    /// File holding the password of `username` (mode 0600).
    pub password_file: Option<PathBuf>,
    /// Allows `username` with `security` `none` or `sign` (`allow_unencrypted_password`,
    /// default false): only for a server whose user-token policy encrypts the password
    /// itself. Without it a user name needs `sign-and-encrypt`.
    pub allow_unencrypted_password: bool,
    /// At most this many polls in a row may skip the structure browse on a server whose
    /// NodeVersion properties were seen to move with a structure change (`full_browse_every`,
    /// default 60, 1-10000; 1 browses every poll): NodeVersion moves when references are
    /// added or removed, not when an attribute (a data type, a browse name) changes, so the
    /// full walk still comes round.
    pub full_browse_every: u32,
    /// Nodes to capture.
    pub setpoints: Vec<OpcuaSetpoint>,
}

/// The default of `full_browse_every`: once every 60 polls (an hour on a 1-minute schedule).
pub const DEFAULT_FULL_BROWSE_EVERY: u32 = 60;

/// OPC UA message security mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpcuaSecurity {
    /// No signing, no encryption.
    None,
    /// Messages signed.
    Sign,
    /// Messages signed and encrypted.
    SignAndEncrypt,
}

impl OpcuaSecurity {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            OpcuaSecurity::None => "none",
            OpcuaSecurity::Sign => "sign",
            OpcuaSecurity::SignAndEncrypt => "sign-and-encrypt",
        }
    }
}

impl fmt::Display for OpcuaSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OPC UA node (or folder, which is walked) to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpcuaSetpoint {
    /// Name used in diffs.
    pub name: String,
    /// NodeId string, e.g. `ns=2;s=Recipe`.
    pub node: String,
}

/// The unit's validator: this protocol's asset keys and setpoints, as [`ProtocolConfig::Opcua`].
fn validate(cx: &mut Cx<'_>, a: &Asset<'_, '_, '_>) -> Option<ProtocolConfig> {
    opcua(
        cx,
        a.table,
        a.setpoints,
        a.names,
        a.address.map(str::to_owned),
    )
    .map(ProtocolConfig::Opcua)
}

/// The protocol's own asset keys, then every setpoint (all checked, even after one failed).
fn opcua(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    sps: &[Tbl<'_, '_>],
    names: &[Option<String>],
    endpoint: Option<String>,
) -> Option<OpcuaConfig> {
    let security = get_checked(cx, t, "security", Kind::InvalidValue, |s| match s {
        "none" => Ok(OpcuaSecurity::None),
        "sign" => Ok(OpcuaSecurity::Sign),
        "sign-and-encrypt" => Ok(OpcuaSecurity::SignAndEncrypt),
        _ => Err(format!(
            "{s:?} is not a security mode; expected one of none, sign, sign-and-encrypt"
        )),
    })
    .or(OpcuaSecurity::None);
    let security_policy = get_checked(cx, t, "security_policy", Kind::InvalidValue, |s| {
        match s {
            "Basic256Sha256" | "Aes128Sha256RsaOaep" | "Aes256Sha256RsaPss" => Ok(s.to_owned()),
            _ => Err(format!(
                "{s:?} is not a supported security policy; expected one of Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss"
            )),
        }
    })
    .opt();
    let username = get_checked(cx, t, "username", Kind::InvalidValue, |s| {
        if s.is_empty() || s.chars().any(char::is_control) {
            Err("a user name is non-empty text without control characters".to_owned())
        } else {
            Ok(s.to_owned())
        }
    })
    .opt();
    let password_file = get_path(cx, t, "password_file").opt();
    let allow_unencrypted_password = get_bool(cx, t, "allow_unencrypted_password").or(false);
    let full_browse_every =
        get_int::<u32>(cx, t, "full_browse_every", 1, 10_000).or(DEFAULT_FULL_BROWSE_EVERY);
    let need = UNIT.setpoint_need();
    let setpoints: Vec<Option<OpcuaSetpoint>> = sps
        .iter()
        .zip(names)
        .map(|(sp, name)| {
            let node = get_checked(cx, sp, "node", Kind::InvalidValue, |s| {
                check::opcua_node_id(s).map(|()| s.to_owned())
            })
            .req(cx, sp, "node", &need);
            Some(OpcuaSetpoint {
                name: name.clone()?,
                node: node?.0,
            })
        })
        .collect();
    let (username, password_file) = (username?, password_file?);
    if username.is_some() != password_file.is_some() {
        let missing = if username.is_some() {
            "password_file"
        } else {
            "username"
        };
        cx.push(
            t.span.clone(),
            t.key(missing),
            Kind::MissingKey,
            format!(
                "{}missing required key `{missing}` in {} (an OPC UA user needs both username and password_file)",
                t.who, t.header
            ),
        );
        return None;
    }
    // Only sign-and-encrypt hides the password on the wire whatever the server's user-token
    // policy says; the certificate pin (first use, data_dir/opcua-pki) authenticates the
    // server but encrypts nothing, so it is no substitute.
    let (security, allow_unencrypted_password) = (security?, allow_unencrypted_password?);
    if username.is_some()
        && security != OpcuaSecurity::SignAndEncrypt
        && !allow_unencrypted_password
    {
        let span = t.get("username").map_or(t.span.clone(), |v| v.span());
        cx.push(
            span,
            t.key("username"),
            Kind::InvalidValue,
            format!(
                "{}a user name needs security = \"sign-and-encrypt\": with \"{}\" the password may cross the network readable (set allow_unencrypted_password = true only if the server's user-token policy encrypts it)",
                t.who,
                security.as_str()
            ),
        );
        return None;
    }
    Some(OpcuaConfig {
        endpoint: endpoint?,
        security,
        security_policy: security_policy?,
        username,
        password_file,
        allow_unencrypted_password,
        full_browse_every: full_browse_every?,
        setpoints: all(setpoints)?,
    })
}
