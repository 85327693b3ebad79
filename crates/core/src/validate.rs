//! The rules every appended event must pass, shared by the browser log and the sync server so
//! that an event one accepts the other never rejects for its shape.

use crate::event::NewEvent;

/// Size and name limits. The defaults are the ones the sync server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest event in bytes (stream + type + data + meta).
    pub max_event_bytes: usize,
    /// The longest stream or type name in bytes.
    pub max_name_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 1024 * 1024,
            max_name_bytes: 256,
        }
    }
}

/// Why an event in a batch was refused; nothing of its batch was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {index}: {field} {reason}")]
pub struct InvalidEvent {
    /// The event's index in its batch.
    pub index: usize,
    /// The field at fault, e.g. `stream`, `type`, `data`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidEvent {
    /// A refusal of `field` of the event at `index`.
    pub fn new(index: usize, field: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidEvent {
            index,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks a stream or type name: non-empty, within the limit, no control characters.
pub fn check_name(name: &str, limits: &Limits) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > limits.max_name_bytes {
        return Err(format!(
            "is {} bytes, over the limit of {}",
            name.len(),
            limits.max_name_bytes
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Checks one event's names and size. `data` and `meta` are trusted to be JSON text here: the
/// callers parse them (the browser with `JSON.stringify`, the server with serde) or use
/// [`check_json`].
pub fn check_event(event: &NewEvent, index: usize, limits: &Limits) -> Result<(), InvalidEvent> {
    check_name(&event.stream, limits).map_err(|r| InvalidEvent::new(index, "stream", r))?;
    check_name(&event.event_type, limits).map_err(|r| InvalidEvent::new(index, "type", r))?;
    let size = event.size();
    if size > limits.max_event_bytes {
        return Err(InvalidEvent::new(
            index,
            "data",
            format!(
                "makes the event {size} bytes, over the limit of {}",
                limits.max_event_bytes
            ),
        ));
    }
    Ok(())
}

/// Checks that `text` is one JSON value with finite numbers.
pub fn check_json(text: &str) -> Result<(), String> {
    crate::json::read::check(text).map_err(|e| format!("is not valid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, ty: &str, data: &str) -> NewEvent {
        NewEvent::new(stream, ty, data)
    }

    #[test]
    fn accepts_a_plain_event() {
        assert_eq!(
            check_event(&event("acct-1", "Opened", "{}"), 0, &Limits::default()),
            Ok(())
        );
    }

    #[test]
    fn names_the_field_and_index_of_a_bad_event() {
        let limits = Limits::default();
        let e = check_event(&event("", "Opened", "{}"), 3, &limits).unwrap_err();
        assert_eq!((e.index, e.field.as_str()), (3, "stream"));
        let e = check_event(&event("a", "", "{}"), 1, &limits).unwrap_err();
        assert_eq!(e.field, "type");
        let e = check_event(&event("a", "T\n", "{}"), 0, &limits).unwrap_err();
        assert!(e.reason.contains("control"));
        let long = "x".repeat(257);
        assert_eq!(
            check_event(&event(&long, "T", "{}"), 0, &limits)
                .unwrap_err()
                .field,
            "stream"
        );
    }

    #[test]
    fn refuses_an_event_over_the_size_limit() {
        let limits = Limits {
            max_event_bytes: 20,
            ..Limits::default()
        };
        let data = format!("\"{}\"", "y".repeat(20));
        let e = check_event(&event("s", "T", &data), 0, &limits).unwrap_err();
        assert_eq!(e.field, "data");
        assert!(check_event(&event("s", "T", "1"), 0, &limits).is_ok());
    }

    #[test]
    fn json_check_rejects_non_json() {
        assert!(check_json("{\"a\":[1,2,null]}").is_ok());
        assert!(check_json("NaN").is_err());
        assert!(check_json("{\"a\":}").is_err());
        assert!(check_json("1 2").is_err());
    }
}
