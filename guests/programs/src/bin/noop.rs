//! Does nothing and exits 0: the floor of start → join.
fn main() {}
