//! The simulator over real sockets, with hand-built AMS frames.

use super::*;
use crate::process::testing::{Process, assert_refuses_a_missing_state_file};
use crate::request_log::RequestLog;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const TARGET: [u8; 6] = [5, 80, 201, 232, 1, 1];

fn frame(target: [u8; 6], port: u16, cmd: u16, invoke: u32, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0];
    out.extend_from_slice(&((32 + data.len()) as u32).to_le_bytes());
    out.extend_from_slice(&target);
    out.extend_from_slice(&port.to_le_bytes());
    out.extend_from_slice(&[10, 0, 0, 9, 1, 1]);
    out.extend_from_slice(&32905u16.to_le_bytes());
    out.extend_from_slice(&cmd.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&invoke.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// Sends a frame, returns (AMS error, data).
async fn call(stream: &mut TcpStream, frame: &[u8]) -> (u32, Vec<u8>) {
    stream.write_all(frame).await.expect("send");
    let mut prefix = [0u8; 6];
    stream.read_exact(&mut prefix).await.expect("prefix");
    let len = u32::from_le_bytes([prefix[2], prefix[3], prefix[4], prefix[5]]) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.expect("body");
    assert_eq!(
        u16::from_le_bytes([body[18], body[19]]),
        5,
        "response flags"
    );
    assert_eq!(&body[28..32], &frame[34..38], "invoke id echoed");
    (
        u32::from_le_bytes([body[24], body[25], body[26], body[27]]),
        body[32..].to_vec(),
    )
}

fn read_req(group: u32, offset: u32, len: u32) -> Vec<u8> {
    [group, offset, len]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

async fn demo() -> AdsSimHandle {
    AdsSimulator::start("127.0.0.1:0".parse().expect("addr"), AdsState::demo())
        .await
        .expect("starts")
}

#[tokio::test]
async fn services_answer_and_writes_are_logged_as_writes() {
    let sim = demo().await;
    let mut s = TcpStream::connect(sim.local_addr()).await.expect("connect");
    let (e, info) = call(&mut s, &frame(TARGET, 851, 1, 1, &[])).await;
    assert_eq!(e, 0);
    assert_eq!(&info[..8], &[0, 0, 0, 0, 3, 1, 0xB8, 0x0F]);
    assert!(info[8..].starts_with(b"Plc30 App\0"));
    let (_, state) = call(&mut s, &frame(TARGET, 851, 4, 2, &[])).await;
    assert_eq!(state, vec![0, 0, 0, 0, 5, 0, 0, 0]);
    let (_, symver) = call(&mut s, &frame(TARGET, 851, 2, 3, &read_req(0xF008, 0, 1))).await;
    assert_eq!(symver, vec![0, 0, 0, 0, 1, 0, 0, 0, 3]);
    assert_eq!(sim.request_log().writes(), 0);

    // A Write is applied, like a real PLC, and logged as a write.
    let sym = sim
        .state()
        .symbols
        .iter()
        .find(|s| s.name == "GVL_Recipe.BottlesPerMinute")
        .map(|s| s.offset)
        .expect("symbol");
    let mut write = read_req(MEMORY_GROUP, sym, 2);
    write.extend_from_slice(&250u16.to_le_bytes());
    let (_, result) = call(&mut s, &frame(TARGET, 851, 3, 4, &write)).await;
    assert_eq!(result, vec![0, 0, 0, 0]);
    assert_eq!(
        sim.get("GVL_Recipe.BottlesPerMinute"),
        Some(serde_json::json!(250))
    );
    let (_, _) = call(&mut s, &frame(TARGET, 851, 5, 5, &[6, 0, 0, 0, 0, 0, 0, 0])).await;
    let (_, note) = call(&mut s, &frame(TARGET, 851, 6, 6, &[0; 40])).await;
    assert_eq!(&note[..4], &[0, 0, 0, 0]);
    assert_eq!(sim.request_log().writes(), 3);
    let written: Vec<u16> = sim
        .request_log()
        .entries()
        .iter()
        .filter(|e| e.write)
        .map(|e| e.service)
        .collect();
    assert_eq!(written, vec![3, 5, 6]);
    assert_eq!(
        sim.state().ads_state,
        6,
        "WriteControl took the PLC to STOP"
    );
}

#[tokio::test]
async fn wrong_targets_and_bad_frames_get_ads_errors_not_panics() {
    let sim = demo().await;
    let mut s = TcpStream::connect(sim.local_addr()).await.expect("connect");
    let (e, _) = call(&mut s, &frame([1, 2, 3, 4, 1, 1], 851, 1, 1, &[])).await;
    assert_eq!(e, 0x7);
    let (e, _) = call(&mut s, &frame(TARGET, 852, 1, 2, &[])).await;
    assert_eq!(e, 0x6);
    let (e, _) = call(&mut s, &frame(TARGET, 851, 77, 3, &[])).await;
    assert_eq!(e, 0x8);
    // An AMS header whose data length disagrees with the frame.
    let mut lying = frame(TARGET, 851, 2, 4, &read_req(0xF008, 0, 1));
    lying[26] = 99;
    let (e, _) = call(&mut s, &lying).await;
    assert_eq!(e, 0xE);
    // A Read with a short parameter block.
    let (e, data) = call(&mut s, &frame(TARGET, 851, 2, 5, &[1, 2, 3])).await;
    assert_eq!((e, data), (0, vec![0x05, 0x07, 0, 0]));
    // A sum-read of more than 500 sub-reads.
    let mut sum = read_req(0xF080, 501, 501 * 5);
    sum.extend_from_slice(&((501 * 12) as u32).to_le_bytes());
    for _ in 0..501 {
        sum.extend(read_req(0xF008, 0, 1));
    }
    let (_, data) = call(&mut s, &frame(TARGET, 851, 9, 6, &sum)).await;
    assert_eq!(&data[..4], &[0x05, 0x07, 0, 0]);
    // A frame shorter than an AMS header closes the connection.
    s.write_all(&[0, 0, 4, 0, 0, 0, 1, 2, 3, 4])
        .await
        .expect("send");
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).await.expect("closed"), 0);
    // And a frame announcing 4 GiB too, without the simulator allocating it.
    let mut s = TcpStream::connect(sim.local_addr()).await.expect("connect");
    s.write_all(&[0, 0, 0xff, 0xff, 0xff, 0xff])
        .await
        .expect("send");
    assert_eq!(s.read(&mut buf).await.expect("closed"), 0);
    let names: Vec<String> = sim
        .request_log()
        .entries()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(
        names.iter().filter(|n| *n == "framing_error").count(),
        2,
        "{names:?}"
    );
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test]
async fn sum_reads_follow_each_layout() {
    let sim = demo().await;
    let mut s = TcpStream::connect(sim.local_addr()).await.expect("connect");
    let sum = |g: u32| {
        let mut d = read_req(g, 2, 0);
        d[8..12].copy_from_slice(&(2u32 * 8 + 1 + 4).to_le_bytes());
        d.extend_from_slice(&24u32.to_le_bytes());
        d.extend(read_req(0xF008, 0, 1));
        d.extend(read_req(0x1234, 0, 4));
        d
    };
    let (_, ex) = call(&mut s, &frame(TARGET, 851, 9, 1, &sum(0xF083))).await;
    // result, length, then (err, len) pairs, then the data at the requested lengths.
    assert_eq!(
        ex,
        [
            &[0u8, 0, 0, 0, 21, 0, 0, 0][..],
            &[0, 0, 0, 0, 1, 0, 0, 0],
            &[0x02, 0x07, 0, 0, 0, 0, 0, 0],
            &[3, 0, 0, 0, 0]
        ]
        .concat()
    );
    sim.set_quirk(Quirk::NoSumReadEx, true);
    let (_, refused) = call(&mut s, &frame(TARGET, 851, 9, 2, &sum(0xF083))).await;
    assert_eq!(refused, vec![0x02, 0x07, 0, 0]);
    let (_, plain) = call(&mut s, &frame(TARGET, 851, 9, 3, &sum(0xF080))).await;
    assert_eq!(&plain[8..16], &[0, 0, 0, 0, 0x02, 0x07, 0, 0]);
    assert_eq!(&plain[16..], &[3, 0, 0, 0, 0]);
}

