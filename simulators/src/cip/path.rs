//! CIP paths in requests: EPath segments (class, instance, attribute, symbolic, element)
//! parsed with bounds checks, and the text form commands use.

/// A path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Class(u32),
    Instance(u32),
    Attribute(u32),
    Element(u32),
    Symbol(String),
    Port(u8, u8),
}

pub(crate) type Fail = (u8, Vec<u16>);

pub(crate) fn fail(general: u8) -> Fail {
    (general, Vec::new())
}

pub(crate) struct Rd<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) p: usize,
}

impl<'a> Rd<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Rd { b, p: 0 }
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        let end = self.p.checked_add(n).ok_or_else(|| fail(0x13))?;
        let s = self.b.get(self.p..end).ok_or_else(|| fail(0x13))?;
        self.p = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, Fail> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, Fail> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Fail> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let r = self.b.get(self.p..).unwrap_or(&[]);
        self.p = self.b.len();
        r
    }
    pub(crate) fn left(&self) -> usize {
        self.b.len().saturating_sub(self.p)
    }
}

pub(crate) fn parse_path(bytes: &[u8]) -> Result<Vec<Seg>, Fail> {
    let mut r = Rd::new(bytes);
    let mut out = Vec::new();
    let bad = || (0x04, vec![0]);
    while r.left() > 0 {
        let kind = r.u8().map_err(|_| bad())?;
        let seg = match kind {
            0x01..=0x0F => Seg::Port(kind, r.u8().map_err(|_| bad())?),
            0x20 => Seg::Class(u32::from(r.u8().map_err(|_| bad())?)),
            0x21 => {
                r.u8().map_err(|_| bad())?;
                Seg::Class(u32::from(r.u16().map_err(|_| bad())?))
            }
            0x24 => Seg::Instance(u32::from(r.u8().map_err(|_| bad())?)),
            0x25 => {
                r.u8().map_err(|_| bad())?;
                Seg::Instance(u32::from(r.u16().map_err(|_| bad())?))
            }
            0x26 => {
                r.u8().map_err(|_| bad())?;
                Seg::Instance(r.u32().map_err(|_| bad())?)
            }
            0x30 => Seg::Attribute(u32::from(r.u8().map_err(|_| bad())?)),
            0x31 => {
                r.u8().map_err(|_| bad())?;
                Seg::Attribute(u32::from(r.u16().map_err(|_| bad())?))
            }
            0x28 => Seg::Element(u32::from(r.u8().map_err(|_| bad())?)),
            0x29 => {
                r.u8().map_err(|_| bad())?;
                Seg::Element(u32::from(r.u16().map_err(|_| bad())?))
            }
            0x2A => {
                r.u8().map_err(|_| bad())?;
                Seg::Element(r.u32().map_err(|_| bad())?)
            }
            0x91 => {
                let len = usize::from(r.u8().map_err(|_| bad())?);
                let name = r.take(len).map_err(|_| bad())?;
                if len % 2 == 1 {
                    r.u8().map_err(|_| bad())?;
                }
                let name = std::str::from_utf8(name).map_err(|_| bad())?;
                Seg::Symbol(name.to_owned())
            }
            _ => return Err(bad()),
        };
        out.push(seg);
    }
    Ok(out)
}

pub(crate) fn path_text(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Symbol(n) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(n);
            }
            Seg::Element(e) => out.push_str(&format!("[{e}]")),
            Seg::Class(c) => out.push_str(&format!("class=0x{c:02x} ")),
            Seg::Instance(i) => out.push_str(&format!("instance={i} ")),
            Seg::Attribute(a) => out.push_str(&format!("attribute={a} ")),
            Seg::Port(p, l) => out.push_str(&format!("port={p}/{l} ")),
        }
    }
    out.trim_end().to_owned()
}

/// Parses `Program:P.Tag[1,2].Member` into path segments.
pub(crate) fn text_path(text: &str) -> Result<Vec<Seg>, String> {
    let mut out = Vec::new();
    let rest = match text.get(..8).filter(|h| h.eq_ignore_ascii_case("Program:")) {
        Some(_) => {
            let (program, rest) = text
                .split_once('.')
                .ok_or_else(|| format!("{text}: Program:<program>.<tag>"))?;
            out.push(Seg::Symbol(program.to_owned()));
            rest
        }
        None => text,
    };
    for piece in rest.split('.') {
        let (name, idx) = match piece.split_once('[') {
            Some((n, i)) => (
                n,
                Some(
                    i.strip_suffix(']')
                        .ok_or_else(|| format!("{text}: unclosed ["))?,
                ),
            ),
            None => (piece, None),
        };
        if name.is_empty() {
            return Err(format!("{text}: empty name"));
        }
        out.push(Seg::Symbol(name.to_owned()));
        if let Some(idx) = idx {
            for n in idx.split(',') {
                out.push(Seg::Element(
                    n.trim()
                        .parse()
                        .map_err(|_| format!("{text}: bad index {n:?}"))?,
                ));
            }
        }
    }
    Ok(out)
}
