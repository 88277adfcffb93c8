//! The playground's files, compiled into the binary, served with their content types, a strict
//! Content-Security-Policy and validators so a browser revalidates instead of re-downloading.

use crate::ApiError;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use switchboard_core::Error;

/// Only the server's own scripts, styles and API: no inline script or style, no other origin, no
/// framing, no forms posting elsewhere. Scripts set element styles through the CSSOM, which this
/// allows, rather than through `style` attributes, which it does not.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/playground/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file but the page itself, by the name it is served under.
const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("signin.js", JS),
    asset!("chat.js", JS),
    asset!("details.js", JS),
    asset!("waterfall.js", JS),
    asset!("connections.js", JS),
];

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// `GET /`: the page.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

/// `GET /playground/assets/{file}`.
pub(crate) async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let asset = ASSETS.iter().find(|a| a.name == file).ok_or_else(|| {
        ApiError::new(Error::not_found(format!(
            "the playground has no file `{}`",
            crate::chat::truncated(&file)
        )))
    })?;
    Ok(serve(asset, &headers))
}

/// A strong validator of the file's bytes (FNV-1a), fixed for the life of the binary.
fn etag(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

/// The file, or 304 when the browser's copy is current. `no-cache` makes the browser ask each
/// time, so a new binary's page is never mixed with an old one's scripts; the answer is then a
/// bodiless 304.
fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let tag = etag(asset.body);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response =
        if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_distinct_name_and_the_page_names_only_served_files() {
        let page = std::str::from_utf8(INDEX.body).expect("the page is UTF-8");
        for asset in ASSETS {
            assert_eq!(ASSETS.iter().filter(|a| a.name == asset.name).count(), 1, "{}", asset.name);
        }
        for reference in page.split("/playground/assets/").skip(1) {
            let name: String = reference.chars().take_while(|c| *c != '"').collect();
            assert!(ASSETS.iter().any(|a| a.name == name), "the page refers to unserved `{name}`");
        }
    }

    #[test]
    fn modules_import_only_served_files() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).expect("scripts are UTF-8");
            for import in text.split("from './").skip(1) {
                let name: String = import.chars().take_while(|c| *c != '\'').collect();
                assert!(ASSETS.iter().any(|a| a.name == name), "{} imports unserved `{name}`", asset.name);
            }
        }
    }

    #[test]
    fn a_current_copy_is_answered_with_304() {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&etag(INDEX.body)).unwrap());
        assert_eq!(serve(&INDEX, &headers).status(), StatusCode::NOT_MODIFIED);
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"stale\""));
        let response = serve(&INDEX, &headers);
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
    }
}
