//! Format checks for single values (addresses, ids, keys, node ids). Each returns a message that
//! says what was expected; the caller attaches file, line and key. Nothing here panics or
//! touches the network (no DNS resolution).

use crate::CipLink;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An item path pattern (`safety = [...]`): a path, or a prefix ending in `*`
/// (`s7/db10/*`). A `*` anywhere else would promise a glob the matcher does not do.
pub(crate) fn item_pattern(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("an item pattern must not be empty".into());
    }
    if let Some(i) = s.find('*')
        && i != s.len() - 1
    {
        return Err(format!(
            "{s:?}: `*` is only allowed at the end, as a prefix wildcard (e.g. \"s7/db10/*\")"
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?} contains a control character"));
    }
    Ok(())
}

/// Asset and agent ids end up in file paths, URLs and CloudEvents sources, so they are kept to
/// a conservative character set.
pub(crate) fn id(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if n == 0 {
        return Err("an id must not be empty".into());
    }
    if n > 64 {
        return Err(format!(
            "{s:?} is {n} characters long; at most 64 are allowed"
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("{s:?} must start with a letter or digit"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{s:?} contains {c:?}; only letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Approver ids are the JWS `kid`/`iss` chosen by the change system, so they are only kept
/// printable and single-token.
pub(crate) fn approver_id(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if n == 0 {
        return Err("an approver id must not be empty".into());
    }
    if n > 128 {
        return Err(format!(
            "{s:?} is {n} characters long; at most 128 are allowed"
        ));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} must not contain whitespace"));
    }
    Ok(())
}

/// Setpoint names appear in diffs and item paths: readable text, but no '/' (path separator)
/// and no control characters.
pub(crate) fn setpoint_name(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if s.trim().is_empty() {
        return Err("a setpoint name must not be empty".into());
    }
    if n > 128 {
        return Err(format!(
            "{s:?} is {n} characters long; at most 128 are allowed"
        ));
    }
    if s.trim() != s {
        return Err(format!("{s:?} has leading or trailing whitespace"));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{s:?} contains a control character"));
    }
    if s.contains('/') {
        return Err(format!("{s:?} contains '/', which separates item paths"));
    }
    Ok(())
}

/// `host[:port]` for s7, ads, cip and modbus. Returns the host (IPv6 without brackets) and the
/// port (or `default_port`).
pub(crate) fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    if s.is_empty() {
        return Err("empty; expected host or host:port".into());
    }
    if s.chars().any(char::is_whitespace) {
        return Err("whitespace is not allowed; expected host or host:port".to_string());
    }
    if s.contains("://") {
        return Err("a URL is not allowed here; expected host or host:port".to_string());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err("'[' without a closing ']'".to_string());
        };
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(format!("[{inner}] is not a valid IPv6 address"));
        }
        let port = if after.is_empty() {
            default_port
        } else if let Some(p) = after.strip_prefix(':') {
            port(p)?
        } else {
            return Err("expected ':port' or nothing after the ']' of an IPv6 address".to_string());
        };
        return Ok((inner.to_owned(), port));
    } else if s.contains(']') || s.contains('[') {
        return Err("unbalanced brackets; write IPv6 as [addr]:port".to_string());
    } else {
        match s.matches(':').count() {
            0 => (s, default_port),
            1 => match s.split_once(':') {
                Some((h, p)) => (h, port(p)?),
                None => (s, default_port),
            },
            _ => {
                if s.parse::<Ipv6Addr>().is_ok() {
                    return Err(format!(
                        "an IPv6 address must be written in brackets, e.g. [{s}] or [{s}]:{default_port}"
                    ));
                }
                return Err("more than one ':'; expected host:port (IPv6 in brackets)".to_string());
            }
        }
    };
    hostname(host)?;
    Ok((host.to_owned(), port))
}

/// A port number written in an address: decimal, 1..=65535.
fn port(p: &str) -> Result<u16, String> {
    if p.is_empty() {
        return Err("port is missing after ':'".into());
    }
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {p:?} is not a number"));
    }
    match p.parse::<u32>() {
        Ok(n @ 1..=65535) => u16::try_from(n).map_err(|_| format!("port {p} is out of range")),
        _ => Err(format!("port {p} is out of range 1-65535")),
    }
}

