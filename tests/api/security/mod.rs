//! Abuse from outside, over real TCP against the running service.

mod http_limits;
