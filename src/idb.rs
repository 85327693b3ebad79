//! The few IndexedDB bindings logfold needs beyond rexie: transactions with a durability hint,
//! and requests and transactions as futures.
//!
//! Rexie builds the schema (JS deletes databases); the live connection is web-sys's own because
//! rexie exposes neither `durability` nor the connection's `versionchange` event.

use js_sys::{Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbFactory, IdbObjectStore, IdbRequest, IdbTransaction};

#[wasm_bindgen(inline_js = r#"
export function requestPromise(req) {
  // A request awaited after it finished (another await came first) fires no more events.
  if (req.readyState === "done") return req.error ? Promise.reject(req.error) : Promise.resolve(req.result);
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
export function transactionPromise(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new DOMException("transaction aborted", "AbortError"));
  });
}
export function openTransaction(db, stores, mode, durability) {
  return db.transaction(stores, mode, { durability });
}
export function lastKeyBelow(store, bound) {
  const req = store.openKeyCursor(IDBKeyRange.upperBound(bound, true), "prev");
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result ? req.result.key : undefined);
    req.onerror = () => reject(req.error);
  });
}
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
export function indexedDbFactory() {
  return globalThis.indexedDB;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = requestPromise)]
    fn request_promise(req: &IdbRequest) -> Promise;
    #[wasm_bindgen(js_name = transactionPromise)]
    fn transaction_promise(tx: &IdbTransaction) -> Promise;
    #[wasm_bindgen(catch, js_name = openTransaction)]
    fn open_transaction(
        db: &IdbDatabase,
        stores: &Array,
        mode: &str,
        durability: &str,
    ) -> Result<IdbTransaction, JsValue>;
    #[wasm_bindgen(js_name = indexedDbFactory)]
    fn indexed_db_factory() -> Option<IdbFactory>;
    #[wasm_bindgen(js_name = sleep)]
    fn sleep_promise(ms: i32) -> Promise;
    #[wasm_bindgen(js_name = lastKeyBelow)]
    fn last_key_below_promise(store: &IdbObjectStore, bound: f64) -> Promise;
}

/// The largest key of `store` below `bound`, if any (a key cursor walking back one step).
pub async fn last_key_below(store: &IdbObjectStore, bound: f64) -> Result<JsValue, JsValue> {
    JsFuture::from(last_key_below_promise(store, bound)).await
}

/// Resolves after `ms` milliseconds. Never await it inside a transaction.
pub async fn sleep(ms: i32) -> Result<JsValue, JsValue> {
    JsFuture::from(sleep_promise(ms)).await
}

/// `indexedDB` of this window or worker.
pub fn factory() -> Result<IdbFactory, JsValue> {
    indexed_db_factory().ok_or_else(|| JsValue::from_str("IndexedDB is not available here"))
}

/// Waits for a request's result. Only IndexedDB work may happen between issuing a request in a
/// transaction and awaiting it, or the transaction auto-commits.
pub async fn request(req: &IdbRequest) -> Result<JsValue, JsValue> {
    JsFuture::from(request_promise(req)).await
}

/// A promise for the transaction's outcome. Create it before awaiting anything else: the
/// transaction may finish as soon as control returns to the event loop.
pub fn done(tx: &IdbTransaction) -> JsFuture {
    JsFuture::from(transaction_promise(tx))
}

/// Opens a transaction; `durability` is `"strict"`, `"relaxed"` or `"default"`.
/// MDN Reference: [IDBDatabase/transaction](https://developer.mozilla.org/docs/Web/API/IDBDatabase/transaction)
pub fn transaction(
    db: &IdbDatabase,
    stores: &[&str],
    readwrite: bool,
    durability: &str,
) -> Result<IdbTransaction, JsValue> {
    let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
    let mode = if readwrite { "readwrite" } else { "readonly" };
    open_transaction(db, &names, mode, durability)
}
