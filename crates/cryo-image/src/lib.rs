//! The CRIU image format: framing, magics and protobuf messages.
#![forbid(unsafe_code)]
