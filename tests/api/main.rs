//! Black-box tests: the real binary, a real redb file in a temp dir, real HTTP on loopback.
//! One binary, one module per concern; `helpers` starts servers and runs the CLI.

mod authorization;
mod hardening;
mod helpers;
mod hostile_input;
mod keys;
mod leaks;
mod metrics;
mod openapi;
mod pages;
mod rate_limits;
mod verification;
