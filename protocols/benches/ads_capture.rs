//! What a ads capture costs the PLC (being written).

fn main() {}