/// An IPv4 address or a DNS host name (RFC 1123 labels). No resolution is attempted.
fn hostname(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("host is missing".into());
    }
    if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match h.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{h:?} is not a valid IPv4 address")),
        };
    }
    if h.len() > 253 {
        return Err(format!(
            "host name is {} bytes long; at most 253 are allowed",
            h.len()
        ));
    }
    for label in h.split('.') {
        if label.is_empty() {
            return Err(format!("host name {h:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!(
                "host name {h:?} has a label longer than 63 characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "host name {h:?} contains {c:?}; only letters, digits, '-' and '.' are allowed"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "host name {h:?} has a label starting or ending with '-'"
            ));
        }
    }
    Ok(())
}

/// Splits `scheme://authority...` after a case-insensitive `scheme://` prefix.
fn strip_scheme<'a>(s: &'a str, scheme: &str) -> Option<&'a str> {
    let n = scheme.len();
    let head = s.get(..n)?;
    if head.eq_ignore_ascii_case(scheme) {
        s.get(n..)
    } else {
        None
    }
}

/// An OPC UA endpoint URL `opc.tcp://host[:port][/path]`. Returns host and port.
pub(crate) fn opcua_endpoint(s: &str) -> Result<(String, u16), String> {
    const FORM: &str = "opc.tcp://host[:port][/path]";
    if s.is_empty() {
        return Err(format!("empty; expected {FORM}"));
    }
    if s.chars().any(char::is_whitespace) {
        return Err(format!("whitespace is not allowed; expected {FORM}"));
    }
    let Some(rest) = strip_scheme(s, "opc.tcp://") else {
        return Err(format!(
            "not an OPC UA endpoint URL; an opcua address must be {FORM}"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("no host; expected {FORM}"));
    }
    if authority.contains('@') {
        return Err(
            "user information is not allowed; credentials do not belong in the endpoint URL"
                .to_string(),
        );
    }
    host_port(authority, 4840)
}

/// The upstream URL: `http://` or `https://` with a host; no credentials in it (they go into
/// `token_file`).
/// Whether a (valid) upstream URL is plain `http://`, in any case of the scheme.
pub(crate) fn is_plain_http(s: &str) -> bool {
    strip_scheme(s, "http://").is_some()
}

pub(crate) fn http_url(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("whitespace is not allowed".into());
    }
    let (rest, default_port) = if let Some(r) = strip_scheme(s, "https://") {
        (r, 443)
    } else if let Some(r) = strip_scheme(s, "http://") {
        (r, 80)
    } else {
        return Err("expected an http:// or https:// URL".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err("no host".into());
    }
    if authority.contains('@') {
        return Err(
            "user information is not allowed; put the credential into token_file instead"
                .to_string(),
        );
    }
    host_port(authority, default_port).map(|_| ())
}

/// `ed25519:<standard base64, padded>` of exactly 32 bytes.
pub(crate) fn ed25519_public_key(s: &str) -> Result<[u8; 32], String> {
    let Some(b64) = s.strip_prefix("ed25519:") else {
        return Err("expected \"ed25519:<base64 of the 32-byte public key>\"".into());
    };
    let bytes = base64_decode(b64).map_err(|e| format!("the base64 after \"ed25519:\" {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "an Ed25519 public key is 32 bytes; this one decodes to {} bytes",
            bytes.len()
        )
    })
}

