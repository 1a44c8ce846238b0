//! `docs/reference/config.md` lists every key the validator accepts, in the table of the
//! section it belongs to, and its example is a config the validator accepts.

use std::collections::BTreeMap;

const DOC: &str = include_str!("../../docs/reference/config.md");

/// The rows of every Markdown table under `heading` (up to the next heading of that level),
/// cells trimmed; a row whose first cell is empty belongs to the group above it.
fn table(heading: &str) -> Vec<(String, Vec<String>)> {
    let start = DOC
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no {heading:?} in the config reference"));
    let level = heading.split(' ').next().unwrap_or("##");
    let body = &DOC[start + heading.len() + 2..];
    let end = body.find(&format!("\n{level} ")).unwrap_or(body.len());
    let mut group = String::new();
    let mut rows = Vec::new();
    for line in body[..end].lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_owned())
            .collect();
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ' '))
        {
            continue;
        }
        if !cells[0].is_empty() {
            group.clone_from(&cells[0]);
        }
        rows.push((group.clone(), cells));
    }
    rows
}

fn documented(rows: &[(String, Vec<String>)], group: &str, column: usize) -> String {
    rows.iter()
        .filter(|(g, _)| g == group)
        .filter_map(|(_, cells)| cells.get(column).cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_accepted_key_is_in_the_reference() {
    let sections = table("## Sections");
    let assets = table("## Assets");
    let setpoints = table("## Setpoints");
    let top = DOC
        .lines()
        .find(|l| l.starts_with("Top-level keys are"))
        .map(|l| {
            // The sentence runs on to the next line.
            let i = DOC.find(l).unwrap_or(0);
            DOC[i..].split("\n\n").next().unwrap_or_default().to_owned()
        })
        .unwrap_or_default();
    let mut missing = BTreeMap::new();
    for (table_name, keys) in otdrift_config::accepted_keys() {
        let text = match table_name.as_str() {
            "top level" => top.clone(),
            "[[asset]]" => {
                documented(&assets, "", 0)
                    + &assets
                        .iter()
                        .map(|(_, c)| c[0].clone())
                        .collect::<Vec<_>>()
                        .join(" ")
            }
            "[[asset]] maintenance" => assets
                .iter()
                .find(|(_, c)| c[0] == "`maintenance`")
                .map(|(_, c)| c.join(" "))
                .unwrap_or_default(),
            name if name.starts_with("[[asset]] ") => {
                let protocol = &name["[[asset]] ".len()..];
                documented(&assets, protocol, 1)
            }
            name if name.starts_with("[[asset.setpoints]] ") => {
                let protocol = &name["[[asset.setpoints]] ".len()..];
                documented(&setpoints, protocol, 1)
            }
            name => documented(&sections, &format!("`{name}`"), 1),
        };
        for key in keys {
            // Keys every setpoint has (`name`) or every asset has are described in prose.
            if table_name.starts_with("[[asset.setpoints]]") && *key == "name" {
                continue;
            }
            if !text.contains(&format!("`{key}`")) {
                missing
                    .entry(table_name.clone())
                    .or_insert_with(Vec::new)
                    .push(*key);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/reference/config.md does not list: {missing:?}"
    );
}

#[test]
fn the_reference_example_is_a_valid_config() {
    let start = DOC.find("```toml\n").expect("an example") + "```toml\n".len();
    let end = start + DOC[start..].find("```").expect("its end");
    let example = &DOC[start..end];
    // The example's token files and addresses are placeholders; it must parse as written.
    if let Err(e) = otdrift_config::parse(example, "example.toml".as_ref()) {
        panic!("the reference's example does not validate:\n{e}");
    }
}
