//! Code both sides of FedRad use: the generated wire types, aggregates, certificates and
//! identity, the clinical schema, statistics, and the federated algorithms.
//!
//! Each module under [`algorithms`] shows both halves of one federated computation (what a
//! site computes, how the coordinator combines it) beside its pooled reference, so the claim
//! "federated equals pooled" can be read and tested in one place.

pub mod proto {
    tonic::include_proto!("fedrad.v1");
}

pub mod aggregate;
pub mod algorithms;
pub mod clinical;
pub mod identity;
pub mod onnx_input;
pub mod pki;
pub mod plan;
pub mod stats;
pub mod tls;

/// Protocol version spoken on the wire; both ends refuse another.
pub const PROTOCOL: &str = "fedrad.v1";

/// gRPC's default 4 MiB message limit is too small for a 2000×2000 Gram matrix (32 MB);
/// both ends raise it to this, and it can be lowered in config.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
