//! End-to-end tests of otdrift-config: a full valid file, one test per error class, and the
//! "report everything at once" guarantee.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use otdrift_config::{
    AdsSetpoint, CipSetpoint, ConfigError, ConfigErrorKind as K, ModbusSetpoint, ModbusTable,
    OpcuaSecurity, OpcuaSetpoint, Protocol, ProtocolConfig, S7Setpoint, load, parse,
};

const FILE: &str = "/etc/otdrift/otdrift.toml";
const KEY_A: &str = "ed25519:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "ed25519:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

const AGENT: &str = "[agent]\nid = \"gw-line3\"\ndata_dir = \"/var/lib/otdrift\"\n";

/// 1-based line of the first occurrence of `needle` (after `from` occurrences skipped).
fn line_of(text: &str, needle: &str, skip: usize) -> usize {
    let mut from = 0;
    let mut at = None;
    for _ in 0..=skip {
        let i = text[from..].find(needle).expect("needle in text") + from;
        at = Some(i);
        from = i + needle.len();
    }
    text[..at.expect("found")].matches('\n').count() + 1
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text, Path::new(FILE)) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => {
            let shown = e.to_string();
            assert_eq!(
                shown.lines().count(),
                e.len(),
                "one line per error:\n{shown}"
            );
            e.0
        }
    }
}

/// Exactly one error, of `kind`, at `key` and `line`; returns it for message checks.
fn only(text: &str, kind: K, key: &str, line: usize) -> ConfigError {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got:\n{errs:#?}");
    let e = errs.into_iter().next().expect("one");
    assert_eq!(e.kind, kind, "{e}");
    assert_eq!(e.key, key, "{e}");
    assert_eq!(e.line, line, "{e}");
    assert_eq!(e.file, PathBuf::from(FILE));
    let shown = e.to_string();
    let prefix = format!("{FILE}:{line}:{}: {key}: ", e.column);
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} should start with {prefix:?}"
    );
    e
}

fn asset(body: &str) -> String {
    format!("{AGENT}\n[[asset]]\n{body}")
}

const FULL: &str = r#"
[agent]
id = "gw-line3"
data_dir = "/var/lib/otdrift"

[api]
listen = "127.0.0.1:8410"
token_file = "/etc/otdrift/api.token"

[upstream]
url = "https://central.example/otdrift/events"
token_file = "/etc/otdrift/upstream.token"

[[approver]]
id = "plant-eng-mgr"
public_key = "ed25519:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

[[approver]]
id = "qa-lead"
public_key = "ed25519:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="

[[asset]]
id = "press-7"
protocol = "modbus"
address = "10.0.3.17:502"
schedule = "0 */5 * * * *"
unit_id = 1

  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = 200

  [[asset.setpoints]]
  name = "interlocks"
  table = "coil"
  start = 0
  count = 64

[[asset]]
id = "cpu-1500"
protocol = "s7"
address = "10.0.3.20"
rack = 0
slot = 1
timeout_ms = 5000

  [[asset.setpoints]]
  name = "oven"
  db = 10
  start = 0
  size = 128

[[asset]]
id = "twincat.line3"
protocol = "ads"
address = "[fd00::21]"
ams_net_id = "5.23.101.12.1.1"
source_ams_net_id = "10.0.3.1.1.1"
setpoints = [
  { name = "recipe", symbol = "GVL_Recipe.*" },
  { name = "speed", symbol = "MAIN.fbDrive.rSpeedSP" },
]

[[asset]]
id = "logix-L83"
protocol = "cip"
address = "plc-l83.line3.local:44818"
slot = 2
schedule = "0 0 * * * *"

  [[asset.setpoints]]
  name = "oven sp"
  tag = "Program:Main.Oven_SP"

[[asset]]
id = "ua-1"
protocol = "opcua"
address = "opc.tcp://10.0.3.40:4841/UA/Server"
security = "sign-and-encrypt"

  [[asset.setpoints]]
  name = "recipes"
  node = "ns=2;s=Recipes"
"#;

#[test]
fn full_example_parses_with_defaults() {
    let c = parse(FULL, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.path, PathBuf::from(FILE));
    assert_eq!(c.agent.id, "gw-line3");
    assert_eq!(c.agent.data_dir, PathBuf::from("/var/lib/otdrift"));
    assert_eq!(c.agent.max_concurrency, 16);

    let api = c.api.as_ref().expect("api");
    assert_eq!(
        api.listen,
        "127.0.0.1:8410".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(api.token_file, PathBuf::from("/etc/otdrift/api.token"));
    let up = c.upstream.as_ref().expect("upstream");
    assert_eq!(up.url, "https://central.example/otdrift/events");
    assert_eq!(
        up.token_file.as_deref(),
        Some(Path::new("/etc/otdrift/upstream.token"))
    );
    assert_eq!(up.batch_size, 100);

    assert_eq!(c.approvers.len(), 2);
    let a = c.approver("plant-eng-mgr").expect("approver");
    let expected: Vec<u8> = (0..32).collect();
    assert_eq!(a.public_key.as_slice(), expected.as_slice());
    assert_eq!(c.approver("qa-lead").expect("qa").public_key, [7; 32]);
    assert!(c.approver("nobody").is_none());

    let ids: Vec<&str> = c.assets.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        ["press-7", "cpu-1500", "twincat.line3", "logix-L83", "ua-1"]
    );
    let kinds: Vec<Protocol> = c.assets.iter().map(|a| a.protocol.kind()).collect();
    assert_eq!(
        kinds,
        [
            Protocol::Modbus,
            Protocol::S7,
            Protocol::Ads,
            Protocol::Cip,
            Protocol::Opcua
        ]
    );

    // modbus
    let m = c.asset("press-7").expect("press-7");
    assert_eq!((m.host.as_str(), m.port), ("10.0.3.17", 502));
    assert_eq!(m.address, "10.0.3.17:502");
    assert_eq!(m.schedule, "0 */5 * * * *");
    assert_eq!(m.timeout_ms, 3000);
    assert_eq!(m.line, line_of(FULL, "[[asset]]", 0));
    let ProtocolConfig::Modbus(mb) = &m.protocol else {
        panic!("modbus")
    };
    assert_eq!(
        (mb.unit_id, mb.device_id, mb.max_registers, mb.max_bits),
        (1, true, 125, 2000)
    );
    assert_eq!(
        mb.setpoints,
        [
            ModbusSetpoint {
                name: "recipe".into(),
                table: ModbusTable::Holding,
                start: 0,
                count: 200,
                fields: Vec::new(),
            },
            ModbusSetpoint {
                name: "interlocks".into(),
                table: ModbusTable::Coil,
                start: 0,
                count: 64,
                fields: Vec::new(),
            },
        ]
    );

    // s7
    let s = c.asset("cpu-1500").expect("cpu-1500");
    assert_eq!(
        (s.host.as_str(), s.port, s.timeout_ms),
        ("10.0.3.20", 102, 5000)
    );
    assert_eq!(s.schedule, "0 */5 * * * *");
    let ProtocolConfig::S7(s7) = &s.protocol else {
        panic!("s7")
    };
    assert_eq!((s7.rack, s7.slot, s7.upload_blocks), (0, 1, false));
    assert_eq!(
        s7.setpoints,
        [S7Setpoint {
            name: "oven".into(),
            db: 10,
            start: 0,
            size: 128,
            fields: Vec::new(),
        }]
    );

    // ads
    let t = c.asset("twincat.line3").expect("ads");
    assert_eq!((t.host.as_str(), t.port), ("fd00::21", 48898));
    let ProtocolConfig::Ads(ads) = &t.protocol else {
        panic!("ads")
    };
    assert_eq!(ads.ams_net_id, [5, 23, 101, 12, 1, 1]);
    assert_eq!(ads.ams_port, 851);
    assert_eq!(ads.source_ams_net_id, Some([10, 0, 3, 1, 1, 1]));
    assert_eq!(
        ads.setpoints,
        [
            AdsSetpoint {
                name: "recipe".into(),
                symbol: "GVL_Recipe.*".into()
            },
            AdsSetpoint {
                name: "speed".into(),
                symbol: "MAIN.fbDrive.rSpeedSP".into()
            },
        ]
    );

    // cip
    let l = c.asset("logix-L83").expect("cip");
    assert_eq!((l.host.as_str(), l.port), ("plc-l83.line3.local", 44818));
    assert_eq!(l.schedule, "0 0 * * * *");
    let ProtocolConfig::Cip(cip) = &l.protocol else {
        panic!("cip")
    };
    assert_eq!(cip.slot, 2);
    assert_eq!(
        cip.setpoints,
        [CipSetpoint {
            name: "oven sp".into(),
            tag: "Program:Main.Oven_SP".into()
        }]
    );

    // opcua
    let u = c.asset("ua-1").expect("opcua");
    assert_eq!((u.host.as_str(), u.port), ("10.0.3.40", 4841));
    let ProtocolConfig::Opcua(ua) = &u.protocol else {
        panic!("opcua")
    };
    assert_eq!(ua.endpoint, "opc.tcp://10.0.3.40:4841/UA/Server");
    assert_eq!(ua.security, OpcuaSecurity::SignAndEncrypt);
    assert_eq!(
        ua.setpoints,
        [OpcuaSetpoint {
            name: "recipes".into(),
            node: "ns=2;s=Recipes".into()
        }]
    );
}

