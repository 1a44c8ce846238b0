//! The only ADS requests the collector can build, and the AMS/TCP frames that carry them.
//!
//! [`Request`] is the read-only boundary: [`Request::command_and_payload`] can only produce
//! ReadDeviceInfo (1), Read (2), ReadState (4) and ReadWrite (9) with the read-only index
//! groups symbol-info-by-name (0xF009) and sum-read (0xF080, 0xF083). Write (3), WriteControl
//! (5), AddDeviceNotification (6) and DeleteDeviceNotification (7) have no variant here.

use super::wire::{AMS_HEADER, AMS_TCP_PREFIX, AmsAddr};

/// ADS command ids (Beckhoff ADS specification).
pub(crate) mod command {
    /// ReadDeviceInfo: device name and version.
    pub const DEVICE_INFO: u16 = 1;
    /// Read: bytes at an index group/offset.
    pub const READ: u16 = 2;
    /// ReadState: ADS state and device state.
    pub const READ_STATE: u16 = 4;
    /// ReadWrite: send a parameter block, read an answer (used by the read-only services
    /// below; the collector never sends data to a value area).
    pub const READ_WRITE: u16 = 9;
}

/// Index groups the collector reads.
pub(crate) mod group {
    /// Symbol version (one byte; moves on a download or restart).
    pub const SYM_VERSION: u32 = 0xF008;
    /// Symbol entry by name (ReadWrite; the written data is the name).
    pub const SYM_INFO_BY_NAME_EX: u32 = 0xF009;
    /// The symbol table.
    pub const SYM_UPLOAD: u32 = 0xF00B;
    /// Legacy upload info: symbol count and table size (8 bytes).
    pub const SYM_UPLOAD_INFO: u32 = 0xF00C;
    /// The data-type table.
    pub const SYM_DT_UPLOAD: u32 = 0xF00E;
    /// Upload info 2: symbol and data-type counts and table sizes (24 or 64 bytes).
    pub const SYM_UPLOAD_INFO2: u32 = 0xF00F;
    /// Sum read: results, then each sub-read's data at its requested length.
    pub const SUMUP_READ: u32 = 0xF080;
    /// Sum read with lengths: (result, length) pairs, then the data.
    pub const SUMUP_READ_EX: u32 = 0xF083;
}

/// State flags of a request over TCP: "ADS command".
const FLAGS_REQUEST: u16 = 0x0004;
/// One sub-read of a sum-read, or a plain Read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadSpec {
    pub group: u32,
    pub offset: u32,
    pub length: u32,
}

/// The requests the collector can send. Reads only.
#[derive(Clone, Debug)]
pub(crate) enum Request {
    /// ReadDeviceInfo (command 1).
    DeviceInfo,
    /// ReadState (command 4).
    ReadState,
    /// Read (command 2).
    Read(ReadSpec),
    /// ReadWrite 0xF009: the symbol entry of one name, at most `max` bytes back.
    SymbolInfoByName { name: String, max: u32 },
    /// ReadWrite 0xF083 (`ex`) or 0xF080: several reads in one round trip.
    SumRead { ex: bool, reads: Vec<ReadSpec> },
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A short name for an index group in messages.
pub(crate) fn group_name(group: u32) -> Option<&'static str> {
    Some(match group {
        group::SYM_VERSION => "symbol version",
        group::SYM_INFO_BY_NAME_EX => "symbol info by name",
        group::SYM_UPLOAD => "symbol upload",
        group::SYM_UPLOAD_INFO => "upload info",
        group::SYM_DT_UPLOAD => "data-type upload",
        group::SYM_UPLOAD_INFO2 => "upload info 2",
        group::SUMUP_READ => "sum-read",
        group::SUMUP_READ_EX => "sum-read with lengths",
        _ => return None,
    })
}

impl Request {
    /// The command id and the data block. This match is the collector's read-only
    /// boundary: it produces commands 1, 2, 4 and 9 only, and command 9 only with index
    /// groups 0xF009, 0xF080 and 0xF083, whose written part is a name or a list of reads.
    fn command_and_payload(&self) -> (u16, Vec<u8>) {
        match self {
            Request::DeviceInfo => (command::DEVICE_INFO, Vec::new()),
            Request::ReadState => (command::READ_STATE, Vec::new()),
            Request::Read(spec) => {
                let mut data = Vec::with_capacity(12);
                put_u32(&mut data, spec.group);
                put_u32(&mut data, spec.offset);
                put_u32(&mut data, spec.length);
                (command::READ, data)
            }
            Request::SymbolInfoByName { name, max } => {
                // The name is sent with a terminating NUL, as TwinCAT's own clients do.
                let write_len = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
                let mut data = Vec::with_capacity(16 + name.len() + 1);
                put_u32(&mut data, group::SYM_INFO_BY_NAME_EX);
                put_u32(&mut data, 0);
                put_u32(&mut data, *max);
                put_u32(&mut data, write_len);
                data.extend_from_slice(name.as_bytes());
                data.push(0);
                (command::READ_WRITE, data)
            }
            Request::SumRead { ex, reads } => {
                let count = u32::try_from(reads.len()).unwrap_or(u32::MAX);
                let mut data = Vec::with_capacity(16 + 12 * reads.len());
                put_u32(
                    &mut data,
                    if *ex {
                        group::SUMUP_READ_EX
                    } else {
                        group::SUMUP_READ
                    },
                );
                put_u32(&mut data, count);
                put_u32(&mut data, self.expected_read_length());
                put_u32(&mut data, count.saturating_mul(12));
                for spec in reads {
                    put_u32(&mut data, spec.group);
                    put_u32(&mut data, spec.offset);
                    put_u32(&mut data, spec.length);
                }
                (command::READ_WRITE, data)
            }
        }
    }

