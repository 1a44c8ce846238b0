//! Turning setpoint tables into the fewest read requests.
//!
//! Per table, the configured ranges are sorted, overlapping or adjacent ranges are merged, and
//! each merged run is cut into requests of at most `max_registers` (125 by the spec) or
//! `max_bits` (2000). Ranges with a gap between them are not merged: reading the gap could hit
//! addresses the device does not have, which it answers with an exception.

use otdrift_config::{ModbusSetpoint, ModbusTable};

/// One read request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOp {
    /// The table read.
    pub table: ModbusTable,
    /// First address (0-based protocol address, not 4xxxx notation).
    pub start: u16,
    /// How many registers or bits.
    pub count: u16,
}

impl ReadOp {
    /// The request as people read it in errors: "read holding registers 0..125 (FC 3)".
    pub fn describe(&self) -> String {
        let (what, fc) = match self.table {
            ModbusTable::Holding => ("holding registers", 3),
            ModbusTable::Input => ("input registers", 4),
            ModbusTable::Coil => ("coils", 1),
            ModbusTable::Discrete => ("discrete inputs", 2),
        };
        let end = u32::from(self.start) + u32::from(self.count);
        format!("read {what} {}..{end} (FC {fc})", self.start)
    }
}

/// Whether a table holds 16-bit registers (as opposed to bits).
pub fn is_register_table(table: ModbusTable) -> bool {
    matches!(table, ModbusTable::Holding | ModbusTable::Input)
}

/// The minimal list of requests covering every configured address.
pub fn plan(setpoints: &[ModbusSetpoint], max_registers: u16, max_bits: u16) -> Vec<ReadOp> {
    let mut ops = Vec::new();
    for table in [
        ModbusTable::Holding,
        ModbusTable::Input,
        ModbusTable::Coil,
        ModbusTable::Discrete,
    ] {
        let limit = u32::from(if is_register_table(table) {
            max_registers
        } else {
            max_bits
        })
        .max(1);
        // Half-open ranges in u32 so that start + count = 65536 does not overflow.
        let mut ranges: Vec<(u32, u32)> = setpoints
            .iter()
            .filter(|s| s.table == table && s.count > 0)
            .map(|s| {
                let start = u32::from(s.start);
                (start, (start + u32::from(s.count)).min(0x1_0000))
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        for (mut start, end) in merged {
            while start < end {
                let count = (end - start).min(limit);
                // Both fit: start < 65536 and count <= 2000.
                if let (Ok(s), Ok(c)) = (u16::try_from(start), u16::try_from(count)) {
                    ops.push(ReadOp {
                        table,
                        start: s,
                        count: c,
                    });
                }
                start += count;
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sp(table: ModbusTable, start: u16, count: u16) -> ModbusSetpoint {
        ModbusSetpoint {
            name: format!("{}-{start}", table.as_str()),
            table,
            start,
            count,
            fields: Vec::new(),
        }
    }

    #[test]
    fn ten_thousand_registers_take_eighty_requests() {
        let ops = plan(&[sp(ModbusTable::Holding, 1000, 10_000)], 125, 2000);
        assert_eq!(ops.len(), 80);
        assert!(ops.iter().all(|o| o.count == 125));
    }

    #[test]
    fn adjacent_ranges_merge_and_gaps_do_not() {
        let ops = plan(
            &[
                sp(ModbusTable::Holding, 10, 5),
                sp(ModbusTable::Holding, 0, 10),
                sp(ModbusTable::Holding, 20, 1),
                sp(ModbusTable::Coil, 0, 3000),
            ],
            125,
            2000,
        );
        assert_eq!(
            ops,
            [
                ReadOp {
                    table: ModbusTable::Holding,
                    start: 0,
                    count: 15
                },
                ReadOp {
                    table: ModbusTable::Holding,
                    start: 20,
                    count: 1
                },
                ReadOp {
                    table: ModbusTable::Coil,
                    start: 0,
                    count: 2000
                },
                ReadOp {
                    table: ModbusTable::Coil,
                    start: 2000,
                    count: 1000
                },
            ]
        );
    }

    #[test]
    fn the_top_of_the_address_space_is_reachable() {
        let ops = plan(&[sp(ModbusTable::Input, 65_500, 36)], 125, 2000);
        assert_eq!(
            ops,
            [ReadOp {
                table: ModbusTable::Input,
                start: 65_500,
                count: 36
            }]
        );
    }

    fn table() -> impl Strategy<Value = ModbusTable> {
        prop_oneof![
            Just(ModbusTable::Holding),
            Just(ModbusTable::Input),
            Just(ModbusTable::Coil),
            Just(ModbusTable::Discrete)
        ]
    }

    proptest! {
        /// The plan reads exactly the configured addresses, each once, within the limits,
        /// with as few requests as the merged runs allow.
        #[test]
        fn plans_are_exact_and_minimal(
            specs in proptest::collection::vec((table(), 0u16..3000, 1u16..400), 1..12),
            max_registers in 1u16..=125,
        ) {
            let setpoints: Vec<_> = specs.iter().map(|(t, s, c)| sp(*t, *s, *c)).collect();
            let ops = plan(&setpoints, max_registers, 2000);
            for t in [ModbusTable::Holding, ModbusTable::Input, ModbusTable::Coil, ModbusTable::Discrete] {
                let mut wanted = std::collections::BTreeSet::new();
                for s in setpoints.iter().filter(|s| s.table == t) {
                    for a in u32::from(s.start)..u32::from(s.start) + u32::from(s.count) {
                        wanted.insert(a);
                    }
                }
                let mut read = Vec::new();
                let limit = if is_register_table(t) { max_registers } else { 2000 };
                let mine: Vec<_> = ops.iter().filter(|o| o.table == t).collect();
                for o in &mine {
                    prop_assert!(o.count >= 1 && o.count <= limit);
                    read.extend(u32::from(o.start)..u32::from(o.start) + u32::from(o.count));
                }
                let read_set: std::collections::BTreeSet<u32> = read.iter().copied().collect();
                prop_assert_eq!(read.len(), read_set.len(), "an address was read twice");
                prop_assert_eq!(&read_set, &wanted);
                // Minimal: the sum over contiguous runs of ceil(run / limit).
                let mut runs = 0usize;
                let mut prev: Option<u32> = None;
                let mut run_len = 0u32;
                for a in &wanted {
                    if prev.is_some_and(|p| p + 1 == *a) {
                        run_len += 1;
                    } else {
                        if run_len > 0 { runs += run_len.div_ceil(u32::from(limit)) as usize; }
                        run_len = 1;
                    }
                    prev = Some(*a);
                }
                if run_len > 0 { runs += run_len.div_ceil(u32::from(limit)) as usize; }
                prop_assert_eq!(mine.len(), runs);
            }
        }
    }
}