#[test]
fn minimal_file_and_defaults() {
    let text = asset("id = \"a\"\nprotocol = \"opcua\"\naddress = \"opc.tcp://ua-host\"\n");
    let c = parse(&text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.api.is_none() && c.upstream.is_none() && c.approvers.is_empty());
    let a = &c.assets[0];
    assert_eq!((a.host.as_str(), a.port, a.line), ("ua-host", 4840, 5));
    let ProtocolConfig::Opcua(ua) = &a.protocol else {
        panic!("opcua")
    };
    assert_eq!(ua.security, OpcuaSecurity::None);
    assert_eq!(ua.full_browse_every, 60);
    assert!(ua.setpoints.is_empty());
    let every = asset(
        "id = \"a\"\nprotocol = \"opcua\"\naddress = \"opc.tcp://ua-host\"\nfull_browse_every = 1\n",
    );
    let c = parse(&every, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
    let ProtocolConfig::Opcua(ua) = &c.assets[0].protocol else {
        panic!("opcua")
    };
    assert_eq!(ua.full_browse_every, 1);
    let zero = asset(
        "id = \"a\"\nprotocol = \"opcua\"\naddress = \"opc.tcp://ua-host\"\nfull_browse_every = 0\n",
    );
    only(&zero, K::InvalidValue, "asset[0].full_browse_every", 9);
    // No assets at all is a valid (idle) agent.
    assert!(parse(AGENT, Path::new(FILE)).is_ok());
}

#[test]
fn protocol_helpers() {
    for p in Protocol::ALL {
        assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
        assert_eq!(p.to_string(), p.as_str());
    }
    assert_eq!(Protocol::Modbus.default_port(), 502);
    assert_eq!(Protocol::S7.default_port(), 102);
    assert_eq!(Protocol::Ads.default_port(), 48898);
    assert_eq!(Protocol::Cip.default_port(), 44818);
    assert_eq!(Protocol::Opcua.default_port(), 4840);
    assert!("profinet".parse::<Protocol>().is_err());
    assert_eq!(ModbusTable::Discrete.to_string(), "discrete");
}

#[test]
fn unknown_key() {
    let text = format!("{AGENT}max_concurency = 4\n");
    let e = only(&text, K::UnknownKey, "agent.max_concurency", 4);
    assert_eq!(e.column, 1);
    assert!(e.message.contains("did you mean `max_concurrency`"), "{e}");
    assert!(
        e.message
            .ends_with("; expected one of id, data_dir, max_concurrency, clock_skew_secs, audit_head_interval_secs, backoff_max_secs, max_token_lifetime, approval_max_observation_age, memory_budget, seen_flush, verify_max_age"),
        "{e}"
    );

    let text = format!("{AGENT}[logging]\nlevel = \"debug\"\n");
    only(&text, K::UnknownKey, "logging", 4);

    let text = asset(
        "id = \"p\"\nprotocol = \"modbus\"\naddress = \"h\"\ncolour = \"red\"\n[[asset.setpoints]]\nname = \"x\"\ntable = \"coil\"\nstart = 1\ncount = 1\nunits = \"bar\"\n",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(
        (errs[0].kind, errs[0].key.as_str(), errs[0].line),
        (K::UnknownKey, "asset[0].colour", 9)
    );
    assert!(errs[0].message.starts_with("asset \"p\": "), "{}", errs[0]);
    assert_eq!(
        (errs[1].kind, errs[1].key.as_str(), errs[1].line),
        (K::UnknownKey, "asset[0].setpoints[0].units", 15)
    );
}

#[test]
fn missing_key() {
    let e = only("[agent]\nid = \"gw\"\n", K::MissingKey, "agent.data_dir", 1);
    assert!(e.message.contains("data_dir"));

    let e = only("", K::MissingKey, "agent", 1);
    assert!(e.message.contains("[agent]"));

    let text = asset("id = \"cpu\"\nprotocol = \"s7\"\naddress = \"10.0.0.1\"\nrack = 0\n");
    let e = only(&text, K::MissingKey, "asset[0].slot", 5);
    assert!(e.message.contains("asset \"cpu\""), "{e}");

    let text = asset(
        "id = \"p\"\nprotocol = \"modbus\"\naddress = \"h\"\n  [[asset.setpoints]]\n  name = \"x\"\n  table = \"coil\"\n  count = 1\n",
    );
    let e = only(&text, K::MissingKey, "asset[0].setpoints[0].start", 9);
    assert_eq!(e.column, 3);

    // All missing keys of one table are reported together.
    let errs = errors(&asset("protocol = \"ads\"\n"));
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["asset[0].id", "asset[0].address", "asset[0].ams_net_id"],
        "{errs:#?}"
    );
    assert!(errs.iter().all(|e| e.kind == K::MissingKey && e.line == 5));
}

#[test]
fn bad_protocol() {
    let text = asset("id = \"p\"\nprotocol = \"profinet\"\naddress = \"h\"\n");
    let e = only(&text, K::BadProtocol, "asset[0].protocol", 7);
    assert_eq!(e.column, 12);
    assert!(e.message.contains("s7, ads, cip, modbus, opcua"), "{e}");
    assert!(e.to_string().contains(FILE));
}

#[test]
fn bad_address_forms() {
    let cases = [
        ("modbus", ""),
        ("modbus", "10.0.3.17 :502"),
        ("modbus", "10.0.3.17:0"),
        ("modbus", "10.0.3.17:70000"),
        ("modbus", "[fe80::1:502"),
        ("modbus", "fe80::1"),
        ("s7", "plc_7.local"),
        ("s7", "10.0.3.256"),
        ("cip", "opc.tcp://10.0.0.1:4840"),
        ("opcua", "10.0.0.1:4840"),
        ("opcua", "opc.tcp://:4840/x"),
        ("ads", "http://10.0.0.1"),
    ];
    for (protocol, address) in cases {
        let mut body = format!("id = \"a\"\nprotocol = \"{protocol}\"\naddress = \"{address}\"\n");
        match protocol {
            "s7" => body.push_str("rack = 0\nslot = 1\n"),
            "ads" => body.push_str("ams_net_id = \"1.2.3.4.1.1\"\n"),
            _ => {}
        }
        let e = only(&asset(&body), K::BadAddress, "asset[0].address", 8);
        assert_eq!(e.column, 11, "{e}");
        assert!(e.message.starts_with("asset \"a\": "), "{e}");
    }
}

#[test]
fn duplicate_asset_id() {
    let one = "id = \"press-7\"\nprotocol = \"modbus\"\naddress = \"10.0.0.1\"\n";
    let text = format!("{}\n[[asset]]\n{one}", asset(one));
    let first = line_of(&text, "[[asset]]", 0);
    let e = only(
        &text,
        K::DuplicateId,
        "asset[1].id",
        line_of(&text, "id = \"press-7\"", 1),
    );
    assert!(e.message.contains(&format!("line {first}")), "{e}");

    let text = format!(
        "{AGENT}[[approver]]\nid = \"x\"\npublic_key = \"{KEY_A}\"\n[[approver]]\nid = \"x\"\npublic_key = \"{KEY_B}\"\n"
    );
    let e = only(&text, K::DuplicateId, "approver[1].id", 8);
    assert!(e.message.contains("line 4"), "{e}");

    let text = asset(
        "id = \"p\"\nprotocol = \"cip\"\naddress = \"h\"\n[[asset.setpoints]]\nname = \"sp\"\ntag = \"A\"\n[[asset.setpoints]]\nname = \"sp\"\ntag = \"B\"\n",
    );
    let e = only(&text, K::DuplicateId, "asset[0].setpoints[1].name", 13);
    assert!(e.message.contains("line 9"), "{e}");
}

#[test]
fn setpoint_key_of_wrong_protocol() {
    let text = asset(
        "id = \"press-7\"\nprotocol = \"modbus\"\naddress = \"h\"\n[[asset.setpoints]]\nname = \"r\"\ndb = 1\ntable = \"holding\"\nstart = 0\ncount = 1\n",
    );
    let e = only(&text, K::WrongProtocolKey, "asset[0].setpoints[0].db", 11);
    assert_eq!(
        e.message,
        "`db` is an s7 setpoint key; asset \"press-7\" uses modbus (setpoint keys: name, table, start, count, field)"
    );

    let text = asset("id = \"press-7\"\nprotocol = \"modbus\"\naddress = \"h\"\nrack = 0\n");
    let e = only(&text, K::WrongProtocolKey, "asset[0].rack", 9);
    assert!(
        e.message
            .starts_with("`rack` is an s7 asset key; asset \"press-7\" uses modbus"),
        "{e}"
    );

    let text = asset(
        "id = \"cpu\"\nprotocol = \"s7\"\naddress = \"h\"\nrack = 0\nslot = 1\nunit_id = 3\n",
    );
    let e = only(&text, K::WrongProtocolKey, "asset[0].unit_id", 11);
    assert!(e.message.contains("modbus asset key"), "{e}");
}

#[test]
fn bad_cron() {
    let text =
        asset("id = \"p\"\nprotocol = \"modbus\"\naddress = \"h\"\nschedule = \"*/5 * * * *\"\n");
    let e = only(&text, K::BadCron, "asset[0].schedule", 9);
    assert!(e.message.contains("*/5 * * * *"), "{e}");
    assert!(
        e.message.contains("fields"),
        "croner's reason should be quoted: {e}"
    );

    let text =
        asset("id = \"p\"\nprotocol = \"modbus\"\naddress = \"h\"\nschedule = \"0 61 * * * *\"\n");
    only(&text, K::BadCron, "asset[0].schedule", 9);
}

#[test]
fn syntax_error() {
    let text = "[agent]\nid = \"gw\"\ndata_dir = /var/lib\n";
    let errs = errors(text);
    assert!(!errs.is_empty());
    let e = &errs[0];
    assert_eq!((e.kind, e.line), (K::Syntax, 3), "{e}");
    assert_eq!(e.key, "agent.data_dir");
    assert!(e.to_string().starts_with(&format!("{FILE}:3:")), "{e}");

    let text = asset("id = \"a\"\nid = \"b\"\n");
    let errs = errors(&text);
    assert_eq!(
        (errs[0].kind, errs[0].line, errs[0].key.as_str()),
        (K::Syntax, 7, "asset[0].id"),
        "{errs:#?}"
    );

    let e = &errors("[[asset]\nid = 1\n")[0];
    assert_eq!((e.kind, e.line), (K::Syntax, 1));
}

#[test]
fn wrong_type_and_range() {
    let text = format!("{AGENT}max_concurrency = \"16\"\n");
    let e = only(&text, K::InvalidValue, "agent.max_concurrency", 4);
    assert!(
        e.message
            .contains("expected an integer from 1 to 1024, found string \"16\""),
        "{e}"
    );

    let text = format!("{AGENT}max_concurrency = 0\n");
    only(&text, K::InvalidValue, "agent.max_concurrency", 4);

    let text = asset(
        "id = \"p\"\nprotocol = \"modbus\"\naddress = \"h\"\nunit_id = 300\ndevice_id = \"yes\"\n",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(
        (errs[0].kind, errs[0].key.as_str(), errs[0].line),
        (K::InvalidValue, "asset[0].unit_id", 9)
    );
    assert_eq!(
        (errs[1].kind, errs[1].key.as_str(), errs[1].line),
        (K::InvalidValue, "asset[0].device_id", 10)
    );

    let text = format!("{AGENT}[api]\nlisten = \"localhost:8410\"\ntoken_file = \"t\"\n");
    only(&text, K::InvalidValue, "api.listen", 5);

    let text = format!("{AGENT}[upstream]\nurl = \"central.example/events\"\n");
    only(&text, K::InvalidValue, "upstream.url", 5);

    let text = format!("asset = 5\n{AGENT}");
    let e = only(&text, K::InvalidValue, "asset", 1);
    assert!(e.message.contains("[[asset]]"), "{e}");
}

#[test]
fn bad_public_key() {
    for key in [
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", // no prefix
        "ed25519:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==", // 31 bytes
        "ed25519:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", // unpadded
        "ed25519:not base64!",
    ] {
        let text = format!("{AGENT}[[approver]]\nid = \"a\"\npublic_key = \"{key}\"\n");
        let e = only(&text, K::InvalidValue, "approver[0].public_key", 6);
        assert_eq!(e.column, 14);
    }
}

#[test]
fn overlapping_modbus_ranges() {
    let text = asset(
        "id = \"p\"\nprotocol = \"modbus\"\naddress = \"h\"\n\
         [[asset.setpoints]]\nname = \"recipe\"\ntable = \"holding\"\nstart = 0\ncount = 100\n\
         [[asset.setpoints]]\nname = \"limits\"\ntable = \"holding\"\nstart = 99\ncount = 10\n\
         [[asset.setpoints]]\nname = \"inputs\"\ntable = \"input\"\nstart = 0\ncount = 100\n",
    );
    let e = only(&text, K::InvalidValue, "asset[0].setpoints[1]", 14);
    assert!(
        e.message.contains("\"limits\"") && e.message.contains("\"recipe\""),
        "{e}"
    );

    // Adjacent ranges are fine.
    let text = text.replace("start = 99", "start = 100");
    assert!(parse(&text, Path::new(FILE)).is_ok());

    let text = asset(
        "id = \"p\"\nprotocol = \"modbus\"\naddress = \"h\"\n[[asset.setpoints]]\nname = \"x\"\ntable = \"coil\"\nstart = 65535\ncount = 2\n",
    );
    only(&text, K::InvalidValue, "asset[0].setpoints[0].count", 13);
}

#[test]
fn three_independent_errors_in_three_assets() {
    let text = format!(
        "{AGENT}\n\
         [[asset]]\nid = \"a\"\nprotocol = \"modbus\"\naddress = \"10.0.0.1:0\"\n\n\
         [[asset]]\nid = \"b\"\nprotocol = \"s7\"\naddress = \"10.0.0.2\"\nrack = 0\nslot = 1\nschedule = \"every 5 minutes\"\n\n\
         [[asset]]\nid = \"c\"\nprotocol = \"cip\"\naddress = \"10.0.0.3\"\n  [[asset.setpoints]]\n  name = \"oven\"\n  symbol = \"GVL.x\"\n  tag = \"Oven\"\n"
    );
    let errs = errors(&text);
    let got: Vec<(K, &str, usize)> = errs
        .iter()
        .map(|e| (e.kind, e.key.as_str(), e.line))
        .collect();
    assert_eq!(
        got,
        [
            (
                K::BadAddress,
                "asset[0].address",
                line_of(&text, "10.0.0.1:0", 0)
            ),
            (
                K::BadCron,
                "asset[1].schedule",
                line_of(&text, "every 5", 0)
            ),
            (
                K::WrongProtocolKey,
                "asset[2].setpoints[0].symbol",
                line_of(&text, "symbol", 0)
            ),
        ],
        "{errs:#?}"
    );
    assert!(errs[2].message.contains("asset \"c\""));
}

#[test]
fn load_reads_files_and_reports_io_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let errs = load(&missing).expect_err("missing file");
    assert_eq!(errs.len(), 1);
    let e = &errs.0[0];
    assert_eq!((e.kind, e.line), (K::Io, 0));
    assert_eq!(e.file, missing);
    assert!(
        e.to_string()
            .starts_with(&format!("{}: ", missing.display())),
        "{e}"
    );

    let good = dir.path().join("otdrift.toml");
    std::fs::write(&good, FULL).expect("write");
    let c = load(&good).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.path, good);
    assert_eq!(c.assets.len(), 5);
}

