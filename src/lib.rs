//! fxhook: a self-hosted gateway that receives webhooks from CI, monitoring and Git hosts,
//! verifies them, maps them to Fxiaoke composite cards and delivers them, losing none.
//!
//! # Layout
//!
//! The pipeline, one module per step, in the order a request goes through them:
//!
//! - [`receive`]: `POST /hooks/{source}`, the body's size and deadline, the HTTP answers, the
//!   request-id and access-log middleware;
//! - [`verify`]: signature and token schemes, presets, secrets; only it makes a `Verified` value;
//! - [`map`]: the mapping language (rules, JSONPath, templates) that turns a payload into a card
//!   and says whom it is for;
//! - [`route`]: those recipients resolved against the groups, split into ≤500 per message;
//! - [`enqueue`]: the group-commit writer that stores events and messages before the 202;
//! - [`deliver`]: the worker that sends queued messages and records every attempt.
//!
//! [`pipeline`] is the one function that maps, routes and says what to store for a verified
//! payload; every caller uses it. [`store`] is the interface of the store (one trait per user)
//! and its SQLite backend; it owns every SQL statement and every state name.
//!
//! Around them: [`config`] (settings, parsed), [`source`] (compiling and loading mapping files),
//! [`reload`] (watching and swapping them), [`card`] (the composite card, its fitting, the send
//! body, recipient ids), [`health`] (`/healthz`, `/readyz`, `/metrics`), [`admin`] (the `/admin`
//! API), [`metrics`] (Prometheus counters), [`diagnostic`] (`file:line:col` problems),
//! [`startup`] (wiring), [`cli`] (the `fxhook` command), [`telemetry`] (logs).
//!
//! The graph has no cycle: `config`, `card`, `diagnostic` and `metrics` are leaves; `verify`
//! and `map` sit on them; `route` on `map`; `source` on `map`, `verify` and `route`; `store` on
//! `config`; `pipeline` on `source`, `route` and `store`; `enqueue`, `deliver`, `reload` on
//! `store` and `source`; `receive`, `health` and `admin` on those; `startup` and `cli` on top.

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