/// Strict RFC 4648 standard-alphabet base64 with padding; rejects non-canonical trailing bits
/// so one key has exactly one spelling.
pub(crate) fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    fn val(b: u8) -> Option<u32> {
        match b {
            b'A'..=b'Z' => Some(u32::from(b - b'A')),
            b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err("is empty".into());
    }
    if !bytes.len().is_multiple_of(4) {
        return Err(
            "is not padded to a multiple of 4 characters (standard base64 with '=')".into(),
        );
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let chunks = bytes.len() / 4;
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i + 1 == chunks;
        let pad = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 0 && !last {
            return Err("has '=' padding before the end".into());
        }
        if pad > 2 {
            return Err("has too much '=' padding".into());
        }
        let mut acc: u32 = 0;
        for &b in &chunk[..4 - pad] {
            let Some(v) = val(b) else {
                return Err(format!(
                    "contains {:?}, which is not in the standard base64 alphabet",
                    char::from(b)
                ));
            };
            acc = (acc << 6) | v;
        }
        acc <<= 6 * pad as u32;
        let [_, b0, b1, b2] = acc.to_be_bytes();
        match pad {
            0 => out.extend_from_slice(&[b0, b1, b2]),
            1 => {
                if b2 != 0 {
                    return Err("is not canonical (non-zero trailing bits)".into());
                }
                out.extend_from_slice(&[b0, b1]);
            }
            _ => {
                if b1 != 0 || b2 != 0 {
                    return Err("is not canonical (non-zero trailing bits)".into());
                }
                out.push(b0);
            }
        }
    }
    Ok(out)
}

/// A Beckhoff AMS Net Id: six dot-separated decimal bytes, e.g. `5.23.101.12.1.1`.
pub(crate) fn ams_net_id(s: &str) -> Result<[u8; 6], String> {
    let err = || {
        format!(
            "{s:?} is not an AMS Net Id; expected six dot-separated numbers 0-255, e.g. \"5.23.101.12.1.1\""
        )
    };
    let mut out = [0u8; 6];
    let mut parts = s.split('.');
    for slot in &mut out {
        let part = parts.next().ok_or_else(err)?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        *slot = part.parse::<u8>().map_err(|_| err())?;
    }
    if parts.next().is_some() {
        return Err(err());
    }
    Ok(out)
}

/// An ADS symbol name or a prefix ending in `.*`.
pub(crate) fn ads_symbol(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a symbol must not be empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} must not contain whitespace"));
    }
    if s.contains('*') {
        let ok =
            s.matches('*').count() == 1 && s.ends_with(".*") && s.len() > 2 && !s.ends_with("..*");
        if !ok {
            return Err(format!(
                "{s:?}: a wildcard is only allowed as a trailing \".*\" after a symbol prefix, e.g. \"GVL_Recipe.*\""
            ));
        }
    }
    Ok(())
}

/// A Logix tag: controller-scoped, or `Program:<program>.<tag>`.
pub(crate) fn cip_tag(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a tag must not be empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} must not contain whitespace"));
    }
    let scoped = s
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("program:"));
    if scoped {
        let rest = s.get(8..).unwrap_or("");
        match rest.split_once('.') {
            Some((prog, tag)) if !prog.is_empty() && !tag.is_empty() => {}
            _ => {
                return Err(format!(
                    "{s:?}: a program-scoped tag is written Program:<program>.<tag>"
                ));
            }
        }
    } else if s.starts_with('.') || s.ends_with('.') || s.contains("..") {
        return Err(format!("{s:?} has an empty member name"));
    }
    Ok(())
}