#[test]
fn columns_count_characters_not_bytes() {
    let text = format!(
        "{AGENT}[[asset]]\nid = \"x\"\nprotocol = \"modbus\"\naddress = \"h\"\nsetpoints = [{{ name = \"é\", table = \"holdin\", start = 0, count = 1 }}]\n"
    );
    let e = only(&text, K::InvalidValue, "asset[0].setpoints[0].table", 8);
    // `setpoints = [{ name = "é", table = ` is 35 characters but 36 bytes.
    assert_eq!(e.column, 36);
}

#[test]
fn garbage_never_panics() {
    let samples = [
        "\u{feff}[agent]\nid=\"x\"",
        "[",
        "[[",
        "a = ",
        "= 1",
        "\"\\u{d800}\"",
        "x = \"\u{0}\"",
        "[agent]\nid = \"x\"\ndata_dir = \"\"\n",
        "[[asset]]\n[[asset]]\n[asset.setpoints]\n",
        "agent = []\nasset = [1, \"x\", {}]\napprover = {}\n",
        "\r\n\r\n[agent\r\n",
        "é = ü",
    ];
    for s in samples {
        let _ = parse(s, Path::new("x.toml"));
    }
    // Every prefix of the full example, cut at each character boundary.
    for (i, _) in FULL.char_indices() {
        let _ = parse(&FULL[..i], Path::new("x.toml"));
    }
}

