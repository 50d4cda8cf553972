//! The integration tests: each test spawns its own gateway on port 0 with its own store and
//! mappings directory, and talks to it over real HTTP. Tests of the Postgres store each create
//! a database of their own on the server at `FXHOOK_TEST_DATABASE_URL` (see `pg`).

mod admin;
mod binary;
mod card_quality;
mod cards;
mod catalogue_alerts;
mod catalogue_ci;
mod catalogue_git;
mod catalogue_git_events;
mod catalogue_ops;
mod console;
mod console_browser;
mod contract;
mod debug_logs;
mod dedup;
mod delivery;
mod delivery_errors;
mod examples;
mod fake_fxiaoke;
mod fake_fxiaoke_tests;
mod fuzz;
mod hardening;
mod helpers;
mod live;
mod locale;
mod locale_catalogue;
mod log_injection;
mod mapping;
mod pg;
mod postgres_gateway;
mod postgres_tls;
mod presets;
mod process;
mod proxy;
mod prune;
mod reload;
mod replicas;
mod restarts;
mod secrets_in_logs;
mod signatures;
mod store;
mod store_contract;
mod store_copy;
mod storms;
mod tokens;