#[tokio::test]
async fn quirks_stall_and_drop() {
    let sim = demo().await;
    sim.set_quirk(Quirk::DropSession, true);
    let mut s = TcpStream::connect(sim.local_addr()).await.expect("connect");
    s.write_all(&frame(TARGET, 851, 1, 1, &[]))
        .await
        .expect("send");
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).await.expect("closed"), 0);
    // One drop only: the next session is served.
    let mut s = TcpStream::connect(sim.local_addr()).await.expect("connect");
    let (e, _) = call(&mut s, &frame(TARGET, 851, 4, 1, &[])).await;
    assert_eq!(e, 0);
    sim.set_quirk(Quirk::Stall, true);
    s.write_all(&frame(TARGET, 851, 4, 2, &[]))
        .await
        .expect("send");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf))
            .await
            .is_err(),
        "a stalled device does not answer"
    );
    let outcomes = outcomes(&sim);
    assert!(outcomes[0].contains("drop-session"), "{outcomes:?}");
    assert!(outcomes[2].contains("stall"), "{outcomes:?}");
}

#[tokio::test]
async fn routes_turn_away_unknown_sources() {
    let mut state = AdsState::demo();
    state.routes = vec![[192, 168, 1, 7, 1, 1]];
    let sim = AdsSimulator::start("127.0.0.1:0".parse().expect("addr"), state)
        .await
        .expect("starts");
    let mut s = TcpStream::connect(sim.local_addr()).await.expect("connect");
    s.write_all(&frame(TARGET, 851, 1, 1, &[]))
        .await
        .expect("send");
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).await.expect("closed"), 0);
    assert!(sim.request_log().entries()[0].outcome.contains("no route"));
}