#[test]
fn cip_routes_and_change_detection_tags() {
    let text = asset(
        "id = \"oven\"\nprotocol = \"cip\"\naddress = \"10.0.3.40\"\nroute = \"1/2/2/10.0.0.5/1/0\"\nrebrowse_every = 4\naudit_tag = \"Audit\"\n",
    );
    let config = parse(&text, Path::new(FILE)).expect("valid");
    let ProtocolConfig::Cip(cip) = &config.assets[0].protocol else {
        panic!("a cip asset");
    };
    use otdrift_config::CipLink;
    assert_eq!(
        cip.route,
        Some(vec![
            (1, CipLink::Slot(2)),
            (2, CipLink::Address("10.0.0.5".parse().expect("ip"))),
            (1, CipLink::Slot(0)),
        ])
    );
    assert_eq!(cip.rebrowse_every, 4);
    assert_eq!(cip.audit_tag, "Audit");
    assert_eq!(cip.changes_tag, "ChangesToDetect");

    for bad in ["1/2/2", "0/1", "1/x.y"] {
        let text = asset(&format!(
            "id = \"oven\"\nprotocol = \"cip\"\naddress = \"10.0.3.40\"\nroute = \"{bad}\"\n"
        ));
        let e = only(&text, K::InvalidValue, "asset[0].route", 9);
        assert!(e.message.contains("route"), "{e}");
    }
}

