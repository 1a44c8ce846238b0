//! The OPC UA simulator's state file (format on the [`opcua`](super) module): parsed and
//! checked into an [`OpcuaState`](super::OpcuaState).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
};

use opcua_types::DateTime;
use serde::Deserialize;

use super::state::{
    BuildInfo, CertificateSlot, Limits, Mode, OpcuaState, PlcNode, Quirks, Security, StateError,
    Tick, VariableNode, invalid,
};
use super::values::ValueType;

// ---------------------------------------------------------------- parsing

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub(crate) tick_ms: Option<u64>,
    pub(crate) application_name: Option<String>,
    pub(crate) application_uri: Option<String>,
    pub(crate) namespace_uri: Option<String>,
    #[serde(default)]
    pub(crate) extra_namespaces: Vec<String>,
    pub(crate) pki_dir: Option<PathBuf>,
    #[serde(default)]
    pub(crate) node_version: bool,
    pub(crate) build_info: Option<RawBuildInfo>,
    pub(crate) limits: Option<RawLimits>,
    pub(crate) security: Option<RawSecurity>,
    #[serde(default)]
    pub(crate) quirks: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub(crate) folder: Vec<RawFolder>,
    #[serde(default)]
    pub(crate) variable: Vec<RawVariable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBuildInfo {
    pub(crate) product_uri: String,
    pub(crate) manufacturer_name: String,
    pub(crate) product_name: String,
    pub(crate) software_version: String,
    pub(crate) build_number: String,
    pub(crate) build_date: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) max_nodes_per_read: Option<u32>,
    pub(crate) max_nodes_per_browse: Option<u32>,
    pub(crate) max_references_per_node: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecurity {
    pub(crate) modes: Option<Vec<String>>,
    pub(crate) policies: Option<Vec<String>>,
    pub(crate) anonymous: Option<bool>,
    #[serde(default)]
    pub(crate) user: Vec<RawUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub(crate) name: String,
    pub(crate) password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFolder {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVariable {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    #[serde(rename = "type")]
    pub(crate) vtype: String,
    pub(crate) value: toml::Value,
    pub(crate) tick: Option<String>,
    pub(crate) readable: Option<bool>,
}

/// The policies the simulator offers unless told otherwise.
pub const DEFAULT_POLICIES: [&str; 3] = [
    "Basic256Sha256",
    "Aes128Sha256RsaOaep",
    "Aes256Sha256RsaPss",
];

pub(crate) fn last_segment(id: &str) -> String {
    id.rsplit('.').next().unwrap_or(id).to_owned()
}

/// Builds a variable node from its parts (shared by the state file and the `add` command).
pub(crate) fn variable_node(
    id: &str,
    vtype: &str,
    value: &toml::Value,
    tick: Option<&str>,
    readable: bool,
    name: Option<String>,
) -> Result<PlcNode, String> {
    let vtype = ValueType::parse(vtype).ok_or_else(|| {
        format!(
            "{id}: type {vtype:?} is not one of {}",
            ValueType::ALL.map(ValueType::name).join(", ")
        )
    })?;
    let value = vtype.convert(value).map_err(|e| format!("{id}: {e}"))?;
    let tick = tick
        .map(|t| Tick::parse(t, vtype))
        .transpose()
        .map_err(|e| format!("{id}: {e}"))?;
    Ok(PlcNode {
        name: name.unwrap_or_else(|| last_segment(id)),
        variable: Some(VariableNode {
            vtype,
            value,
            tick,
            readable,
        }),
    })
}

/// A folder node.
pub(crate) fn folder_node(id: &str, name: Option<String>) -> PlcNode {
    PlcNode {
        name: name.unwrap_or_else(|| last_segment(id)),
        variable: None,
    }
}

impl RawState {
    pub(crate) fn build(self, base: Option<&Path>) -> Result<OpcuaState, StateError> {
        let build_info = match self.build_info {
            Some(b) => {
                DateTime::parse_from_rfc3339(&b.build_date).map_err(|e| {
                    invalid(format!(
                        "build_info.build_date {:?} is not RFC 3339: {e}",
                        b.build_date
                    ))
                })?;
                BuildInfo {
                    product_uri: b.product_uri,
                    manufacturer_name: b.manufacturer_name,
                    product_name: b.product_name,
                    software_version: b.software_version,
                    build_number: b.build_number,
                    build_date: b.build_date,
                }
            }
            None => BuildInfo {
                product_uri: "urn:otdrift:sim".into(),
                manufacturer_name: "otdrift".into(),
                product_name: "otdrift OPC UA simulator".into(),
                software_version: env!("CARGO_PKG_VERSION").into(),
                build_number: "0".into(),
                build_date: "2025-01-01T00:00:00Z".into(),
            },
        };
        let limits = {
            let raw = self.limits;
            let get = |f: fn(&RawLimits) -> Option<u32>, default: u32| {
                raw.as_ref().and_then(f).unwrap_or(default)
            };
            Limits {
                max_nodes_per_read: get(|l| l.max_nodes_per_read, 1000),
                max_nodes_per_browse: get(|l| l.max_nodes_per_browse, 500),
                max_references_per_node: get(|l| l.max_references_per_node, 1000),
            }
        };
        if limits.max_nodes_per_read == 0
            || limits.max_nodes_per_browse == 0
            || limits.max_references_per_node == 0
        {
            return Err(invalid("limits must be at least 1"));
        }
        let security = match self.security {
            None => Security {
                modes: [Mode::None, Mode::Sign, Mode::SignAndEncrypt].into(),
                policies: DEFAULT_POLICIES.map(str::to_owned).to_vec(),
                anonymous: true,
                users: BTreeMap::new(),
            },
            Some(raw) => {
                let mut modes = BTreeSet::new();
                for mode in raw.modes.unwrap_or_else(|| {
                    vec!["none".into(), "sign".into(), "sign-and-encrypt".into()]
                }) {
                    modes.insert(match mode.as_str() {
                        "none" => Mode::None,
                        "sign" => Mode::Sign,
                        "sign-and-encrypt" => Mode::SignAndEncrypt,
                        other => {
                            return Err(invalid(format!(
                                "security.modes: {other:?}; expected none, sign or sign-and-encrypt"
                            )));
                        }
                    });
                }
                if modes.is_empty() {
                    return Err(invalid("security.modes must name at least one mode"));
                }
                let policies = raw
                    .policies
                    .unwrap_or_else(|| DEFAULT_POLICIES.map(str::to_owned).to_vec());
                for policy in &policies {
                    if !DEFAULT_POLICIES.contains(&policy.as_str()) {
                        return Err(invalid(format!(
                            "security.policies: {policy:?}; expected one of {}",
                            DEFAULT_POLICIES.join(", ")
                        )));
                    }
                }
                let mut users = BTreeMap::new();
                for user in raw.user {
                    if user.name.is_empty() {
                        return Err(invalid("security.user: empty name"));
                    }
                    if users.insert(user.name.clone(), user.password).is_some() {
                        return Err(invalid(format!("security.user {:?} twice", user.name)));
                    }
                }
                let anonymous = raw.anonymous.unwrap_or(true);
                if !anonymous && users.is_empty() {
                    return Err(invalid(
                        "security: anonymous = false needs at least one [[security.user]]",
                    ));
                }
                Security {
                    modes,
                    policies,
                    anonymous,
                    users,
                }
            }
        };
        let application_uri = self
            .application_uri
            .unwrap_or_else(|| "urn:otdrift:sim:opcua".into());
        let namespace_uri = self
            .namespace_uri
            .unwrap_or_else(|| "urn:otdrift:sim:plc".into());
        let mut seen = BTreeSet::from(["http://opcfoundation.org/UA/".to_owned()]);
        for uri in std::iter::once(&application_uri)
            .chain(&self.extra_namespaces)
            .chain(std::iter::once(&namespace_uri))
        {
            if uri.is_empty() || !seen.insert(uri.clone()) {
                return Err(invalid(format!(
                    "namespace URI {uri:?} is empty or used twice"
                )));
            }
        }
        let mut state = OpcuaState {
            tick_ms: self.tick_ms.unwrap_or(1000),
            application_name: self
                .application_name
                .unwrap_or_else(|| "otdrift OPC UA simulator".into()),
            application_uri,
            namespace_uri,
            extra_namespaces: self.extra_namespaces,
            build_info,
            limits,
            security,
            quirks: Quirks::default(),
            nodes: BTreeMap::new(),
            children: BTreeMap::new(),
            node_version: self.node_version,
            versions: BTreeMap::new(),
            ticks: 0,
            certificate: CertificateSlot {
                dir: self.pki_dir.map(|dir| match base {
                    Some(base) if dir.is_relative() => base.join(dir),
                    _ => dir,
                }),
                current: Arc::default(),
            },
        };
        // Folders first, shortest ids first, so parents exist before their children.
        let mut folders = self.folder;
        folders.sort_by_key(|f| f.id.matches('.').count());
        for folder in folders {
            let node = folder_node(&folder.id, folder.name);
            state.add_node(&folder.id, node).map_err(invalid)?;
        }
        for var in self.variable {
            let node = variable_node(
                &var.id,
                &var.vtype,
                &var.value,
                var.tick.as_deref(),
                var.readable.unwrap_or(true),
                var.name,
            )
            .map_err(invalid)?;
            state.add_node(&var.id, node).map_err(invalid)?;
        }
        crate::runtime::verbs::apply_file_quirks::<super::OpcuaSimulator>(&mut state, &self.quirks)
            .map_err(invalid)?;
        Ok(state)
    }
}
