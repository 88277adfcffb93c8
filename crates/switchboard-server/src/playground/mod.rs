//! The web playground: a page at `/` where a person talks to the supervisor as a chosen identity
//! and sees what happened — the route, each agent, a trace waterfall and the audit rows.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /playground/assets/{file}` | its scripts and stylesheet (see `assets`) |
//! | `GET /playground/identities` | the development identities to sign in as (see `signin`) |
//! | `POST /playground/token` | a development token for one of them |
//!
//! The page is plain HTML, CSS and JavaScript modules compiled into the binary, so it works
//! offline and needs no build step. It talks to the server only through the public API (chat
//! streaming, traces, audit, connections) with the signed-in token, which it keeps in memory.

mod assets;
mod signin;

use crate::AppState;
use axum::Router;
use axum::routing::{get, post};

/// The playground's routes.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/playground/assets/{file}", get(assets::asset))
        .route("/playground/identities", get(signin::identities))
        .route("/playground/token", post(signin::token))
        .with_state(state)
}
