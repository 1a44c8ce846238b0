//! What a s7 capture costs the PLC (being written).

fn main() {}