    /// What a sum-read asks back: per sub-read a result (and, with lengths, a length) plus
    /// its data.
    fn expected_read_length(&self) -> u32 {
        match self {
            Request::SumRead { ex, reads } => {
                let per = if *ex { 8u64 } else { 4u64 };
                let total: u64 = reads.iter().map(|r| per + u64::from(r.length)).sum();
                u32::try_from(total).unwrap_or(u32::MAX)
            }
            Request::Read(spec) => spec.length,
            Request::SymbolInfoByName { max, .. } => *max,
            Request::DeviceInfo | Request::ReadState => 0,
        }
    }

    /// The largest data block a well-formed answer can carry; a frame announcing more is
    /// refused before anything is allocated for it.
    pub(crate) fn max_answer_data(&self) -> usize {
        match self {
            Request::DeviceInfo => 24,
            Request::ReadState => 8,
            Request::Read(_) | Request::SymbolInfoByName { .. } | Request::SumRead { .. } => {
                8usize.saturating_add(self.expected_read_length() as usize)
            }
        }
    }

    /// The whole frame, prefix included.
    pub(crate) fn encode(&self, target: AmsAddr, source: AmsAddr, invoke_id: u32) -> Vec<u8> {
        let (cmd, data) = self.command_and_payload();
        let data_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(AMS_TCP_PREFIX + AMS_HEADER + data.len());
        out.extend_from_slice(&[0, 0]);
        put_u32(&mut out, data_len.saturating_add(AMS_HEADER as u32));
        target.write(&mut out);
        source.write(&mut out);
        out.extend_from_slice(&cmd.to_le_bytes());
        out.extend_from_slice(&FLAGS_REQUEST.to_le_bytes());
        put_u32(&mut out, data_len);
        put_u32(&mut out, 0);
        put_u32(&mut out, invoke_id);
        out.extend_from_slice(&data);
        out
    }

    /// The command id this request is sent with.
    pub(crate) fn command(&self) -> u16 {
        self.command_and_payload().0
    }

    /// What the request is, for error messages and logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Request::DeviceInfo => "ReadDeviceInfo (command 1)".to_owned(),
            Request::ReadState => "ReadState (command 4)".to_owned(),
            Request::Read(spec) => match group_name(spec.group) {
                Some(name) => format!(
                    "Read 0x{:04X}:{} ({name}, {} bytes)",
                    spec.group, spec.offset, spec.length
                ),
                None => format!(
                    "Read 0x{:04X}:0x{:X} ({} bytes)",
                    spec.group, spec.offset, spec.length
                ),
            },
            Request::SymbolInfoByName { name, .. } => {
                format!("ReadWrite 0xF009 (symbol info by name {name:?})")
            }
            Request::SumRead { ex, reads } => format!(
                "ReadWrite 0x{:04X} ({} of {} reads)",
                if *ex {
                    group::SUMUP_READ_EX
                } else {
                    group::SUMUP_READ
                },
                if *ex {
                    "sum-read with lengths"
                } else {
                    "sum-read"
                },
                reads.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: AmsAddr = AmsAddr {
        net_id: [5, 1, 2, 3, 1, 1],
        port: 851,
    };
    const S: AmsAddr = AmsAddr {
        net_id: [10, 0, 0, 9, 1, 1],
        port: 32905,
    };

    fn every_request() -> Vec<Request> {
        let spec = ReadSpec {
            group: 0x4040,
            offset: 8,
            length: 4,
        };
        vec![
            Request::DeviceInfo,
            Request::ReadState,
            Request::Read(spec),
            Request::SymbolInfoByName {
                name: "MAIN.x".into(),
                max: 1024,
            },
            Request::SumRead {
                ex: true,
                reads: vec![spec, spec],
            },
            Request::SumRead {
                ex: false,
                reads: vec![spec],
            },
        ]
    }

    #[test]
    fn only_read_requests_can_be_built() {
        for request in every_request() {
            let frame = request.encode(T, S, 7);
            let cmd = u16::from_le_bytes([frame[22], frame[23]]);
            assert!(
                matches!(cmd, 1 | 2 | 4 | 9),
                "{} built command {cmd}",
                request.describe()
            );
            assert!(!matches!(cmd, 3 | 5 | 6 | 7 | 8));
            if cmd == 9 {
                let group = u32::from_le_bytes([frame[38], frame[39], frame[40], frame[41]]);
                assert!(
                    matches!(group, 0xF009 | 0xF080 | 0xF083),
                    "ReadWrite to 0x{group:X}"
                );
            }
            // The frame is self-consistent.
            let len = u32::from_le_bytes([frame[2], frame[3], frame[4], frame[5]]) as usize;
            assert_eq!(len + AMS_TCP_PREFIX, frame.len());
            let data_len = u32::from_le_bytes([frame[26], frame[27], frame[28], frame[29]]);
            assert_eq!(data_len as usize + AMS_HEADER + AMS_TCP_PREFIX, frame.len());
        }
    }

    #[test]
    fn a_sum_read_asks_for_results_and_data() {
        let reads = vec![
            ReadSpec {
                group: 0x4040,
                offset: 0,
                length: 4,
            },
            ReadSpec {
                group: 0x4040,
                offset: 4,
                length: 80,
            },
        ];
        let ex = Request::SumRead {
            ex: true,
            reads: reads.clone(),
        };
        assert_eq!(ex.max_answer_data(), 8 + 2 * 8 + 84);
        let plain = Request::SumRead { ex: false, reads };
        assert_eq!(plain.max_answer_data(), 8 + 2 * 4 + 84);
    }
}
