//! Connector benches (being written).
fn main() {}
