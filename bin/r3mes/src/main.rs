//! The `r3mes` command line.

fn main() {}
