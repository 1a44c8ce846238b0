//! A DB's layout from the engineering tool's source export: a STEP 7 (`.AWL`) or TIA Portal
//! (`.db`) `DATA_BLOCK` with a `STRUCT ... END_STRUCT` declaration, so nobody types offsets by
//! hand. The offsets are the standard-access ("non-optimized") layout S7comm reads:
//!
//! - BOOLs pack into bytes, bit 0 first; BYTE, CHAR, SINT and USINT take the next whole byte;
//! - every other type, every STRUCT and every ARRAY starts at an even byte, and a STRUCT or
//!   ARRAY is padded to an even size;
//! - STRING[N] is N + 2 bytes (STRING alone is STRING[254]).
//!
//! Members of a type [`S7FieldType`] decodes become fields named after their path (`dosing.speed`
//! is `dosing_speed`, `flags[3]` is `flags_3`); the others (BYTE, CHAR, DATE_AND_TIME, LINT...)
//! keep their bytes as byte items, but their size still counts. An optimized DB
//! (`S7_Optimized_Access := 'TRUE'`) has no fixed offsets and cannot be read by address at all;
//! a DB typed by a UDT, FB or SFB, a UDT member, or a type not listed here is an error naming
//! the line, never a guess.

use super::s7::{S7Field, S7FieldType};

/// Most members one source may declare (array elements counted): a DB of 64 KiB holds at most
/// 524 288 BOOLs; a larger count is not a DB S7comm can read.
const MAX_MEMBERS: usize = 600_000;
/// Deepest STRUCT nesting taken.
const MAX_DEPTH: usize = 16;

/// A problem in the source, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, SourceError> {
    Err(SourceError {
        line,
        message: message.into(),
    })
}

/// The declaration part's tokens with their lines: identifiers, numbers, strings (kept whole)
/// and punctuation; comments (`//`, `(* *)`) and `{ ... }` attribute blocks outside the
/// `DATA_BLOCK` header are dropped.
fn tokens(text: &str) -> Result<Vec<(usize, String)>, SourceError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '(' && chars.get(i + 1) == Some(&'*') {
            let start = line;
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == ')') {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            if i + 1 >= chars.len() {
                return err(start, "a (* comment is never closed");
            }
            i += 2;
        } else if c == '\'' || c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != c && chars[i] != '\n' {
                i += 1;
            }
            if i >= chars.len() || chars[i] != c {
                return err(line, "a quoted name or text is never closed");
            }
            i += 1;
            out.push((line, chars[start..i].iter().collect()));
        } else if c.is_alphanumeric() || c == '_' || c == '#' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '#' | '.' | '+' | '-'))
            {
                // `..` in ARRAY bounds is punctuation, not part of a number.
                if chars[i] == '.' && chars.get(i + 1) == Some(&'.') {
                    break;
                }
                if matches!(chars[i], '+' | '-')
                    && !matches!(chars.get(i.wrapping_sub(1)), Some('e' | 'E'))
                {
                    break;
                }
                i += 1;
            }
            out.push((line, chars[start..i].iter().collect()));
        } else if c == '.' && chars.get(i + 1) == Some(&'.') {
            out.push((line, "..".to_owned()));
            i += 2;
        } else if c == ':' && chars.get(i + 1) == Some(&'=') {
            out.push((line, ":=".to_owned()));
            i += 2;
        } else {
            out.push((line, c.to_string()));
            i += 1;
        }
    }
    Ok(out)
}

/// An elementary type: its size in bytes (BOOL: 0, it takes a bit) and its field type, when
/// one decodes it.
fn elementary(name: &str, len: Option<u16>) -> Option<(u32, Option<S7FieldType>, bool)> {
    let upper = name.to_ascii_uppercase();
    // (size, field type, byte-aligned only)
    Some(match upper.as_str() {
        "BOOL" => (0, Some(S7FieldType::Bool), true),
        "BYTE" | "CHAR" | "SINT" | "USINT" => (1, None, true),
        "INT" => (2, Some(S7FieldType::Int), false),
        "WORD" | "UINT" | "S5TIME" | "DATE" => (2, Some(S7FieldType::Uint), false),
        "DINT" | "TIME" => (4, Some(S7FieldType::Dint), false),
        "DWORD" | "UDINT" | "TIME_OF_DAY" | "TOD" => (4, Some(S7FieldType::Udint), false),
        "REAL" => (4, Some(S7FieldType::Real), false),
        "LREAL" => (8, Some(S7FieldType::Lreal), false),
        "LINT" | "ULINT" | "LWORD" | "DATE_AND_TIME" | "DT" => (8, None, false),
        "DTL" => (12, None, false),
        "STRING" => {
            let n = len.unwrap_or(254);
            let n8 = u8::try_from(n).ok().filter(|n| (1..=254).contains(n))?;
            (u32::from(n) + 2, Some(S7FieldType::String(n8)), false)
        }
        _ => return None,
    })
}

