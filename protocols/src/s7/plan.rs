//! The read plan for setpoint ranges: as few Read Var requests as the negotiated PDU allows.
//!
//! Ranges of the same DB are merged when they overlap or touch, then packed greedily into
//! requests, several items per request, a range split where a request is full. Both sides
//! of the exchange must fit the PDU:
//!
//! - request: 10-byte header + 2 + 12 bytes per item, and at most [`MAX_READ_ITEMS`] items;
//! - answer: 12-byte header + 2 + per item 4 bytes of item header, the data, and a fill byte
//!   after odd-length items that are not the last.
//!
//! For one contiguous range this is the minimum: `ceil(size / (pdu - 18))` requests (one item
//! per request carries the most data). [`minimum_requests`] is that lower bound for any set of
//! ranges, which the benchmark and a property test hold the plan to.

use std::collections::BTreeMap;

use otdrift_config::S7Setpoint;

use super::request::{MAX_BYTE_ADDRESS, MAX_READ_ITEMS, ReadItem};

/// Bytes of an ack-data answer before the first item: header 12 + function + item count.
const ANSWER_OVERHEAD: usize = 14;
/// Bytes of a job request before the first item.
const REQUEST_OVERHEAD: usize = 12;
/// Bytes one item takes in a request.
const REQUEST_ITEM: usize = 12;
/// Bytes of an item header in an answer.
const ANSWER_ITEM: usize = 4;

/// A merged byte range of one DB, `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Range {
    pub(crate) db: u16,
    pub(crate) start: u32,
    pub(crate) end: u32,
}

