//! The cryo command line.
#![forbid(unsafe_code)]

fn main() {}
