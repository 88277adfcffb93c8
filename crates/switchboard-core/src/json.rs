//! JSON text of the runtime's own values, written with sonic-rs.
//!
//! A served run writes about 15 kB of JSON: the model requests, the caller's answer, and each
//! span's attributes (whose `mlflow.spanInputs`, JSON itself, is escaped again). serde_json
//! escapes strings a byte at a time, which made it the largest single cost of a served run
//! (12% of its instructions under callgrind); sonic-rs checks 32 bytes at a time and writes the
//! same text. Parsing, `Value` and `json!` stay serde_json's: only writing hot text goes here.

use crate::Error;
use serde::Serialize;

/// `value` as compact JSON, as `serde_json::to_string` writes it: same key order, escapes and
/// numbers. Fails only where serde_json would (a map whose keys are not strings).
pub fn to_json(value: &impl Serialize) -> Result<String, Error> {
    sonic_rs::to_string(value).map_err(not_json)
}

/// [`to_json`] appended to `out`, so a caller can size the buffer first.
pub fn write_json(out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), Error> {
    sonic_rs::to_writer(out, value).map_err(not_json)
}

fn not_json(e: sonic_rs::Error) -> Error {
    Error::internal(format!("cannot write as JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// Everything a span attribute, a model request or an answer can hold, written both ways.
    #[test]
    fn writes_what_serde_json_writes() {
        let escapes: String = (0u8..0x20).map(char::from).collect();
        let values = [
            json!({"b": 1, "a": [true, null, -7, 1.5, 1e300, 0.1, 123456789012345678u64]}),
            json!({"quote": "a \"quoted\" \\ word", "controls": escapes, "del": "\u{7f}"}),
            json!({"unicode": "héllo — 日本 🎉 \u{2028}\u{2029}", "empty": "", "nested": {"x": {"y": []}}}),
            json!("{\"messages\":[{\"role\":\"user\",\"content\":\"what is \\\"it\\\"?\"}]}".repeat(40)),
            json!([f64::MIN_POSITIVE, f64::MAX, -0.0, 2.5e-8, i64::MIN, u64::MAX]),
        ];
        for value in &values {
            assert_eq!(to_json(value).unwrap(), serde_json::to_string(value).unwrap());
            let mut out = b"prefix ".to_vec();
            write_json(&mut out, value).unwrap();
            assert_eq!(
                out,
                [b"prefix ".as_slice(), serde_json::to_string(value).unwrap().as_bytes()].concat()
            );
        }
        #[derive(Serialize)]
        struct Typed<'a> {
            text: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            absent: Option<u8>,
            ratio: f32,
            map: BTreeMap<&'a str, f64>,
        }
        let typed =
            Typed { text: "tab\there", absent: None, ratio: 0.3, map: BTreeMap::from([("nan", f64::NAN)]) };
        assert_eq!(to_json(&typed).unwrap(), serde_json::to_string(&typed).unwrap());
    }
}