/// The addressable ranges of the config's setpoints, merged per DB, and the setpoints that
/// lie (partly) beyond what S7comm can address.
pub(crate) fn merge(setpoints: &[S7Setpoint]) -> (Vec<Range>, Vec<S7Setpoint>) {
    let mut by_db: BTreeMap<u16, Vec<(u32, u32)>> = BTreeMap::new();
    let mut unaddressable = Vec::new();
    for sp in setpoints {
        let end = u64::from(sp.start) + u64::from(sp.size);
        if sp.size == 0 || end > u64::from(MAX_BYTE_ADDRESS) + 1 {
            unaddressable.push(sp.clone());
            continue;
        }
        // end <= MAX_BYTE_ADDRESS + 1 fits in u32.
        let end = u32::try_from(end).unwrap_or(u32::MAX);
        by_db.entry(sp.db).or_default().push((sp.start, end));
    }
    let mut out = Vec::new();
    for (db, mut ranges) in by_db {
        ranges.sort_unstable();
        let mut current: Option<(u32, u32)> = None;
        for (start, end) in ranges {
            current = match current {
                Some((s, e)) if start <= e => Some((s, e.max(end))),
                Some((s, e)) => {
                    out.push(Range {
                        db,
                        start: s,
                        end: e,
                    });
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        if let Some((start, end)) = current {
            out.push(Range { db, start, end });
        }
    }
    (out, unaddressable)
}

/// Packs the ranges into Read Var requests for a negotiated PDU of `pdu` bytes.
pub(crate) fn plan(ranges: &[Range], pdu: u16) -> Vec<Vec<ReadItem>> {
    let pdu = usize::from(pdu);
    let capacity = pdu.saturating_sub(ANSWER_OVERHEAD);
    let max_items = (pdu.saturating_sub(REQUEST_OVERHEAD) / REQUEST_ITEM).clamp(1, MAX_READ_ITEMS);
    let mut requests: Vec<Vec<ReadItem>> = Vec::new();
    let mut current: Vec<ReadItem> = Vec::new();
    let mut used = 0usize;
    for range in ranges {
        let mut start = range.start;
        while start < range.end {
            // Room for another item: its header, and the fill byte the previous item needs
            // now that it is no longer last.
            let fill = current.last().map_or(0, |item| usize::from(item.len % 2));
            let room = capacity.saturating_sub(used + fill + ANSWER_ITEM);
            if current.len() >= max_items || room < 2 {
                if current.is_empty() {
                    // The PDU cannot carry even two bytes: nothing sensible to send.
                    return requests;
                }
                requests.push(std::mem::take(&mut current));
                used = 0;
                continue;
            }
            let remaining = usize::try_from(range.end - start).unwrap_or(usize::MAX);
            let mut take = remaining.min(room).min(usize::from(u16::MAX));
            if take < remaining {
                // A split piece keeps an even length, so it never needs a fill byte.
                take -= take % 2;
            }
            let len = u16::try_from(take).unwrap_or(u16::MAX);
            current.push(ReadItem {
                db: range.db,
                start,
                len,
            });
            used += fill + ANSWER_ITEM + take;
            start += u32::from(len);
        }
    }
    if !current.is_empty() {
        requests.push(current);
    }
    requests
}

/// The fewest Read Var requests any plan can use for these ranges at this PDU size. Two lower
/// bounds hold for any packing: an answer carries at most `pdu - 14` bytes of item headers and
/// data, at least one item header (4 bytes) in every answer; and every range costs its bytes
/// plus at least one item header.
pub(crate) fn minimum_requests(ranges: &[Range], pdu: u16) -> usize {
    let capacity = usize::from(pdu).saturating_sub(ANSWER_OVERHEAD);
    let data: usize = ranges
        .iter()
        .map(|r| usize::try_from(r.end - r.start).unwrap_or(usize::MAX))
        .sum();
    let with_headers = data + ANSWER_ITEM * ranges.len();
    let by_data = data.div_ceil(capacity.saturating_sub(ANSWER_ITEM).max(1));
    let by_items = with_headers.div_ceil(capacity.max(1));
    by_data.max(by_items)
}

/// The size in bytes of the answer to a planned request.
#[cfg(test)]
pub(crate) fn answer_size(items: &[ReadItem]) -> usize {
    let mut size = ANSWER_OVERHEAD;
    for (i, item) in items.iter().enumerate() {
        size += ANSWER_ITEM + usize::from(item.len);
        if item.len % 2 == 1 && i + 1 < items.len() {
            size += 1;
        }
    }
    size
}

/// The size in bytes of a planned request.
#[cfg(test)]
pub(crate) fn request_size(items: &[ReadItem]) -> usize {
    REQUEST_OVERHEAD + REQUEST_ITEM * items.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sp(db: u16, start: u32, size: u32) -> S7Setpoint {
        S7Setpoint {
            name: "x".into(),
            db,
            start,
            size,
            fields: Vec::new(),
        }
    }

    #[test]
    fn a_64_kib_db_takes_the_minimum_number_of_pdus() {
        let (ranges, skipped) = merge(&[sp(1, 0, 65536)]);
        assert!(skipped.is_empty());
        for (pdu, minimum) in [(240u16, 296usize), (480, 142), (960, 70)] {
            let requests = plan(&ranges, pdu);
            assert_eq!(requests.len(), minimum, "PDU {pdu}");
            assert_eq!(minimum_requests(&ranges, pdu), minimum);
            assert!(requests.iter().all(|r| answer_size(r) <= usize::from(pdu)));
        }
    }

    #[test]
    fn touching_and_overlapping_ranges_merge_per_db() {
        let (ranges, _) = merge(&[sp(1, 10, 5), sp(1, 0, 10), sp(1, 12, 10), sp(2, 0, 4)]);
        assert_eq!(
            ranges,
            vec![
                Range {
                    db: 1,
                    start: 0,
                    end: 22
                },
                Range {
                    db: 2,
                    start: 0,
                    end: 4
                }
            ]
        );
        // Small ranges share one request.
        assert_eq!(plan(&ranges, 240).len(), 1);
    }

    #[test]
    fn unaddressable_ranges_are_set_apart() {
        let (ranges, skipped) = merge(&[sp(1, MAX_BYTE_ADDRESS, 2), sp(1, 0, 2)]);
        assert_eq!(ranges.len(), 1);
        assert_eq!(skipped.len(), 1);
    }

    proptest! {
        /// The plan reads exactly the merged ranges, never exceeds the PDU either way, and
        /// stays within one request of the lower bound.
        #[test]
        fn plans_are_exact_bounded_and_near_minimal(
            setpoints in prop::collection::vec((1u16..5, 0u32..3000, 1u32..3000), 1..12),
            pdu in prop::sample::select(vec![240u16, 480, 960]),
        ) {
            let setpoints: Vec<S7Setpoint> =
                setpoints.into_iter().map(|(db, start, size)| sp(db, start, size)).collect();
            let (ranges, _) = merge(&setpoints);
            let requests = plan(&ranges, pdu);
            let mut covered: BTreeMap<u16, Vec<(u32, u32)>> = BTreeMap::new();
            for request in &requests {
                prop_assert!(!request.is_empty());
                prop_assert!(request.len() <= MAX_READ_ITEMS);
                prop_assert!(answer_size(request) <= usize::from(pdu));
                prop_assert!(request_size(request) <= usize::from(pdu));
                for item in request {
                    covered.entry(item.db).or_default()
                        .push((item.start, item.start + u32::from(item.len)));
                }
            }
            for range in &ranges {
                let pieces = covered.get_mut(&range.db).expect("db read");
                pieces.sort_unstable();
                let mut at = range.start;
                for &(s, e) in pieces.iter().filter(|(s, _)| *s >= range.start && *s < range.end) {
                    prop_assert_eq!(s, at, "no gap and no overlap");
                    at = e;
                }
                prop_assert_eq!(at, range.end);
            }
            let minimum = minimum_requests(&ranges, pdu);
            prop_assert!(requests.len() >= minimum);
            // Greedy packing with even splits loses at most a few bytes per request.
            prop_assert!(requests.len() <= minimum + 1 + requests.len() / 50,
                "{} requests, minimum {minimum}", requests.len());
        }
    }
}
