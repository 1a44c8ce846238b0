//! End to end over loopback: the `otdrift` binary against the cip simulator process
//! (being written).

mod support;
