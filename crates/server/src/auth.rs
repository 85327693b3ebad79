//! Bearer tokens and their scopes, read from the `--tokens` file.
//!
//! One token per line: the token, then one or more scopes `LOG:read` or `LOG:write` (write
//! includes read); `*` as LOG means every log; optionally `user=NAME`, the identity that owns
//! the client ids the token pushes as (by default the token itself, see [`identity`]). Blank
//! lines and `#` comments are ignored:
//!
//! ```text
//! # token           scopes                  owner
//! alice-7f3e9c2d    notes:write todo:read   user=alice
//! backup-reader     *:read
//! ```

use std::path::Path;

use crate::error::AppError;

/// What a request needs to do with a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Pull and live.
    Read,
    /// Push.
    Write,
}

#[derive(Debug, Clone)]
struct Scope {
    log: String,
    write: bool,
}

#[derive(Debug, Clone)]
struct Token {
    secret: String,
    scopes: Vec<Scope>,
    user: Option<String>,
}

/// The known tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// The token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `TOKEN LOG:read|write ...`.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl Tokens {
    /// Reads a token file.
    pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Tokens::parse(&text)
    }

    /// Parses the token file format.
    pub fn parse(text: &str) -> Result<Tokens, TokenFileError> {
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let syntax = |reason: String| TokenFileError::Syntax {
                line: i + 1,
                reason,
            };
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let secret = words.next().unwrap_or_default().to_owned();
            let mut scopes = Vec::new();
            let mut user = None;
            for word in words {
                if let Some(name) = word.strip_prefix("user=") {
                    if name.is_empty() || user.is_some() {
                        return Err(syntax("user= needs one name".into()));
                    }
                    user = Some(name.to_owned());
                    continue;
                }
                let (log, access) = word.rsplit_once(':').ok_or_else(|| {
                    syntax(format!("scope {word:?} is not LOG:read or LOG:write"))
                })?;
                let write = match access {
                    "read" => false,
                    "write" => true,
                    _ => return Err(syntax(format!("access {access:?} is not read or write"))),
                };
                if log != "*" && !crate::valid_log_name(log) {
                    return Err(syntax(format!("{log:?} is not a valid log name")));
                }
                scopes.push(Scope {
                    log: log.to_owned(),
                    write,
                });
            }
            if scopes.is_empty() {
                return Err(syntax("a token needs at least one scope".into()));
            }
            if secret.len() < 8 {
                return Err(syntax("a token must be at least 8 characters".into()));
            }
            tokens.push(Token {
                secret,
                scopes,
                user,
            });
        }
        Ok(Tokens { tokens })
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Checks an `Authorization` header value against `log` and `access`; returns the token's
    /// identity (see [`identity`]).
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        log: &str,
        access: Access,
    ) -> Result<String, AppError> {
        let presented = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| AppError::Unauthorized("a bearer token is required".into()))?;
        // Compare against every token in constant time so timing reveals nothing.
        let mut found = None;
        for t in &self.tokens {
            if constant_time_eq(t.secret.as_bytes(), presented.as_bytes()) {
                found = Some(t);
            }
        }
        let token = found.ok_or_else(|| AppError::Unauthorized("unknown token".into()))?;
        let allowed = token
            .scopes
            .iter()
            .any(|s| (s.log == "*" || s.log == log) && (s.write || access == Access::Read));
        if allowed {
            Ok(token
                .user
                .as_ref()
                .map_or_else(|| identity(&token.secret), |u| format!("user:{u}")))
        } else {
            let what = match access {
                Access::Read => "read",
                Access::Write => "write to",
            };
            Err(AppError::Forbidden(format!(
                "this token may not {what} log {log:?}"
            )))
        }
    }
}

/// A token's identity when it names no `user=`, stored with the client ids it pushed as: a
/// SHA-256 of the secret (so the database never holds a usable token), 32 hex digits. A
/// rotated secret is a new identity; name a `user=` to keep a device's client id across it.
pub fn identity(secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scopes_and_checks_them() {
        let t = Tokens::parse("# c\nwriter-123 notes:write\n\nreader-123 *:read # all\n").unwrap();
        assert_eq!(t.len(), 2);
        let ok = |h: &str, log, a| t.authorize(Some(h), log, a).is_ok();
        assert!(ok("Bearer writer-123", "notes", Access::Write));
        assert!(ok("Bearer writer-123", "notes", Access::Read));
        assert!(!ok("Bearer writer-123", "other", Access::Read));
        assert!(ok("Bearer reader-123", "other", Access::Read));
        let who = t.authorize(Some("Bearer writer-123"), "notes", Access::Write);
        assert_eq!(who.unwrap(), identity("writer-123"));
        assert_ne!(identity("writer-123"), identity("reader-123"));
        assert_eq!(identity("writer-123").len(), 32);
        let named = Tokens::parse("new-secret-1 notes:write user=ada\n").unwrap();
        let who = named.authorize(Some("Bearer new-secret-1"), "notes", Access::Write);
        assert_eq!(who.unwrap(), "user:ada");
        assert!(Tokens::parse("new-secret-1 notes:write user=\n").is_err());
        assert!(matches!(
            t.authorize(Some("Bearer reader-123"), "notes", Access::Write),
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            t.authorize(Some("Bearer nope-nope-nope"), "notes", Access::Read),
            Err(AppError::Unauthorized(_))
        ));
        assert!(matches!(
            t.authorize(None, "notes", Access::Read),
            Err(AppError::Unauthorized(_))
        ));
    }

    #[test]
    fn refuses_bad_lines_with_their_number() {
        let e = Tokens::parse("good-token-1 a:read\nbad-token-22 a:admin\n").unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        assert!(Tokens::parse("lonely-token\n").is_err());
        assert!(Tokens::parse("short a:read\n").is_err());
    }
}
