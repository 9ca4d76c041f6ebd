//! Thin kernel interfaces: the only crate of cryo with `unsafe`.

pub mod probe;
pub mod proc_ctl;