#[tokio::test]
async fn commands_change_the_program_like_twincat() {
    let sim = demo().await;
    let info = |sim: &AdsSimHandle| -> serde_json::Value {
        serde_json::from_str(&sim.command("info").expect("info")).expect("json")
    };
    let before = info(&sim);
    sim.command("set GVL_Recipe.FillVolume 520").expect("set");
    assert_eq!(
        sim.get("GVL_Recipe.FillVolume"),
        Some(serde_json::json!(520.0))
    );
    sim.command("set GVL_Recipe.Valve.OpenDelay 150")
        .expect("set field");
    sim.command("set GVL_Recipe.Nozzles[4].Enabled true")
        .expect("set element");
    assert!(sim.command("set GVL_Recipe.Mode \"Bogus\"").is_err());
    assert!(sim.command("set GVL_Recipe.Nope 1").is_err());

    sim.command("online-change add GVL_Recipe.RinseTime TIME = 1500")
        .expect("online change");
    let after = info(&sim);
    assert_eq!(
        after["symbol_version"], before["symbol_version"],
        "an online change keeps the symbol version"
    );
    assert_eq!(after["online_change_count"], 1);
    assert_ne!(after["app_timestamp"], before["app_timestamp"]);
    assert_eq!(
        after["symbols"].as_u64(),
        before["symbols"].as_u64().map(|n| n + 1)
    );
    assert_eq!(
        sim.get("GVL_Recipe.RinseTime"),
        Some(serde_json::json!(1500))
    );

    sim.command("download").expect("download");
    let back = info(&sim);
    assert_eq!(back["symbols"], before["symbols"]);
    assert_eq!(back["online_change_count"], 0);
    assert_eq!(back["app_timestamp"], before["app_timestamp"]);
    assert_eq!(
        back["symbol_version"].as_u64(),
        before["symbol_version"].as_u64().map(|v| v + 1)
    );
    // PERSISTENT values survive the download.
    assert_eq!(
        sim.get("GVL_Recipe.FillVolume"),
        Some(serde_json::json!(520.0))
    );

    sim.command("tick 3").expect("tick");
    assert_eq!(sim.get("MAIN.nBottleCount"), Some(serde_json::json!(3)));
    sim.command("restart").expect("restart");
    assert_eq!(sim.get("MAIN.nBottleCount"), Some(serde_json::json!(0)));
    assert!(sim.command("quirk no-sum on").is_ok());
    assert!(
        sim.command("quirk")
            .expect("list")
            .contains("\"no-sum\":true")
    );
    assert!(matches!(
        sim.command("bogus"),
        Err(CommandError::Unknown(_))
    ));
    assert_eq!(sim.request_log().total(), 0, "commands are not requests");
}

