//! Security properties of the running service, each over real HTTP: what a
//! holder of something (a captured signed message, a leaked overlay URL, an
//! address) can and cannot do. docs/SECURITY.md is the threat model.

mod http_limits;
mod internal;
mod limits;
mod process;
mod replay;
mod revocations;
mod sessions;