/// An OPC UA NodeId string: optional `ns=<n>;` (or `nsu=<uri>;`), then `i=<n>`, `s=<text>`,
/// `g=<guid>` or `b=<base64>`.
pub(crate) fn opcua_node_id(s: &str) -> Result<(), String> {
    const FORM: &str =
        "expected a NodeId like \"ns=2;s=Recipe\" or \"i=85\" ([ns=<n>;] then i=, s=, g= or b=)";
    let rest = if let Some(r) = s.strip_prefix("ns=") {
        let Some((ns, rest)) = r.split_once(';') else {
            return Err(format!("{s:?}: \"ns=<n>\" must be followed by ';'; {FORM}"));
        };
        if ns.is_empty() || !ns.bytes().all(|b| b.is_ascii_digit()) || ns.parse::<u16>().is_err() {
            return Err(format!(
                "{s:?}: namespace index {ns:?} is not a number 0-65535"
            ));
        }
        rest
    } else if let Some(r) = s.strip_prefix("nsu=") {
        match r.split_once(';') {
            Some((uri, rest)) if !uri.is_empty() => rest,
            _ => {
                return Err(format!(
                    "{s:?}: \"nsu=<uri>\" must be followed by ';'; {FORM}"
                ));
            }
        }
    } else {
        s
    };
    let (Some(kind), Some(ident)) = (rest.get(..2), rest.get(2..)) else {
        return Err(format!("{s:?}: {FORM}"));
    };
    match kind {
        "i=" => {
            if ident.is_empty()
                || !ident.bytes().all(|b| b.is_ascii_digit())
                || ident.parse::<u32>().is_err()
            {
                return Err(format!(
                    "{s:?}: a numeric identifier (i=) must be a number 0-4294967295"
                ));
            }
        }
        "s=" => {
            if ident.is_empty() {
                return Err(format!("{s:?}: a string identifier (s=) must not be empty"));
            }
        }
        "g=" => {
            let groups: Vec<&str> = ident.split('-').collect();
            let lens = [8, 4, 4, 4, 12];
            let ok = groups.len() == 5
                && groups
                    .iter()
                    .zip(lens)
                    .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                return Err(format!(
                    "{s:?}: a GUID identifier (g=) is written xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
                ));
            }
        }
        "b=" => {
            if let Err(e) = base64_decode(ident) {
                return Err(format!("{s:?}: the opaque identifier (b=) {e}"));
            }
        }
        _ => return Err(format!("{s:?}: {FORM}")),
    }
    Ok(())
}

/// Levenshtein distance, for "did you mean" hints on misspelt keys.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            let del = prev[j + 1] + 1;
            let ins = cur[j] + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A CIP route written as pycomm3 does, port/link pairs separated by `/`, e.g.