/// Change policies: `[[policy]]` tables with durations, assets that name them, safety items
/// that escalate, staging controllers; every mistake named with its line and key.
#[test]
fn change_policies_staging_and_safety() {
    let good = format!(
        "{AGENT}\n[[policy]]\nid = \"tier-1\"\napprovals = 2\nnotice = \"48h\"\nrequire_staging = true\ndiff_review = true\n\n[[policy]]\nid = \"board\"\napprovals = 3\nreview_within = \"3d\"\n\n[[asset]]\nid = \"line-1\"\nprotocol = \"modbus\"\naddress = \"10.0.0.1\"\npolicy = \"tier-1\"\nsafety = [\"modbus/holding/9*\", \"modbus/coil/3\"]\nsafety_policy = \"board\"\n\n[[asset]]\nid = \"line-1-spare\"\nprotocol = \"modbus\"\naddress = \"10.0.0.2\"\nstaging_for = \"line-1\"\n"
    );
    let config = parse(&good, Path::new(FILE)).expect("valid");
    let tier = config.policy("tier-1").expect("tier-1");
    assert_eq!(tier.approvals, 2);
    assert_eq!(tier.notice, std::time::Duration::from_secs(48 * 3600));
    assert!(tier.require_staging && tier.diff_review);
    assert_eq!(
        tier.review_within,
        std::time::Duration::from_secs(7 * 86_400)
    );
    let line = config.asset("line-1").expect("asset");
    assert_eq!(line.safety, ["modbus/holding/9*", "modbus/coil/3"]);
    assert_eq!(line.safety_policy.as_deref(), Some("board"));
    assert_eq!(config.staging_of("line-1").len(), 1);

    // A policy the file does not define.
    let text = good.replace("policy = \"tier-1\"", "policy = \"tier-9\"");
    let e = only(
        &text,
        K::InvalidValue,
        "asset[0].policy",
        line_of(&text, "policy = \"tier-9\"", 0),
    );
    assert!(e.message.contains("tier-1, board"), "{e}");
    // Safety items without a safety policy.
    let text = good.replace("safety_policy = \"board\"\n", "");
    only(
        &text,
        K::MissingKey,
        "asset[0].safety",
        line_of(&text, "safety = [", 0),
    );
    // A wildcard in the middle of a pattern.
    let text = good.replace("modbus/holding/9*", "modbus/*/9");
    only(
        &text,
        K::InvalidValue,
        "asset[0].safety[0]",
        line_of(&text, "modbus/*/9", 0),
    );
    // Staging for an asset that does not exist, for itself, or across protocols.
    let text = good.replace("staging_for = \"line-1\"", "staging_for = \"line-7\"");
    only(
        &text,
        K::InvalidValue,
        "asset[1].staging_for",
        line_of(&text, "staging_for", 0),
    );
    let text = good.replace("staging_for = \"line-1\"", "staging_for = \"line-1-spare\"");
    let e = only(
        &text,
        K::InvalidValue,
        "asset[1].staging_for",
        line_of(&text, "staging_for", 0),
    );
    assert!(e.message.contains("its own staging controller"), "{e}");
    let text = good.replace(
        "id = \"line-1-spare\"\nprotocol = \"modbus\"\naddress = \"10.0.0.2\"",
        "id = \"line-1-spare\"\nprotocol = \"s7\"\naddress = \"10.0.0.2\"\nrack = 0\nslot = 1",
    );
    let e = only(
        &text,
        K::InvalidValue,
        "asset[1].staging_for",
        line_of(&text, "staging_for", 0),
    );
    assert!(e.message.contains("another protocol"), "{e}");
    // Durations are strings with a unit, in range.
    let text = good.replace("notice = \"48h\"", "notice = 48");
    only(
        &text,
        K::InvalidValue,
        "policy[0].notice",
        line_of(&text, "notice = 48", 0),
    );
    let text = good.replace("notice = \"48h\"", "notice = \"48\"");
    let e = only(
        &text,
        K::InvalidValue,
        "policy[0].notice",
        line_of(&text, "notice = \"48\"", 0),
    );
    assert!(e.message.contains("no unit"), "{e}");
    // Two policies with one id.
    let text = good
        .replace("id = \"board\"", "id = \"tier-1\"")
        .replace("safety_policy = \"board\"", "safety_policy = \"tier-1\"");
    only(
        &text,
        K::DuplicateId,
        "policy[1].id",
        line_of(&text, "id = \"tier-1\"", 1),
    );
}

#[test]
fn an_upstream_token_over_plain_http_needs_an_explicit_opt_out() {
    let base = format!(
        "{AGENT}[upstream]\nurl = \"http://central.example/events\"\ntoken_file = \"/etc/otdrift/up.token\"\n"
    );
    let e = only(&base, K::InvalidValue, "upstream.token_file", 6);
    assert!(e.message.contains("cleartext"), "{e}");
    assert!(e.message.contains("allow_insecure_http = true"), "{e}");
    // The scheme in any case is still plain HTTP.
    let upper = base.replace("http://", "HTTP://");
    only(&upper, K::InvalidValue, "upstream.token_file", 6);

    let allowed = format!("{base}allow_insecure_http = true\n");
    let up = parse(&allowed, Path::new(FILE))
        .expect("valid")
        .upstream
        .expect("upstream");
    assert!(up.allow_insecure_http);
    // Without a token there is no credential to leak; with https the token is protected.
    parse(
        &format!("{AGENT}[upstream]\nurl = \"http://central.example/events\"\n"),
        Path::new(FILE),
    )
    .expect("no token over http is allowed");
    parse(&base.replace("http://", "https://"), Path::new(FILE)).expect("https with a token");
}

#[test]
fn max_event_bytes_and_max_connections_have_defaults_and_bounds() {
    let c = parse(FULL, Path::new(FILE)).expect("valid");
    let up = c.upstream.expect("upstream");
    assert_eq!(up.max_event_bytes, 262_144);
    assert!(!up.allow_insecure_http);
    assert_eq!(c.api.expect("api").max_connections, 256);

    let small =
        format!("{AGENT}[upstream]\nurl = \"https://c.example/e\"\nmax_event_bytes = 1000\n");
    let e = only(&small, K::InvalidValue, "upstream.max_event_bytes", 6);
    assert!(e.message.contains("16384"), "{e}");
    let huge = small.replace("1000", "20000000");
    only(&huge, K::InvalidValue, "upstream.max_event_bytes", 6);
    let ok = small.replace("1000", "65536");
    assert_eq!(
        parse(&ok, Path::new(FILE))
            .expect("valid")
            .upstream
            .expect("upstream")
            .max_event_bytes,
        65_536
    );

    let api = format!(
        "{AGENT}[api]\nlisten = \"127.0.0.1:8410\"\ntoken_file = \"/t\"\nmax_connections = 5000\n"
    );
    only(&api, K::InvalidValue, "api.max_connections", 7);
    let api = api.replace("5000", "64");
    assert_eq!(
        parse(&api, Path::new(FILE))
            .expect("valid")
            .api
            .expect("api")
            .max_connections,
        64
    );
}

#[test]
fn an_opcua_user_name_needs_an_encrypted_channel_or_an_explicit_opt_out() {
    let user = |security: &str, extra: &str| {
        asset(&format!(
            "id = \"ua\"\nprotocol = \"opcua\"\naddress = \"opc.tcp://ua-host\"\nsecurity = \"{security}\"\nusername = \"otdrift\"\npassword_file = \"/etc/otdrift/ua.pw\"\n{extra}"
        ))
    };
    for security in ["none", "sign"] {
        let e = only(
            &user(security, ""),
            K::InvalidValue,
            "asset[0].username",
            10,
        );
        assert!(e.message.contains("sign-and-encrypt"), "{e}");
        assert!(e.message.contains("allow_unencrypted_password"), "{e}");
        let c = parse(
            &user(security, "allow_unencrypted_password = true\n"),
            Path::new(FILE),
        )
        .expect("opted out");
        let ProtocolConfig::Opcua(ua) = &c.assets[0].protocol else {
            panic!("opcua")
        };
        assert!(ua.allow_unencrypted_password);
    }
    parse(&user("sign-and-encrypt", ""), Path::new(FILE)).expect("encrypted");
    // Anonymous sessions send no password: any security mode.
    parse(
        &asset("id = \"ua\"\nprotocol = \"opcua\"\naddress = \"opc.tcp://ua-host\"\n"),
        Path::new(FILE),
    )
    .expect("anonymous");
}

