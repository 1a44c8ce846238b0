//! End to end over loopback: the `otdrift` binary against the opcua simulator process
//! (being written).

mod support;
