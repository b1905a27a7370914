//! Connector pipeline example (being written).
fn main() {}
