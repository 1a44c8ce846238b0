//! The cip collector against its simulator over loopback (being written).

mod common;