#[test]
fn a_config_that_is_not_utf8_names_the_line_and_column_of_the_first_bad_byte() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("otdrift.toml");
    let mut bytes = AGENT.as_bytes().to_vec();
    bytes.extend_from_slice(b"# Ofen: 180\xb0C, ok\n");
    std::fs::write(&path, &bytes).expect("write");
    let errs = load(&path).expect_err("not UTF-8").0;
    assert_eq!(errs.len(), 1);
    let e = &errs[0];
    assert_eq!((e.line, e.column), (4, 12), "{e}");
    assert_eq!(e.kind, K::Syntax);
    assert_eq!(e.file, path);
    assert!(
        e.message.contains("not UTF-8") && e.message.contains("0xb0"),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("{}:4:12: ", path.display())),
        "{e}"
    );
}

#[test]
fn retention_has_defaults_and_durations_of_at_least_a_day() {
    let defaults = parse(AGENT, Path::new(FILE)).expect("valid");
    assert_eq!(defaults.retention.outbox, Duration::from_secs(30 * 86_400));
    assert_eq!(
        defaults.retention.captures,
        Duration::from_secs(90 * 86_400)
    );

    let text = format!("{AGENT}[retention]\noutbox = \"7d\"\ncaptures = \"1y\"\n");
    let c = parse(&text, Path::new(FILE)).expect("valid");
    assert_eq!(c.retention.outbox, Duration::from_secs(7 * 86_400));
    assert!(c.retention.captures >= Duration::from_secs(365 * 86_400));

    let text = format!("{AGENT}[retention]\noutbox = \"12h\"\n");
    let e = only(&text, K::InvalidValue, "retention.outbox", 5);
    assert!(e.message.contains("from 1d"), "{e}");
    let text = format!("{AGENT}[retention]\naudit = \"30d\"\n");
    let e = only(&text, K::UnknownKey, "retention.audit", 5);
    assert!(e.message.contains("outbox, captures"), "{e}");
}

#[test]
fn interval_schedules_are_spread_by_asset_and_explicit_times_are_kept() {
    use otdrift_config::{schedule_period, spread_schedule};
    let now = chrono::Utc::now();
    // The default, every five minutes at second 0: spread over the five minutes.
    let a = spread_schedule("0 */5 * * * *", "press-7");
    let b = spread_schedule("0 */5 * * * *", "press-8");
    assert_ne!(a, b, "two assets get two offsets");
    assert_eq!(a, spread_schedule("0 */5 * * * *", "press-7"), "stable");
    for s in [&a, &b] {
        assert_eq!(
            schedule_period(s, now),
            Some(Duration::from_secs(300)),
            "{s} keeps the interval"
        );
    }
    let offsets: std::collections::BTreeSet<String> = (0..500)
        .map(|i| spread_schedule("*/10 * * * * *", &format!("plc-{i}")))
        .collect();
    assert_eq!(
        offsets.len(),
        10,
        "500 assets use every second of a 10 s interval"
    );
    assert_eq!(
        schedule_period(&spread_schedule("*/10 * * * * *", "x"), now),
        Some(Duration::from_secs(10))
    );
    let minute = spread_schedule("0 * * * * *", "press-7");
    assert_eq!(schedule_period(&minute, now), Some(Duration::from_secs(60)));
    // Explicit times, lists, ranges and every second stay as written.
    for kept in [
        "0 30 2 * * *",
        "* * * * * *",
        "0,30 * * * * *",
        "0 0 */2 * * *",
        "15 */5 * * * *",
        "*/7 * * * * *",
    ] {
        assert_eq!(spread_schedule(kept, "press-7"), kept);
    }
}

#[test]
fn the_memory_budget_is_a_binary_size_of_at_least_a_mebibyte() {
    let defaults = parse(AGENT, Path::new(FILE)).expect("valid");
    assert_eq!(defaults.agent.memory_budget, None, "sized by the daemon");
    for (written, bytes) in [("\"128MiB\"", 128u64 << 20), ("\"2G\"", 2 << 30)] {
        let text = format!("{AGENT}memory_budget = {written}\n");
        let c = parse(&text, Path::new(FILE)).expect("valid");
        assert_eq!(c.agent.memory_budget, Some(bytes), "{written}");
    }

    let text = format!("{AGENT}memory_budget = \"512KiB\"\n");
    let e = only(&text, K::InvalidValue, "agent.memory_budget", 4);
    assert!(e.message.contains("from 1MiB to 1TiB"), "{e}");
    let text = format!("{AGENT}memory_budget = \"256MB\"\n");
    let e = only(&text, K::InvalidValue, "agent.memory_budget", 4);
    assert!(e.message.contains("unknown unit \"MB\""), "{e}");
    let text = format!("{AGENT}memory_budget = 268435456\n");
    only(&text, K::InvalidValue, "agent.memory_budget", 4);
}

#[test]
fn the_seen_flush_is_a_duration_from_a_second_to_an_hour() {
    let defaults = parse(AGENT, Path::new(FILE)).expect("valid");
    assert_eq!(defaults.agent.seen_flush, Duration::from_secs(60));
    for (written, secs) in [("\"1s\"", 1), ("\"5m\"", 300), ("\"1h\"", 3600)] {
        let text = format!("{AGENT}seen_flush = {written}\n");
        let c = parse(&text, Path::new(FILE)).expect("valid");
        assert_eq!(c.agent.seen_flush, Duration::from_secs(secs), "{written}");
    }
    for written in ["\"500ms\"", "\"2h\"", "\"soon\"", "60"] {
        let text = format!("{AGENT}seen_flush = {written}\n");
        only(&text, K::InvalidValue, "agent.seen_flush", 4);
    }
}

#[test]
fn verify_max_age_is_a_duration_that_defaults_to_35_days() {
    let defaults = parse(AGENT, Path::new(FILE)).expect("valid");
    assert_eq!(
        defaults.agent.verify_max_age,
        Duration::from_secs(35 * 86_400)
    );
    for (written, secs) in [("\"30s\"", 30), ("\"12h\"", 43_200), ("\"35d\"", 3_024_000)] {
        let text = format!("{AGENT}verify_max_age = {written}\n");
        let c = parse(&text, Path::new(FILE)).expect("valid");
        assert_eq!(
            c.agent.verify_max_age,
            Duration::from_secs(secs),
            "{written}"
        );
    }
    for written in ["\"0s\"", "\"4000d\"", "\"monthly\"", "35"] {
        let text = format!("{AGENT}verify_max_age = {written}\n");
        only(&text, K::InvalidValue, "agent.verify_max_age", 4);
    }
}

/// An asset (`body`: its keys and one setpoint) with `[[asset.setpoints.field]]` entries, each
/// given as TOML lines.
fn with_fields(body: &str, fields: &[&str]) -> String {
    let mut text = asset(body);
    for f in fields {
        text.push_str("[[asset.setpoints.field]]\n");
        text.push_str(f);
        text.push('\n');
    }
    text
}

/// A Modbus register range (100-109 of `table`) with fields.
fn modbus_fields(table: &str, fields: &[&str]) -> String {
    with_fields(
        &format!(
            "id = \"p\"\nprotocol = \"modbus\"\naddress = \"10.0.3.10\"\n[[asset.setpoints]]\nname = \"recipe\"\ntable = \"{table}\"\nstart = 100\ncount = 10\n"
        ),
        fields,
    )
}