#[tokio::test]
async fn run_prints_ready_lines_and_serves_the_control_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("requests.jsonl");
    let mut process = Process::<AdsSimulator>::start(log_path.clone()).await;
    assert_eq!(
        process.send(&["set GVL_Recipe.FillVolume 510"]).await,
        ["ok"]
    );
    let mut s = TcpStream::connect(process.served)
        .await
        .expect("ads connect");
    let (e, _) = call(&mut s, &frame(TARGET, 851, 4, 1, &[])).await;
    assert_eq!(e, 0);
    process.stop().await;
    let logged = RequestLog::read_json_lines(&log_path).expect("request log file");
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].protocol, "ads");
    assert_eq!(logged[0].name, "read_state");
}

#[tokio::test]
async fn run_refuses_a_bad_state_file() {
    assert_refuses_a_missing_state_file::<AdsSimulator>().await;
}

/// The result field of an answer.
fn result_of(data: &[u8]) -> u32 {
    u32::from_le_bytes([data[0], data[1], data[2], data[3]])
}

#[tokio::test]
async fn refusing_quirks_answer_with_their_codes_and_change_nothing() {
    let sim = demo().await;
    let mut s = TcpStream::connect(sim.local_addr()).await.expect("connect");
    sim.command("quirk refuse-all on").expect("refuse-all");
    for (cmd, data) in [(1u16, vec![]), (4, vec![]), (2, read_req(0xF008, 0, 1))] {
        let (e, answer) = call(&mut s, &frame(TARGET, 851, cmd, 1, &data)).await;
        assert_eq!((e, result_of(&answer)), (0, 0x701), "command {cmd}");
    }
    sim.command("quirk refuse-all on 0x710")
        .expect("refuse-all 0x710");
    let (_, answer) = call(&mut s, &frame(TARGET, 851, 1, 2, &[])).await;
    assert_eq!(result_of(&answer), 0x710);
    // A refused Write changes nothing, but is still logged as a write.
    let offset = sim
        .state()
        .symbol_offset("GVL_Recipe.BottlesPerMinute")
        .expect("offset");
    let mut write = read_req(MEMORY_GROUP, offset, 2);
    write.extend_from_slice(&7u16.to_le_bytes());
    let (_, answer) = call(&mut s, &frame(TARGET, 851, 3, 3, &write)).await;
    assert_eq!(result_of(&answer), 0x710);
    assert_eq!(
        sim.get("GVL_Recipe.BottlesPerMinute"),
        Some(serde_json::json!(240))
    );
    assert_eq!(sim.request_log().writes(), 1);
    // Busy wins over refuse-all; off serves again.
    sim.command("quirk busy on").expect("busy");
    let (_, answer) = call(&mut s, &frame(TARGET, 851, 4, 4, &[])).await;
    assert_eq!(result_of(&answer), 0x708);
    sim.command("quirk busy off").expect("busy off");
    sim.command("quirk refuse-all off").expect("refuse-all off");
    let (_, answer) = call(&mut s, &frame(TARGET, 851, 4, 5, &[])).await;
    assert_eq!(answer, vec![0, 0, 0, 0, 5, 0, 0, 0]);
    assert!(sim.command("quirk refuse-all on 0").is_err());
    assert!(sim.command("quirk refuse-all on bogus").is_err());
    assert!(sim.command("quirk busy on 0x708").is_err());
    let outcomes = outcomes(&sim);
    assert!(outcomes[0].contains("0x701"), "{outcomes:?}");
    assert!(outcomes[5].contains("device busy"), "{outcomes:?}");
}

