//! What the collector knows of the controller's program between captures: the cheap first
//! round trip (identity, project name, clock, audit value) that says whether anything
//! changed, and the browse (tag list, programs, tasks, templates) redone only when it did.

use std::collections::{BTreeMap, BTreeSet};

use otdrift_core::Value;

use super::link::{Answer, SessionError, session_error};
use super::plan::strip_prefix_ci;
use super::request::{Request, TagAddress};
use super::types::{self, ElementType, Symbol, Template, Templates};
use super::wire::{
    ENCAP_UNSUPPORTED, audit_from_reply, parse_project_name, parse_wall_clock, stable_status,
};
use super::{BUSY, CipCollector};
use crate::CollectError;

/// Most symbols accepted in one scope.
const MAX_SYMBOLS: usize = 200_000;
/// Most pages of one symbol listing.
const MAX_PAGES: usize = 20_000;
/// Most templates followed.
const MAX_TEMPLATES: usize = 4096;
/// Largest template definition read.
const MAX_TEMPLATE_BYTES: usize = 1 << 20;

/// Why `cip/controller/name` is not available when the device refuses the program-name
/// object (0x04/0x05/0x08): the same text whatever the status, so it is stable.
const NO_PROJECT_NAME_OBJECT: &str = "the device has no Logix program-name object (class 0x64)";
/// Why `cip/controller/name` is not available when the object answers something that is no
/// project name (cpppo answers its own attributes for classes it does not have).
const NO_PROJECT_NAME_ANSWER: &str =
    "the device's answer for the program-name object (class 0x64) is not a Logix project name";

/// One program's symbols.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProgramInfo {
    pub(crate) tags: Vec<Symbol>,
    pub(crate) routines: Vec<String>,
}

/// What a browse found (kept between captures for cheap polling).
#[derive(Clone, Debug, Default)]
pub(crate) struct Browse {
    pub(crate) controller: Vec<Symbol>,
    pub(crate) programs: BTreeMap<String, ProgramInfo>,
    pub(crate) tasks: Vec<String>,
    pub(crate) templates: Templates,
    /// Why the tag list is not available (then everything above is empty).
    pub(crate) unavailable: Option<String>,
}

/// How the audit value is read on this controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuditSource {
    /// A LINT / DINT[2] tag.
    Tag {
        address: TagAddress,
        dint_pair: bool,
    },
    /// None: the stable reason.
    Missing(String),
}

#[derive(Clone, Debug)]
pub(crate) struct Cache {
    pub(crate) browse: Browse,
    pub(crate) audit: AuditSource,
    pub(crate) changes: AuditSource,
    pub(crate) audit_value: Value,
    pub(crate) changes_value: Value,
    pub(crate) fingerprint: Vec<Value>,
    pub(crate) polls_since_browse: u32,
}

/// What listing one scope's symbols gave.
#[derive(Debug)]
enum Listing {
    /// The symbols, every page.
    Symbols(Vec<Symbol>),
    /// The stable capability "no tag list", with its reason.
    Unsupported(String),
    /// The connection broke on the controller scope's first page: a capability only if it
    /// breaks again on a fresh session.
    Closed(CollectError),
}

/// What the cheap first request found.
pub(crate) struct Probe {
    pub(crate) identity: Vec<(String, Value)>,
    pub(crate) fingerprint: Vec<Value>,
    pub(crate) name: Value,
    pub(crate) audit_value: Option<Value>,
    pub(crate) changes_value: Option<Value>,
    pub(crate) audit_failed: bool,
}

