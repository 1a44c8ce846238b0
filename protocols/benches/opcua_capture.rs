//! What a opcua capture costs the PLC (being written).

fn main() {}
