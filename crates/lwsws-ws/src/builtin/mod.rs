//! The protocols every lwsws has, with the original's wire behaviour.

pub mod dumb_increment;
pub mod echo;
pub mod mirror;
pub mod openmetrics;
pub mod raw_proxy;
pub mod server_status;