impl CipCollector {
    /// The cheap first round trip: identity, project name, clock and audit value.
    pub(crate) async fn probe(&mut self, with_audit: bool) -> Result<Probe, CollectError> {
        let mut requests = vec![
            (Request::Identity, 64),
            (Request::ControllerName, 48),
            (Request::WallClock, 20),
        ];
        // The audit tags known from the last browse (a missing one is not asked for).
        let audit_sources: Vec<AuditSource> = match (&self.cache, with_audit) {
            (Some(cache), true) => vec![cache.audit.clone(), cache.changes.clone()],
            _ => Vec::new(),
        };
        for source in &audit_sources {
            if let AuditSource::Tag { address, dint_pair } = source {
                let count = if *dint_pair { 2 } else { 1 };
                let tag = address.clone();
                requests.push((Request::ReadTag { tag, count }, 16));
            }
        }
        let mut answers = self.driver.batch(requests).await?.into_iter();
        let identity_answer = answers.next();
        let name_answer = answers.next();
        let clock_answer = answers.next();

        let (identity, fingerprint) = match identity_answer {
            Some(a) if a.status.is_ok() => self.parse_identity(&a.data)?,
            // Every CIP device has an Identity object: refusing it is never a capability.
            Some(a) => {
                return Err(self.driver.refusal(
                    &Request::Identity.describe(),
                    "the controller refused its identity",
                    &a.status,
                ));
            }
            None => {
                return Err(self
                    .driver
                    .scope()
                    .malformed(Request::Identity.describe(), "no answer"));
            }
        };
        let name = match name_answer {
            Some(a) => self.project_name(&a)?,
            None => {
                return Err(self
                    .driver
                    .scope()
                    .malformed(Request::ControllerName.describe(), "no answer"));
            }
        };
        let clock = match clock_answer {
            Some(a) => self.wall_clock(&a)?,
            None => {
                return Err(self
                    .driver
                    .scope()
                    .malformed(Request::WallClock.describe(), "no answer"));
            }
        };
        self.runtime.insert("cip/wall_clock_us".to_owned(), clock);
        let mut audit_value = None;
        let mut changes_value = None;
        let mut audit_failed = false;
        for (k, source) in audit_sources.iter().enumerate() {
            let value = match source {
                AuditSource::Missing(reason) => Value::unavailable(reason.clone()),
                AuditSource::Tag { dint_pair, address } => match answers.next() {
                    Some(a) if a.status.is_ok() => {
                        audit_from_reply(&a.data, *dint_pair).map_err(|e| {
                            self.driver
                                .scope()
                                .malformed(format!("Read Tag (0x4C) {}", address.text), e)
                        })?
                    }
                    Some(a) if a.status.general == BUSY => {
                        return Err(self
                            .driver
                            .scope()
                            .busy(format!("Read Tag (0x4C) {}", address.text), &a.status));
                    }
                    _ => {
                        // The tag went away (a download removed it): browse again, which
                        // finds it gone (not available) or listed yet refused (a refusal).
                        audit_failed = true;
                        continue;
                    }
                },
            };
            if k == 0 {
                audit_value = Some(value);
            } else {
                changes_value = Some(value);
            }
        }
        Ok(Probe {
            identity,
            fingerprint,
            name,
            audit_value,
            changes_value,
            audit_failed,
        })
    }

    /// The project name from the program-name object's answer.
    ///
    /// Logix answers a STRING (then bytes nobody has documented), always a Logix name. A
    /// device without that object either refuses (0x04/0x05 path unknown, 0x08 service not
    /// supported) or, like cpppo, answers "success" with whatever its own object holds (a
    /// dump of its tag values). Both are the same stable capability, "no Logix project
    /// name", recorded with a text that names neither status nor bytes, so it is identical
    /// every poll; a controller that had a name and loses it fails against its baseline.
    /// Busy is busy; any other refusal fails.
    fn project_name(&self, answer: &Answer) -> Result<Value, CollectError> {
        let describe = Request::ControllerName.describe();
        if answer.status.is_ok() {
            return Ok(match parse_project_name(&answer.data) {
                Some(name) => Value::Text(name),
                None => Value::unavailable(NO_PROJECT_NAME_ANSWER),
            });
        }
        if matches!(answer.status.general, 0x04 | 0x05 | 0x08) {
            tracing::debug!(status = %answer.status, "no program-name object");
            return Ok(Value::unavailable(NO_PROJECT_NAME_OBJECT));
        }
        Err(self.driver.refusal(
            &describe,
            "the controller refused its project name",
            &answer.status,
        ))
    }

