//! `LogfoldError`: one JS error class with a stable `code` and the details a caller needs.

use std::cell::RefCell;
use std::fmt;

use js_sys::{Function, Object, Reflect};
use logfold_core::{AppendError, ConflictError, ExpectedVersion, InvalidEvent, SegmentError};
use wasm_bindgen::prelude::*;

/// Why the log closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// `close()` was called.
    Closed,
    /// Another connection upgraded or deleted the database.
    VersionChange,
    /// Another tab opened the log with sync, which moved its history to the outbox: this
    /// tab's positions and tables no longer hold.
    Synced,
    /// Another tab dropped history (`truncateBefore`) that this tab had not folded yet.
    Truncated,
}

impl CloseReason {
    /// The reason as JS sees it (`onClose`, `details.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Closed => "closed",
            CloseReason::VersionChange => "versionchange",
            CloseReason::Synced => "synced",
            CloseReason::Truncated => "truncated",
        }
    }
}

/// Everything the browser log can fail with.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// An event broke a validation rule; nothing was written.
    Invalid(InvalidEvent),
    /// The options do not fit the call.
    InvalidArgument {
        /// The option or argument at fault.
        argument: String,
        /// What is wrong with it.
        message: String,
    },
    /// A stream was not at the expected version; nothing was written.
    Conflict(ConflictError),
    /// The browser refused to store more.
    QuotaExceeded,
    /// A stored segment is damaged; positions `from..=to` cannot be read.
    Corrupt {
        /// First position of the damaged segment.
        from: u64,
        /// Last position of the damaged segment.
        to: u64,
        /// What the check found.
        reason: String,
    },
    /// A stored sync record (an outbox batch, a rejection, the batch counter) is damaged.
    CorruptRecord {
        /// The store: `outbox`, `rejections` or `meta`.
        store: &'static str,
        /// The record's key (a batch number; 0 when the damage is not one record's).
        key: u64,
        /// What the check found.
        reason: String,
    },
    /// Positions before `start` were dropped by `truncateBefore`; `needed` is the first one
    /// asked for (a read, a past state, or a projection without a snapshot after them).
    Truncated {
        /// The first position the log keeps.
        start: u64,
        /// The first position that was asked for.
        needed: u64,
    },
    /// The stored log was written by a newer (or unknown) format.
    UnsupportedFormat(u32),
    /// The log is closed.
    Closed(CloseReason),
    /// Any other IndexedDB failure, with the DOMException's name.
    Storage {
        /// The DOMException's name.
        name: String,
        /// Its message.
        message: String,
    },
    /// A projection definition was refused; `path` points at the problem.
    InvalidProjection {
        /// The projection's name.
        projection: String,
        /// Where in `projections`, e.g. `projections.accounts.on.Deposited.add.balance`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A sync step was refused and changed nothing: `FENCED` (another tab leads sync now) or
    /// `SYNC_PROTOCOL` (the server's answer does not fit this log).
    Sync {
        /// `FENCED` or `SYNC_PROTOCOL`.
        code: &'static str,
        /// What happened.
        message: String,
    },
}

