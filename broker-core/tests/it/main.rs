//! The broker core's integration tests, one binary: the broker stepped through its public API
//! with a fake clock, each module one area of the specification, named after its statements.

mod common;

mod admin;
mod auth;
mod changes;
mod cluster;
mod congestion;
mod connect;
mod limits;
mod model;
mod mutants;
mod permissions;
mod properties;
mod qos;
mod retained;
mod subscriptions;
mod timers;
mod wills;
