//! End to end over loopback: the `otdrift` binary against the ads simulator process
//! (being written).

mod support;