    /// The controller's clock for the runtime (never hashed): a refused or garbled answer is
    /// recorded there as not available instead of failing the capture (cpppo answers the
    /// attribute list without its count, and "object does not exist" for the attribute).
    /// Busy is still busy.
    fn wall_clock(&self, answer: &Answer) -> Result<Value, CollectError> {
        if answer.status.general == BUSY {
            return Err(self
                .driver
                .scope()
                .busy(Request::WallClock.describe(), &answer.status));
        }
        if !answer.status.is_ok() {
            return Ok(Value::unavailable(format!(
                "the controller refused its wall clock ({})",
                stable_status(&answer.status)
            )));
        }
        Ok(match parse_wall_clock(&answer.data) {
            Ok(us) => Value::UInt(us),
            Err(e) => Value::unavailable(format!("the wall clock answer does not fit: {e}")),
        })
    }

    /// The program knowledge for this capture: the cached browse when the probe says
    /// nothing changed (the audit value, or the poll count without one), else a new browse.
    pub(crate) async fn program(&mut self, probe: &Probe) -> Result<Cache, CollectError> {
        let reason = match &self.cache {
            None => Some("first capture"),
            Some(cache) if cache.fingerprint != probe.fingerprint => Some("identity changed"),
            Some(_) if probe.audit_failed => Some("audit value not readable"),
            Some(cache) => match (&cache.audit, &probe.audit_value) {
                (AuditSource::Tag { .. }, Some(now)) if *now != cache.audit_value => {
                    Some("audit value changed")
                }
                (AuditSource::Tag { .. }, _) => None,
                (AuditSource::Missing(_), _)
                    if cache.polls_since_browse + 1 >= self.rebrowse_every =>
                {
                    Some("periodic re-browse (no audit value)")
                }
                (AuditSource::Missing(_), _) => None,
            },
        };
        let cache = match (reason, self.cache.take()) {
            (None, Some(mut cache)) => {
                cache.polls_since_browse += 1;
                if let Some(v) = probe.audit_value.clone() {
                    cache.audit_value = v;
                }
                if let Some(v) = probe.changes_value.clone() {
                    cache.changes_value = v;
                }
                let how = match &cache.audit {
                    AuditSource::Tag { .. } => "reused: audit value unchanged".to_owned(),
                    AuditSource::Missing(_) => format!(
                        "reused: poll {} of {} without an audit value",
                        cache.polls_since_browse, self.rebrowse_every
                    ),
                };
                self.runtime
                    .insert("cip/tag_list".to_owned(), Value::Text(how));
                cache
            }
            (reason, _) => {
                let browse = self.browse().await?;
                let (audit, changes) = self.audit_sources(&browse);
                let audit_value = self.read_audit(&audit).await?;
                let changes_value = self.read_audit(&changes).await?;
                self.runtime.insert(
                    "cip/tag_list".to_owned(),
                    Value::Text(format!("browsed: {}", reason.unwrap_or("requested"))),
                );
                Cache {
                    browse,
                    audit,
                    changes,
                    audit_value,
                    changes_value,
                    fingerprint: probe.fingerprint.clone(),
                    polls_since_browse: 0,
                }
            }
        };
        Ok(cache)
    }