#[test]
fn modbus_fields_are_typed_registers_inside_their_range() {
    use otdrift_config::{ModbusFieldType, WordOrder};
    let text = modbus_fields(
        "holding",
        &[
            "name = \"fill_temp\"\noffset = 100\ntype = \"f32\"",
            "name = \"total\"\noffset = 106\ntype = \"f64\"\nword_order = \"little\"",
            "name = \"speed\"\noffset = 102\ntype = \"i16\"",
        ],
    );
    let c = parse(&text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
    let ProtocolConfig::Modbus(mb) = &c.assets[0].protocol else {
        panic!("modbus")
    };
    let fields = &mb.setpoints[0].fields;
    let shape: Vec<(&str, u16, ModbusFieldType, WordOrder)> = fields
        .iter()
        .map(|f| (f.name.as_str(), f.offset, f.kind, f.word_order))
        .collect();
    assert_eq!(
        shape,
        [
            ("fill_temp", 100, ModbusFieldType::F32, WordOrder::Big),
            ("speed", 102, ModbusFieldType::I16, WordOrder::Big),
            ("total", 106, ModbusFieldType::F64, WordOrder::Little),
        ],
        "sorted by offset"
    );

    // Past the range (f64 at 108 needs 108..=111; the range ends at 109).
    let past = modbus_fields("holding", &["name = \"x\"\noffset = 108\ntype = \"f64\""]);
    let e = only(
        &past,
        K::InvalidValue,
        "asset[0].setpoints[0].field[0].offset",
        16,
    );
    assert!(
        e.message.contains("outside the range holding 100..=109"),
        "{e}"
    );
    // Before it.
    let before = modbus_fields("holding", &["name = \"x\"\noffset = 99\ntype = \"u16\""]);
    only(
        &before,
        K::InvalidValue,
        "asset[0].setpoints[0].field[0].offset",
        16,
    );
    // Overlapping: the later one is named, with the line of the other.
    let overlap = modbus_fields(
        "holding",
        &[
            "name = \"a\"\noffset = 100\ntype = \"u32\"",
            "name = \"b\"\noffset = 101\ntype = \"u16\"",
        ],
    );
    let e = only(
        &overlap,
        K::InvalidValue,
        "asset[0].setpoints[0].field[1]",
        18,
    );
    assert!(e.message.contains("overlaps field \"a\""), "{e}");
    assert!(e.message.contains("line 14"), "{e}");
    // An unknown type, a bad word order, a name that is a number, an unknown key.
    let bad_type = modbus_fields("holding", &["name = \"x\"\noffset = 100\ntype = \"float\""]);
    let e = only(
        &bad_type,
        K::InvalidValue,
        "asset[0].setpoints[0].field[0].type",
        17,
    );
    assert!(
        e.message
            .contains("expected one of u16, i16, u32, i32, f32, f64"),
        "{e}"
    );
    let bad_order = modbus_fields(
        "holding",
        &["name = \"x\"\noffset = 100\ntype = \"u32\"\nword_order = \"middle\""],
    );
    only(
        &bad_order,
        K::InvalidValue,
        "asset[0].setpoints[0].field[0].word_order",
        18,
    );
    let numeric = modbus_fields("holding", &["name = \"105\"\noffset = 100\ntype = \"u16\""]);
    only(
        &numeric,
        K::InvalidValue,
        "asset[0].setpoints[0].field[0].name",
        15,
    );
    let unknown = modbus_fields(
        "holding",
        &["name = \"x\"\noffset = 100\ntype = \"u16\"\nscale = 10"],
    );
    only(
        &unknown,
        K::UnknownKey,
        "asset[0].setpoints[0].field[0].scale",
        18,
    );
    // Missing keys are reported at the field's header.
    let missing = modbus_fields("holding", &["name = \"x\"\noffset = 100"]);
    only(
        &missing,
        K::MissingKey,
        "asset[0].setpoints[0].field[0].type",
        14,
    );
    // Bits have no fields.
    let coils = modbus_fields("coil", &["name = \"x\"\noffset = 100\ntype = \"u16\""]);
    let e = only(&coils, K::InvalidValue, "asset[0].setpoints[0].field", 14);
    assert!(e.message.contains("a coil range has bits"), "{e}");
}

#[test]
fn a_modbus_field_name_is_unique_within_its_table() {
    let mut text = modbus_fields(
        "holding",
        &["name = \"temp\"\noffset = 100\ntype = \"u16\""],
    );
    text.push_str(
        "[[asset.setpoints]]\nname = \"more\"\ntable = \"holding\"\nstart = 200\ncount = 2\n[[asset.setpoints.field]]\nname = \"temp\"\noffset = 200\ntype = \"u16\"\n",
    );
    let e = only(
        &text,
        K::InvalidValue,
        "asset[0].setpoints[1].field[0].name",
        24,
    );
    assert!(
        e.message
            .contains("already used (line 14): it names the item modbus/holding/temp"),
        "{e}"
    );
}

/// An S7 DB range (DB1 bytes 0-15) with fields.
fn s7_fields(fields: &[&str]) -> String {
    with_fields(
        "id = \"f\"\nprotocol = \"s7\"\naddress = \"10.0.3.20\"\nrack = 0\nslot = 2\n[[asset.setpoints]]\nname = \"recipe\"\ndb = 1\nstart = 0\nsize = 16\n",
        fields,
    )
}

#[test]
fn s7_fields_are_typed_db_values_inside_their_range() {
    use otdrift_config::S7FieldType;
    let text = s7_fields(&[
        "name = \"fill_temp\"\noffset = 4\ntype = \"REAL\"",
        "name = \"label\"\noffset = 8\ntype = \"string[4]\"",
        "name = \"on\"\noffset = 2\nbit = 7\ntype = \"bool\"",
        "name = \"off\"\noffset = 2\nbit = 6\ntype = \"bool\"",
    ]);
    let c = parse(&text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
    let ProtocolConfig::S7(s7) = &c.assets[0].protocol else {
        panic!("s7")
    };
    let shape: Vec<(&str, u32, u8, S7FieldType)> = s7.setpoints[0]
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.offset, f.bit, f.kind))
        .collect();
    assert_eq!(
        shape,
        [
            ("off", 2, 6, S7FieldType::Bool),
            ("on", 2, 7, S7FieldType::Bool),
            ("fill_temp", 4, 0, S7FieldType::Real),
            ("label", 8, 0, S7FieldType::String(4)),
        ]
    );
    // Lines: the first field's header is 16, its keys 17-19.
    let past = s7_fields(&["name = \"x\"\noffset = 12\ntype = \"lreal\""]);
    let e = only(
        &past,
        K::InvalidValue,
        "asset[0].setpoints[0].field[0].offset",
        18,
    );
    assert!(e.message.contains("outside the range DB1 0..=15"), "{e}");
    let overlap = s7_fields(&[
        "name = \"a\"\noffset = 4\ntype = \"dint\"",
        "name = \"b\"\noffset = 6\nbit = 1\ntype = \"bool\"",
    ]);
    let e = only(
        &overlap,
        K::InvalidValue,
        "asset[0].setpoints[0].field[1]",
        20,
    );
    assert!(
        e.message
            .contains("overlaps field \"a\" (dint at 4, line 16)"),
        "{e}"
    );
    let same_bit = s7_fields(&[
        "name = \"a\"\noffset = 2\nbit = 1\ntype = \"bool\"",
        "name = \"b\"\noffset = 2\nbit = 1\ntype = \"bool\"",
    ]);
    only(
        &same_bit,
        K::InvalidValue,
        "asset[0].setpoints[0].field[1]",
        21,
    );
    let bad_type = s7_fields(&["name = \"x\"\noffset = 0\ntype = \"word\""]);
    let e = only(
        &bad_type,
        K::InvalidValue,
        "asset[0].setpoints[0].field[0].type",
        19,
    );
    assert!(e.message.contains("string[N] (N 1-254)"), "{e}");
    let long = s7_fields(&["name = \"x\"\noffset = 0\ntype = \"string[255]\""]);
    only(
        &long,
        K::InvalidValue,
        "asset[0].setpoints[0].field[0].type",
        19,
    );
    let no_bit = s7_fields(&["name = \"x\"\noffset = 0\ntype = \"bool\""]);
    only(
        &no_bit,
        K::MissingKey,
        "asset[0].setpoints[0].field[0].bit",
        16,
    );
    let stray_bit = s7_fields(&["name = \"x\"\noffset = 0\nbit = 2\ntype = \"int\""]);
    only(
        &stray_bit,
        K::InvalidValue,
        "asset[0].setpoints[0].field[0].bit",
        19,
    );
}

