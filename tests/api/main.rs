//! The integration tests: each test spawns its own gateway on port 0 with its own store and
//! mappings directory, and talks to it over real HTTP.

mod admin;
mod binary;
mod catalogue_git;
mod contract;
mod delivery;
mod fake_fxiaoke;
mod helpers;
mod mapping;
mod process;
mod proxy;
mod reload;
mod signatures;
mod store;