    /// Lists one scope's symbols, following "partial transfer" pages.
    ///
    /// [`Listing::Unsupported`] only for the stable capability "no tag list": the controller
    /// scope's first page answered "service not supported" (0x08, firmware without the
    /// service), or refused at the encapsulation layer with 0x0008 (cpppo, which then closes
    /// the connection). [`Listing::Closed`] when the connection broke on that first page.
    /// Anything else that is not an answer fails: a program the controller itself lists
    /// whose scope is refused, or a refusal after the first page, contradicts the listing;
    /// 0x04/0x05 mean the device has no Symbol object, which no Logix lacks.
    async fn list_symbols(&mut self, program: Option<&str>) -> Result<Listing, CollectError> {
        let mut start = 0u32;
        let mut out: Vec<Symbol> = Vec::new();
        let scope = program.map_or_else(|| "the controller".to_owned(), |p| format!("Program:{p}"));
        for _ in 0..MAX_PAGES {
            let request = Request::ListSymbols {
                program: program.map(str::to_owned),
                start,
            };
            let capability = program.is_none() && start == 0;
            let answer = match self.driver.call_or_encapsulation(&request).await {
                Ok(Ok(answer)) => answer,
                Err(e) if capability && matches!(e.kind, crate::ErrorKind::Transport(_)) => {
                    return Ok(Listing::Closed(e));
                }
                Err(e) => return Err(e),
                Ok(Err(ENCAP_UNSUPPORTED)) if capability => {
                    return Ok(Listing::Unsupported(format!(
                        "the controller does not support Get Instance Attribute List (0x55): encapsulation status 0x{ENCAP_UNSUPPORTED:08x}, and it closes the connection"
                    )));
                }
                Ok(Err(status)) => {
                    return Err(session_error(
                        self.driver.scope(),
                        &request.describe(),
                        SessionError::Encapsulation(status),
                    ));
                }
            };
            if !answer.status.is_ok() && !answer.status.is_partial() {
                if capability && answer.status.general == 0x08 {
                    return Ok(Listing::Unsupported(format!(
                        "controller refused Get Instance Attribute List (0x55) on {scope} ({})",
                        answer.status
                    )));
                }
                let why = match program {
                    Some(_) => "the controller lists this program but refuses to list its tags",
                    None if start > 0 => {
                        "the controller refused a later page of the tag list it had started"
                    }
                    None => "the controller refused its tag list",
                };
                return Err(self
                    .driver
                    .refusal(&request.describe(), why, &answer.status));
            }
            let page = types::parse_symbols(&answer.data)
                .map_err(|e| self.driver.scope().malformed(request.describe(), e))?;
            if let Some(first) = page.first()
                && first.instance < start
            {
                return Err(self.driver.scope().malformed(
                    request.describe(),
                    format!("page starts at instance {}, before {start}", first.instance),
                ));
            }
            if page.windows(2).any(|w| w[1].instance <= w[0].instance) {
                return Err(self
                    .driver
                    .scope()
                    .malformed(request.describe(), "instances are not ascending"));
            }
            let last = page.last().map(|s| s.instance);
            out.extend(page);
            if out.len() > MAX_SYMBOLS {
                return Err(self.driver.scope().bound(
                    request.describe(),
                    format!("more than {MAX_SYMBOLS} symbols"),
                ));
            }
            if answer.status.is_ok() {
                return Ok(Listing::Symbols(out));
            }
            match last.and_then(|l| l.checked_add(1)) {
                Some(next) => start = next,
                None => {
                    return Err(self.driver.scope().malformed(
                        request.describe(),
                        "partial transfer without any symbol: the listing does not advance",
                    ));
                }
            }
        }
        Err(self.driver.scope().bound(
            "Get Instance Attribute List (0x55)",
            format!("still incomplete after {MAX_PAGES} pages"),
        ))
    }

