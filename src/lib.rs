//! fxhook: a self-hosted gateway that receives webhooks from CI, monitoring and Git hosts,
//! verifies them, maps them to Fxiaoke composite cards and delivers them, losing none.
//!
//! # Layout
//!
//! The pipeline, one module per step, in the order a request goes through them:
//!
//! - [`receive`]: `POST /hooks/{source}`, the size limit, the HTTP answers, health endpoints;
//! - [`verify`]: signature and token schemes, presets, secrets; only it makes a `Verified` value;
//! - [`map`]: the mapping language (rules, JSONPath, templates) that turns a payload into a card;
//! - [`route`]: recipients from groups, ids and lookups, split into ≤500 per message;
//! - [`enqueue`]: the group-commit writer that stores events and messages before the 202;
//! - [`deliver`]: the worker that sends queued messages and records every attempt.
//!
//! Around it: [`config`] (settings), [`source`] (loading mapping files), [`reload`] (watching
//! and swapping them), [`card`] (the composite card, its fitting, the send body), [`store`]
//! (SQLite schema and queries), [`admin`] (the `/admin` API), [`metrics`] (Prometheus
//! counters), [`diagnostic`] (`file:line:col` problems), [`startup`] (wiring), [`cli`] (the
//! `fxhook` command), [`telemetry`] (logs).

pub mod admin;
pub mod card;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod diagnostic;
pub mod enqueue;
pub mod health;
pub mod map;
pub mod metrics;
pub mod pipeline;
pub mod receive;
pub mod reload;
pub mod route;
pub mod source;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod verify;