/// The layout as it is computed: the next free bit.
struct Cursor {
    bit: u64,
    fields: Vec<S7Field>,
    members: usize,
}

impl Cursor {
    fn align_byte(&mut self) {
        self.bit = self.bit.div_ceil(8) * 8;
    }

    fn align_even(&mut self) {
        self.bit = self.bit.div_ceil(16) * 16;
    }
}

struct Parser<'t> {
    toks: &'t [(usize, String)],
    at: usize,
}

impl Parser<'_> {
    fn line(&self) -> usize {
        self.toks
            .get(self.at)
            .or_else(|| self.toks.last())
            .map_or(1, |t| t.0)
    }

    fn peek(&self) -> Option<&str> {
        self.toks.get(self.at).map(|t| t.1.as_str())
    }

    fn is(&self, word: &str) -> bool {
        self.peek().is_some_and(|t| t.eq_ignore_ascii_case(word))
    }

    fn next(&mut self) -> Result<(usize, String), SourceError> {
        let line = self.line();
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t.map_or_else(|| err(line, "the source ends inside the declaration"), Ok)
    }

    fn expect(&mut self, word: &str) -> Result<(), SourceError> {
        let (line, t) = self.next()?;
        if t.eq_ignore_ascii_case(word) {
            Ok(())
        } else {
            err(line, format!("expected {word}, found {t:?}"))
        }
    }

    fn number(&mut self) -> Result<i64, SourceError> {
        let (line, t) = self.next()?;
        t.parse()
            .or_else(|_| err(line, format!("expected a number, found {t:?}")))
    }

    /// Skips an initial value (`:= ...`) up to the `;` that ends the member.
    fn skip_to_semicolon(&mut self) -> Result<(), SourceError> {
        while !self.is(";") {
            self.next()?;
        }
        self.next().map(|_| ())
    }

    /// `STRUCT members END_STRUCT`, the cursor at the STRUCT keyword's next token.
    fn members(&mut self, c: &mut Cursor, prefix: &str, depth: usize) -> Result<(), SourceError> {
        if depth > MAX_DEPTH {
            return err(
                self.line(),
                format!("STRUCTs nested deeper than {MAX_DEPTH}"),
            );
        }
        loop {
            if self.is("END_STRUCT") {
                self.next()?;
                if self.is(";") {
                    self.next()?;
                }
                return Ok(());
            }
            let (line, name) = self.next()?;
            let name = name.trim_matches('"').to_owned();
            if name.is_empty() || !name.chars().all(|ch| ch.is_alphanumeric() || ch == '_') {
                return err(line, format!("{name:?} is not a member name"));
            }
            // Attributes after the name (`{ S7_SetPoint := 'True' }`) are not layout.
            if self.is("{") {
                while !self.is("}") {
                    self.next()?;
                }
                self.next()?;
            }
            self.expect(":")?;
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}_{name}")
            };
            self.member(c, &path, depth)?;
            if self.is(":=") {
                self.skip_to_semicolon()?;
            } else if self.is(";") {
                self.next()?;
            }
        }
    }

    /// One member's type at the cursor, placed at `c`.
    fn member(&mut self, c: &mut Cursor, path: &str, depth: usize) -> Result<(), SourceError> {
        c.members += 1;
        if c.members > MAX_MEMBERS {
            return err(self.line(), format!("more than {MAX_MEMBERS} members"));
        }
        let (line, ty) = self.next()?;
        if ty.eq_ignore_ascii_case("STRUCT") {
            c.align_even();
            self.members(c, path, depth + 1)?;
            c.align_even();
            return Ok(());
        }
        if ty.eq_ignore_ascii_case("ARRAY") {
            self.expect("[")?;
            let lo = self.number()?;
            self.expect("..")?;
            let hi = self.number()?;
            if self.is(",") {
                return err(
                    line,
                    "multi-dimensional ARRAYs are not supported; declare one dimension",
                );
            }
            self.expect("]")?;
            self.expect("OF")?;
            if hi < lo || hi - lo >= MAX_MEMBERS as i64 {
                return err(
                    line,
                    format!("ARRAY [{lo}..{hi}] has no or too many elements"),
                );
            }
            c.align_even();
            let element_at = self.at;
            for i in lo..=hi {
                self.at = element_at;
                let index = if i < 0 {
                    format!("m{}", -i)
                } else {
                    i.to_string()
                };
                self.member(c, &format!("{path}_{index}"), depth + 1)?;
            }
            c.align_even();
            return Ok(());
        }
        if ty.starts_with('"') {
            return err(
                line,
                format!(
                    "{path} is of the user type {ty}: export the DB with the type's members written out (or lay the fields out by hand)"
                ),
            );
        }
        let len = if ty.eq_ignore_ascii_case("STRING") && self.is("[") {
            self.next()?;
            let n = self.number()?;
            self.expect("]")?;
            Some(u16::try_from(n).unwrap_or(u16::MAX))
        } else {
            None
        };
        let Some((size, kind, byte_aligned)) = elementary(&ty, len) else {
            return err(
                line,
                format!(
                    "{path}: {ty} is not a type this layout knows (BOOL, BYTE, CHAR, SINT, USINT, INT, UINT, WORD, S5TIME, DATE, DINT, UDINT, DWORD, TIME, TIME_OF_DAY, REAL, LREAL, LINT, ULINT, LWORD, DATE_AND_TIME, DTL, STRING[N] with N 1-254)"
                ),
            );
        };
        if size == 0 {
            // BOOL: the next bit.
            let at = c.bit;
            if let Some(kind) = kind {
                c.fields
                    .push(field(path, at / 8, (at % 8) as u8, kind, line)?);
            }
            c.bit += 1;
            return Ok(());
        }
        if byte_aligned {
            c.align_byte();
        } else {
            c.align_even();
        }
        if let Some(kind) = kind {
            c.fields.push(field(path, c.bit / 8, 0, kind, line)?);
        }
        c.bit += u64::from(size) * 8;
        Ok(())
    }
}