    /// Lists the controller, its programs and the templates their tags use.
    pub(crate) async fn browse(&mut self) -> Result<Browse, CollectError> {
        let mut browse = Browse::default();
        let mut listed = self.list_symbols(None).await?;
        if let Listing::Closed(e) = &listed {
            // The connection broke on the tag list: ask once more on a fresh session, so a
            // glitch is not taken for a capability.
            tracing::debug!(error = %e, "connection lost on the tag list, asking again");
            self.driver.drop_connection();
            listed = self.list_symbols(None).await?;
        }
        let controller = match listed {
            Listing::Symbols(symbols) => symbols,
            Listing::Unsupported(reason) => {
                browse.unavailable = Some(reason);
                return Ok(browse);
            }
            Listing::Closed(_) => {
                // Reachable, yet closes the session on this service every time: a stable
                // capability. Go on with a fresh session; failing to reconnect is an outage.
                self.driver.drop_connection();
                self.driver.connect().await?;
                browse.unavailable = Some(
                    "the controller closes the session when asked for its tag list (Get Instance Attribute List 0x55)"
                        .to_owned(),
                );
                return Ok(browse);
            }
        };
        for symbol in controller {
            let name = symbol.name.clone();
            if let Some(program) = strip_prefix_ci(&name, "Program:") {
                browse
                    .programs
                    .insert(program.to_owned(), ProgramInfo::default());
            } else if let Some(task) = strip_prefix_ci(&name, "Task:") {
                browse.tasks.push(task.to_owned());
            } else if is_user_tag(&symbol) {
                browse.controller.push(symbol);
            }
        }
        let programs: Vec<String> = browse.programs.keys().cloned().collect();
        for program in programs {
            let symbols = match self.list_symbols(Some(&program)).await? {
                Listing::Symbols(symbols) => symbols,
                // Only the controller scope's first page is a capability (see list_symbols).
                Listing::Unsupported(reason) => return Err(self.driver.scope().internal(reason)),
                Listing::Closed(e) => return Err(e),
            };
            let info = browse.programs.entry(program).or_default();
            for symbol in symbols {
                if let Some(routine) = strip_prefix_ci(&symbol.name, "Routine:") {
                    info.routines.push(routine.to_owned());
                } else if is_user_tag(&symbol) {
                    info.tags.push(symbol);
                }
            }
            info.routines.sort();
        }
        browse.tasks.sort();
        // Templates used by any tag, then by their members, until closed.
        let mut wanted: BTreeSet<u16> = browse
            .controller
            .iter()
            .chain(browse.programs.values().flat_map(|p| p.tags.iter()))
            .filter_map(|s| s.kind.template())
            .collect();
        // A template is only ever asked for because a listed tag or member has its type, so
        // refusing it contradicts the controller's own listing: the capture fails.
        while !wanted.is_empty() {
            if browse.templates.len() + wanted.len() > MAX_TEMPLATES {
                return Err(self.driver.scope().bound(
                    "Template (class 0x6C)",
                    format!("more than {MAX_TEMPLATES} templates"),
                ));
            }
            let instances: Vec<u16> = std::mem::take(&mut wanted).into_iter().collect();
            let requests = instances
                .iter()
                .map(|&instance| (Request::TemplateAttributes { instance }, 32))
                .collect();
            let answers = self.driver.batch(requests).await?;
            for (instance, answer) in instances.into_iter().zip(answers) {
                let describe = Request::TemplateAttributes { instance }.describe();
                if !answer.status.is_ok() {
                    return Err(self.driver.refusal(
                        &describe,
                        "the tag list uses this structure type, but the controller refuses its template",
                        &answer.status,
                    ));
                }
                let info = types::parse_template_info(&answer.data)
                    .map_err(|e| self.driver.scope().malformed(&describe, e))?;
                let template = self.read_template(instance, info).await?;
                for member in &template.members {
                    if let ElementType::Struct(t) = member.element
                        && t != instance
                        && !browse.templates.contains_key(&t)
                    {
                        wanted.insert(t);
                    }
                }
                browse.templates.insert(instance, template);
            }
            wanted.retain(|t| !browse.templates.contains_key(t));
        }
        if let Some(name) = template_cycle(&browse.templates) {
            // A structure cannot contain itself, directly or through its members: the type
            // table contradicts itself.
            return Err(self.driver.scope().malformed(
                "Read Template (0x4C)",
                format!("structure {name} contains itself through its members"),
            ));
        }
        Ok(browse)
    }

    /// Reads one template's definition, following partial transfers.
    async fn read_template(
        &mut self,
        instance: u16,
        info: types::TemplateInfo,
    ) -> Result<Template, CollectError> {
        // The definition is (words * 4 - 21) bytes (1756-PM020; pycomm3 reads it so).
        let total = usize::try_from(info.definition_words)
            .unwrap_or(usize::MAX)
            .saturating_mul(4)
            .saturating_sub(21);
        if total > MAX_TEMPLATE_BYTES {
            return Err(self.driver.scope().bound(
                format!("Template (class 0x6C) instance 0x{instance:03x}"),
                format!("definition of {total} bytes exceeds {MAX_TEMPLATE_BYTES}"),
            ));
        }
        let mut data: Vec<u8> = Vec::with_capacity(total);
        loop {
            let offset = data.len();
            let remaining = total.saturating_sub(offset);
            let request = Request::ReadTemplate {
                instance,
                offset: u32::try_from(offset).unwrap_or(u32::MAX),
                bytes: u16::try_from(remaining).unwrap_or(u16::MAX),
            };
            let answer = self.driver.call(&request).await?;
            if !answer.status.is_ok() && !answer.status.is_partial() {
                return Err(self.driver.refusal(
                    &request.describe(),
                    "the controller answered this template's attributes, but refuses its definition",
                    &answer.status,
                ));
            }
            if answer.data.len() > remaining.saturating_add(4) {
                return Err(self.driver.scope().malformed(
                    request.describe(),
                    format!("{} bytes answered, {remaining} asked", answer.data.len()),
                ));
            }
            data.extend_from_slice(&answer.data);
            if answer.status.is_ok() {
                break;
            }
            if answer.data.is_empty() || data.len() >= total.saturating_add(4) {
                return Err(self
                    .driver
                    .scope()
                    .malformed(request.describe(), "partial transfer that does not advance"));
            }
        }
        types::parse_template(instance, info, &data).map_err(|e| {
            self.driver
                .scope()
                .malformed(format!("Read Template (0x4C) instance 0x{instance:03x}"), e)
        })
    }

