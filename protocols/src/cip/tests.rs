//! Unit tests of the collector's pure parsers: tag paths, project name, wall clock, audit
//! value, Read Tag replies and Multiple Service Packet answers. Everything that needs a
//! device is in `protocols/tests/cip.rs`.

use super::*;
use crate::cip::types::SymbolType;

fn names(parts: &[PathPart]) -> Vec<(&str, &[u32])> {
    parts
        .iter()
        .map(|p| (p.name.as_str(), p.indices.as_slice()))
        .collect()
}

#[test]
fn tag_paths_split_into_scope_names_and_indices() {
    let parts = split_tag("Program:Main.Recipe[1,2].Temp").expect("valid");
    assert_eq!(
        names(&parts),
        vec![
            ("Program:Main", &[][..]),
            ("Recipe", &[1, 2][..]),
            ("Temp", &[][..])
        ]
    );
    // The scope prefix is case-insensitive, as Logix names are.
    let parts = split_tag("PROGRAM:Oven.Zone_Temp[ 3 ]").expect("valid");
    assert_eq!(
        names(&parts),
        vec![("Program:Oven", &[][..]), ("Zone_Temp", &[3][..])]
    );
    assert_eq!(
        names(&split_tag("Oven_SP").expect("valid")),
        vec![("Oven_SP", &[][..])]
    );
}

#[test]
fn tag_paths_that_are_no_logix_path_are_refused_with_the_reason() {
    for (text, needle) in [
        ("Program:Main", "Program:<program>.<tag>"),
        ("Recipe..Temp", "empty member name"),
        ("Recipe.", "empty member name"),
        ("Flags.3", "bit access"),
        ("Arr[1", "unclosed index"),
        ("Arr[x]", "bad index"),
        ("Arr[-1]", "bad index"),
        ("Arr[1,]", "bad index"),
    ] {
        let err = split_tag(text)
            .err()
            .unwrap_or_else(|| panic!("{text} is refused"));
        assert!(err.contains(needle), "{text}: {err}");
    }
}

#[test]
fn indices_are_checked_against_the_dimensions_the_tag_list_gives() {
    let mut dims = vec![4, 3];
    apply_indices(&mut dims, &[], "T").expect("no indices: the whole array");
    assert_eq!(dims, vec![4, 3]);
    apply_indices(&mut dims, &[3, 2], "T").expect("in range");
    assert!(dims.is_empty(), "one element is addressed");
    let mut dims = vec![4, 3];
    let err = apply_indices(&mut dims, &[4, 0], "T").expect_err("beyond");
    assert!(err.contains("index 4 of dimension 0 is beyond 4"), "{err}");
    let err = apply_indices(&mut dims, &[1], "T").expect_err("too few");
    assert!(err.contains("2 dimensions, 1 indices"), "{err}");
    let mut scalar = vec![];
    assert!(
        apply_indices(&mut scalar, &[0], "S").is_err(),
        "a scalar has no elements"
    );
}

#[test]
fn prefixes_compare_without_case_and_never_split_a_character() {
    assert_eq!(strip_prefix_ci("program:Main", "Program:"), Some("Main"));
    assert_eq!(strip_prefix_ci("Task:T1", "Program:"), None);
    assert_eq!(strip_prefix_ci("Prog", "Program:"), None);
    // A multi-byte character across the prefix's end is no match, not a panic.
    assert_eq!(strip_prefix_ci("Program\u{e9}x", "Program:"), None);
}

#[test]
fn user_tags_exclude_system_internal_and_module_mapping_symbols() {
    let symbol = |name: &str, kind: u16| Symbol {
        instance: 1,
        name: name.to_owned(),
        kind: SymbolType(kind),
        dims: vec![],
    };
    assert!(is_user_tag(&symbol("Oven_SP", 0x00CA)));
    assert!(is_user_tag(&symbol("Local:1:I", 0x8F00)));
    assert!(!is_user_tag(&symbol("__CIP_Internal", 0x00C4)));
    assert!(!is_user_tag(&symbol("Map:Local", 0x1069)));
    assert!(!is_user_tag(&symbol("Cxn:Standard:1", 0x00C4)));
}

fn cip_string(text: &[u8], trailer: &[u8]) -> Vec<u8> {
    let mut out = (text.len() as u16).to_le_bytes().to_vec();
    out.extend_from_slice(text);
    out.extend_from_slice(trailer);
    out
}

#[test]
fn a_project_name_is_a_logix_name_followed_by_bytes_nobody_documents() {
    assert_eq!(
        parse_project_name(&cip_string(b"Line3_Oven", &[])).as_deref(),
        Some("Line3_Oven")
    );
    // Logix follows the name with more bytes: ignored.
    assert_eq!(
        parse_project_name(&cip_string(b"_Press7", &[1, 2, 3, 4, 5])).as_deref(),
        Some("_Press7")
    );
    let forty = "A".repeat(40);
    assert_eq!(
        parse_project_name(&cip_string(forty.as_bytes(), &[])).as_deref(),
        Some(forty.as_str())
    );
}

