//! End to end over loopback: the `otdrift` binary against the s7 simulator process
//! (being written).

mod support;