/// `"1/2/2/10.0.0.5/1/0"`: backplane slot 2, out of that module's Ethernet port to 10.0.0.5,
/// then its backplane slot 0. Ports are 1-14, links a slot number 0-255 or an IPv4 address.
pub(crate) fn cip_route(s: &str) -> Result<Vec<(u8, CipLink)>, String> {
    let parts: Vec<&str> = s.split('/').map(str::trim).collect();
    if parts.is_empty() || !parts.len().is_multiple_of(2) {
        return Err(
            "a route is port/link pairs, e.g. \"1/0\" or \"1/2/2/10.0.0.5/1/0\"".to_owned(),
        );
    }
    let mut hops = Vec::with_capacity(parts.len() / 2);
    for pair in parts.chunks_exact(2) {
        let (port, link) = (pair[0], pair[1]);
        let port: u8 = port
            .parse()
            .ok()
            .filter(|p| (1..=14).contains(p))
            .ok_or_else(|| format!("port {port:?} is not 1-14"))?;
        let link = if let Ok(slot) = link.parse::<u8>() {
            CipLink::Slot(slot)
        } else if let Ok(ip) = link.parse::<std::net::Ipv4Addr>() {
            CipLink::Address(ip)
        } else {
            return Err(format!(
                "link {link:?} is neither a slot (0-255) nor an IPv4 address"
            ));
        };
        hops.push((port, link));
    }
    Ok(hops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(host_port("10.0.3.17:502", 1), Ok(("10.0.3.17".into(), 502)));
        assert_eq!(host_port("10.0.3.17", 102), Ok(("10.0.3.17".into(), 102)));
        assert_eq!(
            host_port("plc-7.line3.local", 44818),
            Ok(("plc-7.line3.local".into(), 44818))
        );
        assert_eq!(host_port("[fe80::1]:1502", 1), Ok(("fe80::1".into(), 1502)));
        assert_eq!(host_port("[::1]", 502), Ok(("::1".into(), 502)));
        for bad in [
            "",
            " 10.0.0.1",
            "10.0.0.1:0",
            "10.0.0.1:65536",
            "10.0.0.1:",
            "10.0.0.1:x",
            "[fe80::1",
            "fe80::1]",
            "[fe80::1]x",
            "[nothex]:1",
            "fe80::1",
            "a:b:c",
            "host_name",
            "-host",
            "host-",
            "a..b",
            "10.0.3.300",
            "1.2.3",
            "opc.tcp://h:1",
            "h:99999999999999999999",
        ] {
            assert!(host_port(bad, 1).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn endpoints_and_urls() {
        assert_eq!(
            opcua_endpoint("opc.tcp://10.0.0.5:4841/UA/Server"),
            Ok(("10.0.0.5".into(), 4841))
        );
        assert_eq!(opcua_endpoint("opc.tcp://plc"), Ok(("plc".into(), 4840)));
        assert_eq!(
            opcua_endpoint("opc.tcp://[::1]:4850"),
            Ok(("::1".into(), 4850))
        );
        assert!(opcua_endpoint("10.0.0.5:4840").is_err());
        assert!(opcua_endpoint("opc.tcp://").is_err());
        assert!(opcua_endpoint("opc.tcp://u@h").is_err());
        assert!(opcua_endpoint("http://h").is_err());
        assert!(http_url("https://central.example/otdrift/events").is_ok());
        assert!(http_url("http://10.1.1.1:8080").is_ok());
        assert!(http_url("ftp://x").is_err());
        assert!(http_url("https:///path").is_err());
        assert!(http_url("https://user:pw@h/").is_err());
    }

    #[test]
    fn base64_is_strict() {
        assert_eq!(base64_decode("AAAA"), Ok(vec![0, 0, 0]));
        assert_eq!(base64_decode("aGk="), Ok(b"hi".to_vec()));
        assert_eq!(base64_decode("aA=="), Ok(b"h".to_vec()));
        assert!(base64_decode("aGk").is_err());
        assert!(base64_decode("aGl=").is_err()); // non-canonical
        assert!(base64_decode("a===").is_err());
        assert!(base64_decode("aG=k").is_err());
        assert!(base64_decode("aG-_").is_err());
        assert!(base64_decode("é").is_err());
        let key = format!("ed25519:{}", "A".repeat(43) + "=");
        assert_eq!(ed25519_public_key(&key), Ok([0; 32]));
        assert!(ed25519_public_key("ed25519:AAAA").is_err());
        assert!(ed25519_public_key(&key.replace("ed25519:", "rsa:")).is_err());
    }

    #[test]
    fn small_formats() {
        assert_eq!(ams_net_id("5.23.101.12.1.1"), Ok([5, 23, 101, 12, 1, 1]));
        for bad in [
            "5.23.101.12.1",
            "5.23.101.12.1.1.1",
            "5.23.101.12.1.256",
            "a.b.c.d.e.f",
            "5..1.1.1.1",
            "+5.1.1.1.1.1",
        ] {
            assert!(ams_net_id(bad).is_err(), "{bad}");
        }
        assert!(ads_symbol("GVL_Recipe.*").is_ok());
        assert!(ads_symbol("MAIN.fbPress.rSetpoint").is_ok());
        for bad in ["", ".*", "GVL*", "GVL.*.x", "G VL", "GVL..*"] {
            assert!(ads_symbol(bad).is_err(), "{bad}");
        }
        assert!(cip_tag("Program:Main.Oven_SP").is_ok());
        assert!(cip_tag("Oven_SP").is_ok());
        for bad in ["", "Program:Main", "Program:.x", "Program:Main.", "a b"] {
            assert!(cip_tag(bad).is_err(), "{bad}");
        }
        for ok in [
            "i=85",
            "ns=2;s=Recipe",
            "ns=3;i=1001",
            "g=09087e75-8e5e-499b-954f-f2a9603db28a",
            "ns=1;b=aGk=",
            "nsu=urn:x;s=a;b",
        ] {
            assert!(opcua_node_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "85", "ns=2", "ns=x;i=1", "i=", "i=x", "s=", "g=1234", "ns=2;x=1", "é",
        ] {
            assert!(opcua_node_id(bad).is_err(), "{bad}");
        }
        assert!(id("press-7").is_ok());
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(id(bad).is_err(), "{bad}");
        }
        assert_eq!(edit_distance("unti_id", "unit_id"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
