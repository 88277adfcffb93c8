//! Integration tests for switchboard-auth, one binary to keep link time down. Every HTTP peer
//! is a real axum server on 127.0.0.1:0.

mod common;
mod dev_idp;
mod edge;
mod leak;
mod tokens;
