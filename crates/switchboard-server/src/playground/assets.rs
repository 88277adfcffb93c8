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
    /// Its [`etag`], computed when the binary is compiled.
    etag: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {{
        const BODY: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/playground/", $name));
        const TAG: &[u8; ETAG_LEN] = &etag_bytes(BODY);
        Asset {
            name: $name,
            content_type: $type,
            body: BODY,
            etag: match std::str::from_utf8(TAG) {
                Ok(tag) => tag,
                Err(_) => panic!("an ETag is ASCII"),
            },
        }
    }};
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

/// FNV-1a of `bytes`: a strong validator of a file, fixed for the life of the binary.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The length of an ETag: a quoted 64-bit hash in hex.
const ETAG_LEN: usize = 18;

/// The ETag of `body`, `"` and the 16 hex digits of its [`fnv1a`] and `"`, as the `asset!` macro
/// computes it at compile time.
const fn etag_bytes(body: &[u8]) -> [u8; ETAG_LEN] {
    let hash = fnv1a(body);
    let mut tag = [b'"'; ETAG_LEN];
    let mut i = 0;
    while i < 16 {
        tag[i + 1] = b"0123456789abcdef"[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    tag
}

/// The ETag of `body`, formatted at run time (what a client compares against).
#[cfg(test)]
fn etag(body: &[u8]) -> String {
    format!("\"{:016x}\"", fnv1a(body))
}

/// The file, or 304 when the browser's copy is current. `no-cache` makes the browser ask each
/// time, so a new binary's page is never mixed with an old one's scripts; the answer is then a
/// bodiless 304.
fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let tag = asset.etag;
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response =
        if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, HeaderValue::from_static(tag));
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
    fn the_compiled_etags_are_the_hashes_of_the_bodies() {
        for asset in ASSETS.iter().chain([&INDEX]) {
            assert_eq!(asset.etag, etag(asset.body), "{}", asset.name);
        }
        assert_eq!(etag(b""), "\"cbf29ce484222325\"", "FNV-1a's offset basis");
        assert_eq!(etag(b"a"), "\"af63dc4c8601ec8c\"", "FNV-1a of `a`");
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