#[test]
fn an_s7_layout_is_read_from_the_db_source_export() {
    let dir = tempfile::tempdir().expect("dir");
    let source = dir.path().join("DB1.AWL");
    std::fs::write(
        &source,
        "DATA_BLOCK \"RECIPE\"\nTITLE = 'Filler recipe'\nVERSION : 0.1\n  STRUCT\n   fill_pressure : INT  := 500;\n   fill_time : INT  := 120;\n   fill_temp : REAL  := 7.250000e+001;\n   dose : ARRAY  [1 .. 2 ] OF INT ;\n   far : DINT ;\n  END_STRUCT ;\nBEGIN\nEND_DATA_BLOCK\n",
    )
    .expect("source");
    let text = asset(&format!(
        "id = \"f\"\nprotocol = \"s7\"\naddress = \"10.0.3.20\"\nrack = 0\nslot = 2\n[[asset.setpoints]]\nname = \"recipe\"\ndb = 1\nstart = 0\nsize = 12\nsource = \"{}\"\n",
        source.display()
    ));
    let c = parse(&text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
    let ProtocolConfig::S7(s7) = &c.assets[0].protocol else {
        panic!("s7")
    };
    let names: Vec<(&str, u32)> = s7.setpoints[0]
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.offset))
        .collect();
    // `far` (offset 12) lies beyond the configured 12 bytes: its bytes are not read.
    assert_eq!(
        names,
        [
            ("fill_pressure", 0),
            ("fill_time", 2),
            ("fill_temp", 4),
            ("dose_1", 8),
            ("dose_2", 10)
        ]
    );

    // A source the layout cannot read is an error at `source`, naming the source's line.
    std::fs::write(
        &source,
        "DATA_BLOCK \"RECIPE\"\n  STRUCT\n   a : INT;\n   b : \"UDT_Dose\";\n  END_STRUCT ;\nBEGIN\nEND_DATA_BLOCK\n",
    )
    .expect("source");
    let e = only(&text, K::InvalidValue, "asset[0].setpoints[0].source", 16);
    assert!(
        e.message.contains("DB1.AWL:4: b is of the user type"),
        "{e}"
    );
    let missing = text.replace("DB1.AWL", "DB9.AWL");
    let e = only(
        &missing,
        K::InvalidValue,
        "asset[0].setpoints[0].source",
        16,
    );
    assert!(e.message.contains("cannot read the DB source"), "{e}");
}

#[test]
fn sinks_are_checked_for_their_type_url_and_secrets() {
    let sink = |body: &str| format!("{AGENT}[[sink]]\nname = \"siem\"\n{body}");
    let c = parse(
        &format!(
            "{}\n[[sink]]\nname = \"uns\"\ntype = \"mqtt\"\nurl = \"mqtts://broker.plant:8883\"\nusername = \"gw\"\npassword_file = \"/etc/otdrift/mqtt.pw\"\nca_file = \"/etc/otdrift/ca.pem\"\n",
            sink("type = \"syslog\"\nurl = \"tcp://10.0.0.9:601\"\nformat = \"cef\"\nfacility = \"security\"\n")
        ),
        Path::new(FILE),
    )
    .expect("valid");
    assert_eq!(c.sinks.len(), 2);
    assert_eq!(
        c.sinks[0].kind,
        otdrift_config::SinkKind::Syslog {
            transport: otdrift_config::SyslogTransport::Tcp,
            format: otdrift_config::SyslogFormat::Cef,
            facility: 13,
        }
    );
    assert_eq!(
        (c.sinks[0].host.as_str(), c.sinks[0].port),
        ("10.0.0.9", 601)
    );
    assert_eq!(c.sinks[1].port, 8883);
    // TLS syslog defaults to 6514.
    let tls = parse(
        &sink("type = \"syslog\"\nurl = \"tls://siem.plant\"\n"),
        Path::new(FILE),
    )
    .expect("valid");
    assert_eq!(tls.sinks[0].port, 6514);

    // A scheme of the other type, a path, an unknown type: each names its key and line.
    let text = sink("type = \"syslog\"\nurl = \"mqtt://broker:1883\"\n");
    let e = only(
        &text,
        K::InvalidValue,
        "sink[0].url",
        line_of(&text, "url =", 0),
    );
    assert!(e.message.contains("udp://HOST:PORT"), "{e}");
    let text = sink("type = \"syslog\"\nurl = \"tcp://siem:514/x\"\n");
    only(
        &text,
        K::InvalidValue,
        "sink[0].url",
        line_of(&text, "url =", 0),
    );
    let text = sink("type = \"kafka\"\nurl = \"tcp://siem:514\"\n");
    only(
        &text,
        K::InvalidValue,
        "sink[0].type",
        line_of(&text, "type =", 0),
    );
    // Keys of the other type, and TLS files without TLS.
    let text = sink("type = \"syslog\"\nurl = \"tcp://siem:514\"\nusername = \"x\"\n");
    let e = only(
        &text,
        K::InvalidValue,
        "sink[0].username",
        line_of(&text, "username", 0),
    );
    assert!(e.message.contains("does not apply to a syslog sink"), "{e}");
    let text = sink("type = \"syslog\"\nurl = \"tcp://siem:514\"\nca_file = \"/ca.pem\"\n");
    let e = only(
        &text,
        K::InvalidValue,
        "sink[0].ca_file",
        line_of(&text, "ca_file", 0),
    );
    assert!(e.message.contains("needs a TLS url"), "{e}");
    // A password over plain MQTT needs the opt-out.
    let text = sink(
        "type = \"mqtt\"\nurl = \"mqtt://broker:1883\"\nusername = \"gw\"\npassword_file = \"/pw\"\n",
    );
    let e = only(
        &text,
        K::InvalidValue,
        "sink[0].password_file",
        line_of(&text, "password_file", 0),
    );
    assert!(e.message.contains("cleartext"), "{e}");
    parse(&format!("{text}allow_insecure = true\n"), Path::new(FILE)).expect("opted out");
    // Two sinks with one name.
    let text = format!(
        "{}[[sink]]\nname = \"siem\"\ntype = \"syslog\"\nurl = \"udp://siem:514\"\n",
        sink("type = \"syslog\"\nurl = \"udp://siem:514\"\n")
    );
    only(
        &text,
        K::DuplicateId,
        "sink[1].name",
        line_of(&text, "name = \"siem\"", 1),
    );
}