#[tokio::test]
async fn refuse_symbol_refuses_its_memory_handle_and_info_only() {
    let sim = demo().await;
    let mut s = TcpStream::connect(sim.local_addr()).await.expect("connect");
    let state = sim.state();
    let fill = state
        .symbol_offset("GVL_Recipe.FillVolume")
        .expect("offset");
    let bpm = state
        .symbol_offset("GVL_Recipe.BottlesPerMinute")
        .expect("offset");
    assert!(
        sim.command("quirk refuse-symbol on GVL_Recipe.Nope")
            .is_err()
    );
    assert!(sim.command("quirk refuse-symbol on").is_err());
    sim.command("quirk refuse-symbol on gvl_recipe.fillvolume")
        .expect("refuse-symbol");
    let (_, answer) = call(
        &mut s,
        &frame(TARGET, 851, 2, 1, &read_req(MEMORY_GROUP, fill, 4)),
    )
    .await;
    assert_eq!(result_of(&answer), 0x710);
    // A read overlapping it by one byte is refused too; a read beside it is not.
    let (_, answer) = call(
        &mut s,
        &frame(TARGET, 851, 2, 2, &read_req(MEMORY_GROUP, fill + 3, 1)),
    )
    .await;
    assert_eq!(result_of(&answer), 0x710);
    let (_, answer) = call(
        &mut s,
        &frame(TARGET, 851, 2, 3, &read_req(MEMORY_GROUP, bpm, 2)),
    )
    .await;
    assert_eq!(result_of(&answer), 0);
    let by_name = |g: u32, name: &str| {
        let mut d = read_req(g, 0, 1024);
        d.extend_from_slice(&((name.len() + 1) as u32).to_le_bytes());
        d.extend_from_slice(name.as_bytes());
        d.push(0);
        d
    };
    for g in [0xF009, 0xF003] {
        let (_, answer) = call(
            &mut s,
            &frame(TARGET, 851, 9, 4, &by_name(g, "GVL_Recipe.FillVolume")),
        )
        .await;
        assert_eq!(result_of(&answer), 0x710, "group 0x{g:X}");
    }
    // Inside a sum-read, with another code.
    sim.refuse_symbol("GVL_Recipe.FillVolume", 0x70A)
        .expect("refuse-symbol");
    let mut sum = read_req(0xF083, 2, 2 * 8 + 4 + 2);
    sum.extend_from_slice(&24u32.to_le_bytes());
    sum.extend(read_req(MEMORY_GROUP, fill, 4));
    sum.extend(read_req(MEMORY_GROUP, bpm, 2));
    let (_, answer) = call(&mut s, &frame(TARGET, 851, 9, 5, &sum)).await;
    assert_eq!(&answer[8..12], &0x70Au32.to_le_bytes());
    assert_eq!(&answer[16..20], &[0, 0, 0, 0]);
    // The symbol table still lists it.
    assert!(
        sim.command("symbols GVL_Recipe.FillVolume")
            .expect("symbols")
            .contains("FillVolume")
    );
    sim.command("quirk refuse-symbol off").expect("off");
    let (_, answer) = call(
        &mut s,
        &frame(TARGET, 851, 2, 6, &read_req(MEMORY_GROUP, fill, 4)),
    )
    .await;
    assert_eq!(result_of(&answer), 0);
    assert_eq!(sim.request_log().writes(), 0);
}

/// Reads upload info 2 and the two tables: (symbol count, symbol bytes, data-type count,
/// data-type bytes, symbol table, data-type table).
async fn upload(s: &mut TcpStream) -> (u32, u32, u32, u32, Vec<u8>, Vec<u8>) {
    let (_, info) = call(s, &frame(TARGET, 851, 2, 1, &read_req(0xF00F, 0, 64))).await;
    let field = |i: usize| u32::from_le_bytes(info[8 + 4 * i..12 + 4 * i].try_into().expect("u32"));
    let (n, bytes, dn, dbytes) = (field(0), field(1), field(2), field(3));
    let (_, symbols) = call(s, &frame(TARGET, 851, 2, 2, &read_req(0xF00B, 0, bytes))).await;
    let (_, types) = call(s, &frame(TARGET, 851, 2, 3, &read_req(0xF00E, 0, dbytes))).await;
    (n, bytes, dn, dbytes, symbols, types)
}