    /// Where the controller keeps its audit value and change mask, from the tag list.
    fn audit_sources(&self, browse: &Browse) -> (AuditSource, AuditSource) {
        let find = |name: &str| -> AuditSource {
            if browse.unavailable.is_some() {
                return AuditSource::Missing(
                    "not available: the tag list is not readable, so the change-detection tags cannot be found".to_owned(),
                );
            }
            let Some(symbol) = browse
                .controller
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(name))
            else {
                return AuditSource::Missing(format!(
                    "not available: no controller-scoped tag {name} (change detection needs firmware v20+ and a GSV rung copying CONTROLLER.{name} into it)"
                ));
            };
            let lint = symbol.kind.atomic() == Some(0xC5) && symbol.dims.is_empty();
            let pair = symbol.kind.atomic() == Some(0xC4) && symbol.dims == [2];
            match TagAddress::parse(&if pair {
                format!("{name}[0]")
            } else {
                name.to_owned()
            }) {
                Ok(address) if lint || pair => AuditSource::Tag {
                    address,
                    dint_pair: pair,
                },
                _ => AuditSource::Missing(format!(
                    "not available: tag {name} is not a LINT or DINT[2]"
                )),
            }
        };
        (find(&self.audit_tag), find(&self.changes_tag))
    }

    async fn read_audit(&mut self, source: &AuditSource) -> Result<Value, CollectError> {
        match source {
            AuditSource::Missing(reason) => Ok(Value::unavailable(reason.clone())),
            AuditSource::Tag { address, dint_pair } => {
                let request = Request::ReadTag {
                    tag: address.clone(),
                    count: if *dint_pair { 2 } else { 1 },
                };
                let answer = self.driver.call(&request).await?;
                if !answer.status.is_ok() {
                    // Found in the tag list moments ago: a refusal contradicts it.
                    return Err(self.driver.refusal(
                        &request.describe(),
                        "the controller lists its change-detection tag, but refuses to read it",
                        &answer.status,
                    ));
                }
                audit_from_reply(&answer.data, *dint_pair)
                    .map_err(|e| self.driver.scope().malformed(request.describe(), e))
            }
        }
    }
}

/// A template that contains itself, directly or through its members' types, if any (by
/// removing, Kahn's way, every template no remaining template contains: what is left is on
/// a cycle).
pub(crate) fn template_cycle(templates: &Templates) -> Option<String> {
    let children = |t: &Template| -> Vec<u16> {
        t.members
            .iter()
            .filter_map(|m| match m.element {
                ElementType::Struct(c) if templates.contains_key(&c) => Some(c),
                _ => None,
            })
            .collect()
    };
    let mut contained_by: BTreeMap<u16, usize> = templates.keys().map(|k| (*k, 0)).collect();
    for template in templates.values() {
        for child in children(template) {
            if let Some(n) = contained_by.get_mut(&child) {
                *n += 1;
            }
        }
    }
    let mut free: Vec<u16> = contained_by
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    while let Some(k) = free.pop() {
        contained_by.remove(&k);
        let Some(template) = templates.get(&k) else {
            continue;
        };
        for child in children(template) {
            if let Some(n) = contained_by.get_mut(&child) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    free.push(child);
                }
            }
        }
    }
    contained_by
        .keys()
        .next()
        .and_then(|k| templates.get(k))
        .map(|t| t.name.clone())
}

/// User tags: not system symbols, not internal (`__`), not module mapping or connection
/// objects. I/O module tags (`Local:1:I`) are kept: they describe the hardware setup.
pub(crate) fn is_user_tag(symbol: &Symbol) -> bool {
    let name = &symbol.name;
    !(name.starts_with("__")
        || name.contains("Map:")
        || name.contains("Cxn:")
        || symbol.kind.is_system())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cip::types::SymbolType;

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
}