impl Error {
    /// The stable code JS sees.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "INVALID_EVENT",
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Error::Conflict(_) => "CONFLICT",
            Error::QuotaExceeded => "QUOTA_EXCEEDED",
            Error::Corrupt { .. } | Error::CorruptRecord { .. } => "CORRUPT",
            Error::Truncated { .. } => "TRUNCATED",
            Error::UnsupportedFormat(_) => "UNSUPPORTED_FORMAT",
            Error::Closed(_) => "CLOSED",
            Error::Storage { .. } => "STORAGE",
            Error::InvalidProjection { .. } => "INVALID_PROJECTION",
            Error::Sync { code, .. } => code,
        }
    }

    /// An invalid argument.
    pub fn argument(argument: &str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            argument: argument.to_owned(),
            message: message.into(),
        }
    }

    /// Maps a failed IndexedDB request or transaction (a DOMException) to an error.
    pub fn from_dom(err: &JsValue) -> Self {
        let get = |k: &str| {
            Reflect::get(err, &k.into())
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default()
        };
        let name = get("name");
        let message = get("message");
        match name.as_str() {
            "QuotaExceededError" => Error::QuotaExceeded,
            _ => Error::Storage {
                name: if name.is_empty() {
                    "Error".into()
                } else {
                    name
                },
                message: if message.is_empty() {
                    format!("{err:?}")
                } else {
                    message
                },
            },
        }
    }

    fn details(&self) -> Object {
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &k.into(), &v);
        };
        match self {
            Error::Invalid(e) => {
                set("index", (e.index as f64).into());
                set("field", e.field.as_str().into());
                set("reason", e.reason.as_str().into());
            }
            Error::InvalidArgument { argument, .. } => set("argument", argument.as_str().into()),
            Error::Conflict(c) => {
                set("stream", c.stream.as_str().into());
                set("expected", expected_to_js(c.expected));
                set("actual", (c.actual as f64).into());
            }
            Error::QuotaExceeded => set("name", "QuotaExceededError".into()),
            Error::Corrupt { from, to, reason } => {
                set("from", (*from as f64).into());
                set("to", (*to as f64).into());
                set("reason", reason.as_str().into());
            }
            Error::CorruptRecord { store, key, reason } => {
                // No positions are lost: from and to stay 0, as the types say.
                set("from", 0.into());
                set("to", 0.into());
                set("reason", reason.as_str().into());
                set("store", (*store).into());
                set("key", (*key as f64).into());
            }
            Error::Truncated { start, needed } => {
                set("start", (*start as f64).into());
                set("needed", (*needed as f64).into());
            }
            Error::UnsupportedFormat(f) => set("format", (*f).into()),
            Error::Closed(r) => set("reason", r.as_str().into()),
            Error::Storage { name, .. } => set("name", name.as_str().into()),
            Error::InvalidProjection {
                projection, path, ..
            } => {
                set("projection", projection.as_str().into());
                set("path", path.as_str().into());
            }
            Error::Sync { .. } => {}
        }
        o
    }

    /// The error as a JS value: a `LogfoldError` once the wrapper has registered the class,
    /// else a plain `Error` with the same `code` and `details`.
    pub fn to_js(&self) -> JsValue {
        let message = JsValue::from_str(&self.to_string());
        let code = JsValue::from_str(self.code());
        let details: JsValue = self.details().into();
        ERROR_CLASS.with(|class| {
            if let Some(class) = class.borrow().as_ref() {
                let args = js_sys::Array::of3(&code, &message, &details);
                if let Ok(e) = Reflect::construct(class, &args) {
                    return e;
                }
            }
            let e = js_sys::Error::new(&self.to_string());
            let _ = Reflect::set(&e, &"code".into(), &code);
            let _ = Reflect::set(&e, &"details".into(), &details);
            e.into()
        })
    }
}

fn expected_to_js(e: ExpectedVersion) -> JsValue {
    match e {
        ExpectedVersion::Any => "any".into(),
        ExpectedVersion::NoStream => "none".into(),
        ExpectedVersion::Exact(v) => (v as f64).into(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(e) => write!(f, "invalid event: {e}"),
            Error::InvalidArgument { argument, message } => {
                write!(f, "invalid {argument}: {message}")
            }
            Error::Conflict(c) => write!(f, "{c}"),
            Error::QuotaExceeded => f.write_str(
                "the browser's storage quota for this origin is exhausted; nothing was written",
            ),
            Error::Corrupt { from, to, reason } => {
                write!(f, "the segment holding positions {from}..={to} is damaged ({reason}); see Logfold.repair")
            }
            Error::CorruptRecord { store, key, reason } => write!(
                f,
                "the {store} record {key} is damaged ({reason}); Logfold.repair drops it"
            ),
            Error::Truncated { start, needed } => write!(
                f,
                "position {needed} is no longer kept: this log keeps positions from {start} on (truncateBefore)"
            ),
            Error::UnsupportedFormat(v) => write!(
                f,
                "the stored log has format {v}, which this version of logfold cannot read"
            ),
            Error::Closed(r) => write!(f, "the log is closed ({})", r.as_str()),
            Error::Storage { name, message } => write!(f, "IndexedDB failed: {name}: {message}"),
            Error::InvalidProjection { path, message, .. } => {
                write!(f, "invalid projection: {path}: {message}")
            }
            Error::Sync { message, .. } => f.write_str(message),
        }
    }
}

impl From<AppendError> for Error {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Invalid(e) => Error::Invalid(e),
            AppendError::Conflict(c) => Error::Conflict(c),
            AppendError::InvalidArgument(m) => Error::argument("expectedVersions", m),
        }
    }
}

impl Error {
    /// A damaged segment at positions `from..=to`.
    pub fn corrupt(from: u64, to: u64, e: SegmentError) -> Self {
        match e {
            SegmentError::UnsupportedFormat(v) => Error::UnsupportedFormat(v as u32),
            SegmentError::Corrupt(reason) => Error::Corrupt { from, to, reason },
        }
    }
}

impl From<Error> for JsValue {
    fn from(e: Error) -> Self {
        e.to_js()
    }
}

thread_local! {
    static ERROR_CLASS: RefCell<Option<Function>> = const { RefCell::new(None) };
}

/// Registers the JS `LogfoldError` class so errors thrown from wasm are its instances.
#[wasm_bindgen(js_name = setErrorClass)]
pub fn set_error_class(class: Function) {
    ERROR_CLASS.with(|c| *c.borrow_mut() = Some(class));
}