#[test]
fn an_answer_that_is_no_project_name_is_detected() {
    // cpppo answers its tag values for a class it does not have: REAL 180.0 then DINT 1200
    // reads as an empty STRING; DINT 1200 first as a STRING far longer than the reply.
    let cpppo_real_first = [0x00, 0x00, 0x34, 0x43, 0xB0, 0x04, 0x00, 0x00];
    let cpppo_dint_first = [0xB0, 0x04, 0x00, 0x00, 0x00, 0x00, 0x34, 0x43];
    for data in [
        &cpppo_real_first[..],
        &cpppo_dint_first[..],
        &[],
        &[5],
        &cip_string(b"", &[])[..],
        &cip_string("A".repeat(41).as_bytes(), &[])[..],
        &cip_string(b"3Line", &[])[..],
        &cip_string(b"Line 3", &[])[..],
        &cip_string(b"Line\x003", &[])[..],
        &cip_string(&[0xC3, 0x28], &[])[..],
    ] {
        assert_eq!(parse_project_name(data), None, "{data:02x?}");
    }
}

#[test]
fn the_wall_clock_is_exactly_one_attribute_0x0b_and_its_microseconds() {
    let mut good = vec![1, 0, 0x0B, 0, 0, 0];
    good.extend_from_slice(&1_700_000_000_000_000u64.to_le_bytes());
    assert_eq!(parse_wall_clock(&good), Ok(1_700_000_000_000_000));
    // cpppo: no count, attribute 0x0B "object does not exist".
    let err = parse_wall_clock(&[0x0B, 0, 0x16, 0]).expect_err("cpppo");
    assert!(err.0.contains("11 attributes answered"), "{err}");
    let mut refused = vec![1, 0, 0x0B, 0, 0x14, 0];
    refused.extend_from_slice(&[0; 8]);
    assert!(parse_wall_clock(&refused).is_err(), "attribute status 0x14");
    let mut other = vec![1, 0, 0x0A, 0, 0, 0];
    other.extend_from_slice(&[0; 8]);
    assert!(parse_wall_clock(&other).is_err(), "another attribute");
    let mut long = good.clone();
    long.push(0);
    assert!(parse_wall_clock(&long).is_err(), "a byte too many");
    assert!(
        parse_wall_clock(&good[..good.len() - 1]).is_err(),
        "a byte short"
    );
}

#[test]
fn the_audit_value_is_a_lint_or_a_dint_pair_shown_as_rockwell_does() {
    let mut lint = vec![0xC5, 0];
    lint.extend_from_slice(&0x0123_4567_89AB_CDEFu64.to_le_bytes());
    assert_eq!(
        audit_from_reply(&lint, false),
        Ok(Value::Text("16#0123_4567_89ab_cdef".to_owned()))
    );
    let mut pair = vec![0xC4, 0];
    pair.extend_from_slice(&0x89AB_CDEFu32.to_le_bytes());
    pair.extend_from_slice(&0x0123_4567u32.to_le_bytes());
    assert_eq!(
        audit_from_reply(&pair, true),
        Ok(Value::Text("16#0123_4567_89ab_cdef".to_owned()))
    );
    assert!(
        audit_from_reply(&lint, true).is_err(),
        "LINT read as a pair"
    );
    assert!(
        audit_from_reply(&pair, false).is_err(),
        "pair read as a LINT"
    );
    let mut long = lint.clone();
    long.push(0);
    assert!(audit_from_reply(&long, false).is_err(), "longer than asked");
    assert!(audit_from_reply(&lint[..6], false).is_err(), "shorter");
}

#[test]
fn read_tag_replies_split_into_type_handle_and_value() {
    assert_eq!(
        split_typed(&[0xCA, 0, 0, 0, 0x34, 0x43]),
        Ok((0x00CA, None, &[0, 0, 0x34, 0x43][..]))
    );
    assert_eq!(
        split_typed(&[0xA0, 0x02, 0xCD, 0x9E, 1, 2]),
        Ok((0x02A0, Some(0x9ECD), &[1, 2][..]))
    );
    assert!(split_typed(&[0xCA]).is_err());
    assert!(
        split_typed(&[0xA0, 0x02, 0xCD]).is_err(),
        "structure without handle"
    );
}

