//! What a cip capture costs the PLC (being written).

fn main() {}