#[tokio::test]
async fn table_quirks_keep_or_break_the_upload_info_on_purpose() {
    let sim = demo().await;
    let mut s = TcpStream::connect(sim.local_addr()).await.expect("connect");
    let (n, bytes, dn, dbytes, _, types) = upload(&mut s).await;
    assert_eq!(types.len() - 8, dbytes as usize);

    // The self-referencing type is in the table and in its counts: they still add up.
    sim.set_quirk(Quirk::SelfReferencingType, true);
    let (n2, bytes2, dn2, dbytes2, _, looped) = upload(&mut s).await;
    assert_eq!((n2, bytes2, dn2), (n, bytes, dn + 1));
    assert_eq!(looped.len() - 8, dbytes2 as usize);
    let extra = &looped[8 + dbytes as usize..];
    assert_eq!(
        extra.windows(7).filter(|w| *w == b"ST_Loop").count(),
        2,
        "its name, and its field's type"
    );
    sim.set_quirk(Quirk::SelfReferencingType, false);

    // One symbol more announced than listed.
    sim.set_quirk(Quirk::UploadInfoMismatch, true);
    let (n3, bytes3, ..) = upload(&mut s).await;
    assert_eq!((n3, bytes3), (n + 1, bytes));
    sim.set_quirk(Quirk::UploadInfoMismatch, false);

    // The tables refused while the upload info announces them.
    sim.set_quirk(Quirk::NoTableUpload, true);
    let (n4, _, _, _, symbols, types) = upload(&mut s).await;
    assert_eq!(n4, n);
    assert_eq!(result_of(&symbols), 0x701);
    assert_eq!(result_of(&types), 0x701);
    sim.set_quirk(Quirk::NoTableUpload, false);

    sim.set_quirk(Quirk::NoReadState, true);
    let (_, state) = call(&mut s, &frame(TARGET, 851, 4, 9, &[])).await;
    assert_eq!(result_of(&state), 0x701);
    sim.set_quirk(Quirk::NoReadState, false);

    // Sub-reads of memory fail inside a sum-read, not alone.
    sim.set_quirk(Quirk::SumReadSubError, true);
    let fill = sim
        .state()
        .symbol_offset("GVL_Recipe.FillVolume")
        .expect("offset");
    let mut sum = read_req(0xF083, 2, 2 * 8 + 4 + 1);
    sum.extend_from_slice(&24u32.to_le_bytes());
    sum.extend(read_req(MEMORY_GROUP, fill, 4));
    sum.extend(read_req(0xF008, 0, 1));
    let (_, answer) = call(&mut s, &frame(TARGET, 851, 9, 10, &sum)).await;
    assert_eq!(&answer[8..12], &0x70Au32.to_le_bytes());
    assert_eq!(&answer[16..20], &[0, 0, 0, 0]);
    let (_, alone) = call(
        &mut s,
        &frame(TARGET, 851, 2, 11, &read_req(MEMORY_GROUP, fill, 4)),
    )
    .await;
    assert_eq!(&alone[8..], &500.0f32.to_le_bytes());
    assert_eq!(sim.request_log().writes(), 0);
}

#[test]
fn quirks_load_from_the_state_file() {
    let state = AdsState::from_toml(
        "[[symbol]]\nname = \"GVL.a\"\ntype = \"INT\"\n[quirks]\nrefuse_all = 0x710\nbusy = true\nrefuse_symbol = { name = \"GVL.a\" }\n",
    )
    .expect("state");
    assert_eq!(state.quirks.refuse_all(), Some(0x710));
    assert!(state.quirks.get(Quirk::Busy));
    assert_eq!(
        state.quirks.refuse_symbol(),
        Some(&RefusedSymbol {
            name: "GVL.a".into(),
            code: 0x710
        })
    );
    assert!(AdsState::from_toml("[quirks]\nrefuse_symbol = { name = \"x\", colour = 1 }").is_err());
}

/// The outcome of every request the simulator logged, in order.
fn outcomes(sim: &AdsSimHandle) -> Vec<String> {
    sim.request_log()
        .entries()
        .iter()
        .map(|e| e.outcome.clone())
        .collect()
}