/// A Multiple Service Packet answer holding `replies`, with its offsets as a Logix sets
/// them, or with `shift` added to the last one.
fn msp_answer(replies: &[Vec<u8>], shift: usize) -> Answer {
    let n = replies.len();
    let mut data = (n as u16).to_le_bytes().to_vec();
    let mut offset = 2 + 2 * n;
    for (i, r) in replies.iter().enumerate() {
        let shown = if i + 1 == n { offset + shift } else { offset };
        data.extend_from_slice(&(shown as u16).to_le_bytes());
        offset += r.len();
    }
    for r in replies {
        data.extend_from_slice(r);
    }
    Answer {
        service: 0x8A,
        status: Status {
            general: 0,
            extended: vec![],
        },
        data,
    }
}

fn read_sp() -> Request {
    Request::ReadTag {
        tag: TagAddress::parse("Oven_SP").expect("tag"),
        count: 1,
    }
}

#[test]
fn a_multiple_service_packet_answer_splits_into_one_answer_per_request() {
    let identity = vec![0x81, 0, 0, 0, 1, 0];
    let refused = vec![0xCC, 0, 0x05, 1, 0, 0];
    let answer = msp_answer(&[identity, refused], 0);
    let parts = split_multiple(&answer, &[Request::Identity, read_sp()]).expect("splits");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].data, vec![1, 0]);
    assert_eq!(parts[1].status.general, 0x05);
    assert_eq!(parts[1].status.extended, vec![0]);
}

#[test]
fn a_broken_multiple_service_packet_answer_is_unusable_not_state() {
    let identity = vec![0x81, 0, 0, 0, 1, 0];
    let read = vec![0xCC, 0, 0, 0, 0xCA, 0, 0, 0, 0x34, 0x43];
    let group = [Request::Identity, read_sp()];
    // The last offset points past the end (the simulator's broken-msp quirk).
    let err = split_multiple(
        &msp_answer(&[identity.clone(), read.clone()], 0x100),
        &group,
    )
    .expect_err("offsets do not add up");
    assert!(err.contains("outside"), "{err}");
    // cpppo: an unsupported embedded service empties the whole answer.
    let empty = Answer {
        data: vec![0, 0],
        ..msp_answer(&[], 0)
    };
    assert!(split_multiple(&empty, &group).is_err());
    // Replies in the wrong order: an embedded service that is not the one asked.
    let err = split_multiple(&msp_answer(&[read, identity], 0), &group).expect_err("order");
    assert!(err.contains("embedded reply service"), "{err}");
    // Refused as a whole.
    let whole = Answer {
        status: Status {
            general: 0x08,
            extended: vec![],
        },
        data: vec![],
        service: 0x8A,
    };
    assert!(split_multiple(&whole, &group).is_err());
}

#[test]
fn encapsulation_statuses_are_named_including_cpppos() {
    assert_eq!(encap_status(0x0064), "invalid session handle");
    assert!(encap_status(ENCAP_UNSUPPORTED).contains("service not supported"));
    assert_eq!(encap_status(0x1234), "unknown");
}

#[test]
fn not_available_reasons_name_the_general_status_only() {
    let status = Status {
        general: 0x05,
        extended: vec![0x1234],
    };
    let text = stable_status(&status);
    assert!(text.contains("0x05"), "{text}");
    assert!(
        !text.contains("1234"),
        "extended words vary by firmware: {text}"
    );
}

fn template(instance: u16, name: &str, members: &[(&str, ElementType)]) -> Template {
    Template {
        instance,
        name: name.to_owned(),
        info: types::TemplateInfo {
            definition_words: 0,
            structure_size: 8,
            members: members.len() as u16,
            handle: 0,
        },
        members: members
            .iter()
            .map(|(n, element)| types::Member {
                name: (*n).to_owned(),
                element: *element,
                array: 0,
                bit: None,
                offset: 0,
            })
            .collect(),
    }
}

#[test]
fn a_structure_containing_itself_is_found_directly_or_through_members() {
    let real = ElementType::Atomic(0xCA);
    let mut templates = Templates::new();
    templates.insert(1, template(1, "Zone_t", &[("SP", real)]));
    templates.insert(
        2,
        template(
            2,
            "Recipe_t",
            &[("A", ElementType::Struct(1)), ("B", ElementType::Struct(1))],
        ),
    );
    assert_eq!(
        template_cycle(&templates),
        None,
        "shared members are no cycle"
    );
    let mut direct = templates.clone();
    direct.insert(3, template(3, "Loop_t", &[("Me", ElementType::Struct(3))]));
    assert_eq!(template_cycle(&direct).as_deref(), Some("Loop_t"));
    let mut through = templates;
    through.insert(4, template(4, "A_t", &[("B", ElementType::Struct(5))]));
    through.insert(5, template(5, "B_t", &[("A", ElementType::Struct(4))]));
    assert!(template_cycle(&through).is_some_and(|n| n == "A_t" || n == "B_t"));
}