fn field(
    path: &str,
    byte: u64,
    bit: u8,
    kind: S7FieldType,
    line: usize,
) -> Result<S7Field, SourceError> {
    let Ok(offset) = u32::try_from(byte) else {
        return err(
            line,
            format!("{path} lies beyond the 2 MiB S7comm can address"),
        );
    };
    if path.len() > 64 {
        return err(
            line,
            format!(
                "{path}: the member's path is longer than 64 characters, the longest field name"
            ),
        );
    }
    Ok(S7Field {
        name: path.to_owned(),
        offset,
        bit,
        kind,
    })
}

/// The fields a DB source declares, in declaration order, with their standard-access
/// offsets; and the DB's size in bytes.
pub(crate) fn layout(text: &str) -> Result<(Vec<S7Field>, u32), SourceError> {
    let toks = tokens(text)?;
    let mut p = Parser { toks: &toks, at: 0 };
    // The header: DATA_BLOCK name, then anything up to STRUCT; an optimized DB is refused, a
    // DB typed by a UDT or FB (`DATA_BLOCK "x" "UDT_y"`, `... : "UDT"`) has no STRUCT of its own.
    while !p.is("DATA_BLOCK") {
        if p.peek().is_none() {
            return err(1, "no DATA_BLOCK in the source");
        }
        p.next()?;
    }
    let header = p.line();
    p.next()?;
    let _name = p.next()?;
    loop {
        if p.peek().is_none() {
            return err(
                header,
                "the DATA_BLOCK has no STRUCT declaration (a DB typed by a UDT or FB: export the type's members, or lay the fields out by hand)",
            );
        }
        if p.is("S7_Optimized_Access") {
            let line = p.line();
            p.next()?;
            p.expect(":=")?;
            let (_, v) = p.next()?;
            if v.trim_matches('\'').eq_ignore_ascii_case("TRUE") {
                return err(
                    line,
                    "an optimized DB (S7_Optimized_Access := 'TRUE') has no fixed offsets and cannot be read by address; switch the DB to standard access",
                );
            }
            continue;
        }
        if p.is("BEGIN") || p.is("END_DATA_BLOCK") {
            return err(
                p.line(),
                "the DATA_BLOCK has no STRUCT declaration (a DB typed by a UDT or FB: export the type's members, or lay the fields out by hand)",
            );
        }
        if p.is("STRUCT") {
            p.next()?;
            break;
        }
        p.next()?;
    }
    let mut c = Cursor {
        bit: 0,
        fields: Vec::new(),
        members: 0,
    };
    p.members(&mut c, "", 0)?;
    c.align_even();
    let size = u32::try_from(c.bit / 8).unwrap_or(u32::MAX);
    Ok((c.fields, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIC: &str = r#"DATA_BLOCK "RECIPE"
TITLE = 'Filler recipe'
AUTHOR : LINE3
VERSION : 0.1

  STRUCT
   fill_pressure : INT  := 500;	//bar * 100
   fill_time : INT  := 120;
   fill_temp : REAL  := 7.250000e+001;	(* degrees C *)
   enabled : BOOL  := TRUE;
   purge : BOOL ;
   code : BYTE ;
   product : STRING  [8 ] := 'COLA';
   dosing : STRUCT
    speed : INT ;
    pumps : ARRAY  [1 .. 3 ] OF BOOL ;
   END_STRUCT ;
   limit : DINT ;
  END_STRUCT ;
BEGIN
   fill_pressure := 500;
END_DATA_BLOCK
"#;

    #[test]
    fn a_step7_source_gives_the_standard_offsets() {
        let (fields, size) = layout(CLASSIC).expect("layout");
        let got: Vec<(&str, u32, u8, S7FieldType)> = fields
            .iter()
            .map(|f| (f.name.as_str(), f.offset, f.bit, f.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("fill_pressure", 0, 0, S7FieldType::Int),
                ("fill_time", 2, 0, S7FieldType::Int),
                ("fill_temp", 4, 0, S7FieldType::Real),
                ("enabled", 8, 0, S7FieldType::Bool),
                ("purge", 8, 1, S7FieldType::Bool),
                // code: BYTE at 9 (no field); the STRING starts at the next even byte.
                ("product", 10, 0, S7FieldType::String(8)),
                ("dosing_speed", 20, 0, S7FieldType::Int),
                ("dosing_pumps_1", 22, 0, S7FieldType::Bool),
                ("dosing_pumps_2", 22, 1, S7FieldType::Bool),
                ("dosing_pumps_3", 22, 2, S7FieldType::Bool),
                ("limit", 24, 0, S7FieldType::Dint),
            ]
        );
        assert_eq!(size, 28);
    }

    #[test]
    fn a_tia_source_with_standard_access_is_read_and_an_optimized_one_refused() {
        let tia = "DATA_BLOCK \"Recipe\"\n{ S7_Optimized_Access := 'FALSE' }\nVERSION : 0.1\nNON_RETAIN\n   STRUCT \n      Speed { ExternalAccessible := 'True'} : Int := 90;   // rpm\n      Temp : LReal;\n      Name : String;\n   END_STRUCT;\n\nBEGIN\n\nEND_DATA_BLOCK\n";
        let (fields, size) = layout(tia).expect("layout");
        let got: Vec<(&str, u32)> = fields.iter().map(|f| (f.name.as_str(), f.offset)).collect();
        assert_eq!(got, [("Speed", 0), ("Temp", 2), ("Name", 10)]);
        assert_eq!(fields[2].kind, S7FieldType::String(254));
        assert_eq!(size, 266);
        let optimized = tia.replace("'FALSE'", "'TRUE'");
        let e = layout(&optimized).expect_err("optimized");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("optimized DB"), "{e:?}");
    }

    #[test]
    fn what_the_layout_cannot_know_names_its_line() {
        let udt_member = "DATA_BLOCK DB5\nSTRUCT\n a : INT;\n b : \"UDT_Dose\";\nEND_STRUCT;\nBEGIN\nEND_DATA_BLOCK\n";
        let e = layout(udt_member).expect_err("udt");
        assert_eq!(e.line, 4);
        assert!(e.message.contains("user type"), "{e:?}");
        let unknown = "DATA_BLOCK DB5\nSTRUCT\n a : INT;\n b : POINTER;\nEND_STRUCT;\nBEGIN\nEND_DATA_BLOCK\n";
        let e = layout(unknown).expect_err("pointer");
        assert_eq!(e.line, 4);
        let typed = "DATA_BLOCK \"Inst\" \"FB_Filler\"\nBEGIN\nEND_DATA_BLOCK\n";
        let e = layout(typed).expect_err("instance");
        assert!(e.message.contains("no STRUCT"), "{e:?}");
        let open = "DATA_BLOCK DB5\nSTRUCT\n a : INT; (* never closed\n";
        assert_eq!(layout(open).expect_err("comment").line, 3);
        assert!(layout("").is_err());
    }
}
