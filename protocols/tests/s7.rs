//! The s7 collector against its simulator over loopback (being written).

mod common;
