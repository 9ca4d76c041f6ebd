//! Kernel feature probes for `cryo check`.
