//! End-to-end tests: they run the real `steward` binary on real data directories and talk to
//! the real server over HTTP with curl.

mod access;
mod audit;
mod browser;
mod consent;
mod console;
mod foundation;
mod importers;
mod interactions;
mod layering;
mod postgres;
mod recipients;
mod requests;
mod support;
mod vectors;
