//! logfold: an offline-first event store for the web.
//!
//! The append-only event log lives in IndexedDB and is the source of truth. This crate is the
//! WebAssembly half of the npm package: thin bindings over [`log::Log`] (IndexedDB storage) and
//! `logfold-core` (events, validation, the segment codec). The JS wrapper (`js/index.js`) adds
//! input checks that need JS types, the async iterator and the `LogfoldError` class.

#![warn(missing_docs)]

pub mod error;
mod idb;
pub mod log;

use js_sys::{Function, Promise};
use logfold_core::{Batch, ExpectedVersion, NewEvent};
use serde::Deserialize;
use serde_json::value::RawValue;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::error::Error;
use crate::log::{Durability, Log};

pub use error::set_error_class;

/// An event as the JS wrapper sends it: `data` and `meta` stay raw JSON text.
#[derive(Deserialize)]
struct WireEvent<'a> {
    stream: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(borrow, default)]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireExpected {
    Exact(u64),
    Keyword(String),
}

fn parse_batch(events_json: &str, expected_json: &str) -> Result<Batch, Error> {
    let wire: Vec<WireEvent<'_>> = serde_json::from_str(events_json)
        .map_err(|e| Error::argument("events", format!("not an event list: {e}")))?;
    let expected: Vec<(String, WireExpected)> = if expected_json.is_empty() {
        Vec::new()
    } else {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(expected_json)
            .map_err(|e| Error::argument("expectedVersions", e.to_string()))?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_value(v).map(|v| (k, v)).map_err(|_| {
                    Error::argument(
                        "expectedVersions",
                        "a version is a non-negative integer or \"none\"",
                    )
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut batch = Batch::new(
        wire.into_iter()
            .map(|w| NewEvent {
                stream: w.stream,
                event_type: w.event_type,
                data: w.data.get().to_owned(),
                meta: w.meta.map(|m| m.get().to_owned()).filter(|m| m != "null"),
            })
            .collect(),
    );
    for (stream, v) in expected {
        let v = match v {
            WireExpected::Exact(n) => ExpectedVersion::Exact(n),
            WireExpected::Keyword(k) if k == "none" => ExpectedVersion::NoStream,
            WireExpected::Keyword(k) => {
                return Err(Error::argument(
                    "expectedVersions",
                    format!("{k:?} is not a version; use a number or \"none\""),
                ))
            }
        };
        batch = batch.expect(stream, v);
    }
    Ok(batch)
}

/// The wasm side of an open log; the JS `Log` class wraps it.
#[wasm_bindgen]
pub struct LogCore(Log);

#[wasm_bindgen]
impl LogCore {
    /// Opens log `name`. `durability` is `"strict"` or `"relaxed"`.
    #[wasm_bindgen(unchecked_return_type = "Promise<LogCore>")]
    pub fn open(name: String, durability: String, on_close: Option<Function>) -> Promise {
        future_to_promise(async move {
            let durability = match durability.as_str() {
                "strict" => Durability::Strict,
                "relaxed" => Durability::Relaxed,
                other => {
                    return Err(Error::argument(
                        "durability",
                        format!("{other:?} is not \"strict\" or \"relaxed\""),
                    )
                    .into())
                }
            };
            let log = Log::open(&name, durability, on_close).await?;
            Ok(LogCore(log).into())
        })
    }

    /// The log's name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.0.name().to_owned()
    }

    /// This client's id.
    #[wasm_bindgen(getter, js_name = clientId)]
    pub fn client_id(&self) -> String {
        self.0.client_id().to_owned()
    }

    /// The highest position this handle has seen.
    #[wasm_bindgen(getter)]
    pub fn head(&self) -> f64 {
        self.0.head() as f64
    }

    /// Whether the log is closed.
    #[wasm_bindgen(getter)]
    pub fn closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Appends a batch given as JSON text (`[{stream, type, data, meta?}]`) with optional
    /// expected versions (`{stream: n | "none"}`, or empty). Resolves to
    /// `{"time", "events": [[id, version, seq], …]}` as JSON text; the wrapper joins it with
    /// the events it already holds instead of paying to send them back.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn append(&self, events_json: &str, expected_json: &str) -> Promise {
        let batch = parse_batch(events_json, expected_json);
        let log = self.0.clone();
        future_to_promise(async move {
            let events = log.append(batch?).await?;
            let mut out = String::with_capacity(32 + events.len() * 64);
            out.push_str("{\"time\":");
            out.push_str(&events.first().map_or(0, |e| e.time).to_string());
            out.push_str(",\"events\":[");
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("[\"");
                e.id.write_to(&mut out);
                out.push_str(&format!("\",{},{}]", e.version, e.seq));
            }
            out.push_str("]}");
            Ok(out.into())
        })
    }

    /// Up to `limit` events after position `after`, as JSON text of an array.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn read(&self, after: f64, limit: f64) -> Promise {
        let log = self.0.clone();
        future_to_promise(
            async move { Ok(log.read_json(after as u64, limit as u64).await?.into()) },
        )
    }

    /// The stream's current version.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn version(&self, stream: String) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move { Ok((log.version(&stream).await? as f64).into()) })
    }

    /// Merges small segments now.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn compact(&self) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move {
            log.compact().await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Counters since open.
    #[wasm_bindgen(unchecked_return_type = "LogStats")]
    pub fn stats(&self) -> JsValue {
        let ser = serde_wasm_bindgen::Serializer::json_compatible();
        serde::Serialize::serialize(&self.0.stats(), &ser).unwrap_or(JsValue::NULL)
    }

    /// Waits for pending appends, then closes.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move {
            log.close().await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// Deletes log `name`'s database.
#[wasm_bindgen(js_name = destroyLog, unchecked_return_type = "Promise<void>")]
pub fn destroy_log(name: String) -> Promise {
    future_to_promise(async move {
        log::destroy(&name).await?;
        Ok(JsValue::UNDEFINED)
    })
}

/// Keeps the intact prefix of a damaged log.
#[wasm_bindgen(js_name = repairLog, unchecked_return_type = "Promise<RepairReport>")]
pub fn repair_log(name: String) -> Promise {
    future_to_promise(async move {
        let report = log::repair(&name).await?;
        let ser = serde_wasm_bindgen::Serializer::json_compatible();
        let dropped = report
            .dropped
            .map(|(from, to)| serde_json::json!({ "from": from, "to": to }));
        let value = serde_json::json!({ "head": report.head, "dropped": dropped });
        Ok(serde::Serialize::serialize(&value, &ser)?)
    })
}
