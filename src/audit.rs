//! The audit trail: one `tracing` event per elevated Wix call and per
//! denial, on target `wix_elevate::audit`, at `INFO`.
//!
//! Fields: `route`, `policy`, `request_id` (Wix's, on service-plugin
//! calls), `subject_type`, `subject_id`, `instance_id`,
//! `operation` (method and path template, or the refused call), `outcome`,
//! `status`, `latency_ms`. Never a token or a secret. Route them to their
//! own sink with a target filter, e.g. `wix_elevate::audit=info`.
//!
//! Every field that carries request data or text from Wix (`operation`, a
//! refused path built from route parameters; the caller's ids) is written
//! through [`Clean`]: control characters, the Unicode line and paragraph
//! separators, bidirectional controls, quotes and backslashes escaped, at
//! most [`MAX_FIELD`] characters, so no crafted value can end a line,
//! forge another event or reorder what a reader sees, whatever the
//! subscriber's format. `route` and `policy` come from the configuration.

use std::{borrow::Cow, fmt, time::Duration};

use crate::caller::Caller;

/// The target every audit event uses.
pub(crate) const TARGET: &str = "wix_elevate::audit";

/// The longest a client-influenced field is written, in characters.
pub(crate) const MAX_FIELD: usize = 200;

/// Who the event is about and where: what the route knows.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub(crate) route: Option<&'a str>,
    pub(crate) policy: Option<&'a str>,
    /// Wix's id of the request that caused it, where Wix gave one (a
    /// service-plugin call's `metadata.requestId`).
    pub(crate) request_id: Option<&'a str>,
}

/// A call to a Wix API with the elevated token, whatever its result.
pub(crate) fn wix_call(
    scope: Scope<'_>,
    caller: &Caller,
    operation: &dyn fmt::Display,
    outcome: &str,
    status: Option<u16>,
    latency: Duration,
) {
    tracing::info!(
        target: TARGET,
        route = scope.route,
        policy = scope.policy,
        request_id = scope.request_id.map(|id| clean_str(id, MAX_FIELD)).as_deref(),
        subject_type = caller.subject_type().as_str(),
        subject_id = &*clean_str(caller.subject_id(), MAX_FIELD),
        instance_id = &*clean_str(caller.instance_id(), MAX_FIELD),
        operation = %Clean(operation),
        outcome,
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        "elevated Wix call"
    );
}

/// A caller refused: by the route's policy, a Wix call the route did not
/// declare, or a request value that is not the caller's own.
pub(crate) fn denied(
    scope: Scope<'_>,
    caller: Option<&Caller>,
    operation: Option<&dyn fmt::Display>,
    outcome: &str,
) {
    tracing::info!(
        target: TARGET,
        route = scope.route,
        policy = scope.policy,
        request_id = scope.request_id.map(|id| clean_str(id, MAX_FIELD)).as_deref(),
        subject_type = caller.map(|c| c.subject_type().as_str()),
        subject_id = caller.map(|c| clean_str(c.subject_id(), MAX_FIELD)).as_deref(),
        instance_id = caller.map(|c| clean_str(c.instance_id(), MAX_FIELD)).as_deref(),
        operation = operation.map(|op| tracing::field::display(Clean(op))),
        outcome,
        status = 403u16,
        "denied"
    );
}

/// A value written escaped and capped: printable ASCII and other Unicode
/// as is; `"`, `\`, control characters (newlines included), U+2028 and
/// U+2029 (line and paragraph separators) and the bidirectional controls
/// (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069) as Rust
/// escapes; an ellipsis past [`MAX_FIELD`] characters.
pub(crate) struct Clean<T>(pub(crate) T);

impl<T: fmt::Display> fmt::Display for Clean<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_clean(f, &self.0, MAX_FIELD)
    }
}

/// Like [`Clean`], capped at [`MAX_TEXT`] characters: for error causes,
/// which are longer than an identifier and still come from outside.
pub(crate) struct CleanText<T>(pub(crate) T);

/// The longest an error cause is written, in characters.
pub(crate) const MAX_TEXT: usize = 2_000;

impl<T: fmt::Display> fmt::Display for CleanText<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_clean(f, &self.0, MAX_TEXT)
    }
}

/// `value`, escaped (see [`must_escape`]) and capped at `cap` characters.
fn write_clean(f: &mut fmt::Formatter<'_>, value: &dyn fmt::Display, cap: usize) -> fmt::Result {
    struct Escaper<'a, 'b> {
        out: &'a mut fmt::Formatter<'b>,
        written: usize,
        cap: usize,
    }
    impl fmt::Write for Escaper<'_, '_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                if self.written >= self.cap {
                    // The ellipsis once, then nothing more, however many
                    // pieces the value is written in.
                    if self.written == self.cap {
                        self.written += 1;
                        self.out.write_str("…")?;
                    }
                    return Ok(());
                }
                self.written += 1;
                if must_escape(c) {
                    write!(self.out, "{}", c.escape_default())?;
                } else {
                    self.out.write_char(c)?;
                }
            }
            Ok(())
        }
    }
    fmt::write(
        &mut Escaper {
            out: f,
            written: 0,
            cap,
        },
        format_args!("{value}"),
    )
}

/// A string field's value, for subscribers that quote strings themselves:
/// characters that could end a line or disguise text escaped as [`Clean`]
/// escapes them, capped at `cap` characters; borrowed (no allocation) when
/// there is nothing to change.
pub(crate) fn clean_str(value: &str, cap: usize) -> Cow<'_, str> {
    let mut chars = 0;
    let plain = value.chars().all(|c| {
        chars += 1;
        chars <= cap && !disguises(c)
    });
    if plain {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for (i, c) in value.chars().enumerate() {
        if i == cap {
            out.push('…');
            break;
        }
        if disguises(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether `c` could end a line, forge structure or disguise text.
fn must_escape(c: char) -> bool {
    c == '"' || c == '\\' || disguises(c)
}

/// Control characters, the Unicode line and paragraph separators, and the
/// bidirectional controls.
fn disguises(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_escapes_line_breaks_quotes_and_caps_length() {
        let forged = "GET /m/x\nINFO wix_elevate::audit: elevated Wix call route=\"admin\"";
        let clean = Clean(forged).to_string();
        assert!(!clean.contains('\n'), "{clean}");
        assert!(clean.contains(r"\n"), "{clean}");
        assert!(clean.contains(r#"route=\"admin\""#), "{clean}");
        assert_eq!(Clean("a\r\u{1b}[31m\\").to_string(), r"a\r\u{1b}[31m\\");
        let long = "x".repeat(10 * MAX_FIELD);
        let capped = Clean(&long).to_string();
        assert_eq!(capped.chars().count(), MAX_FIELD + 1);
        assert!(capped.ends_with('…'));
        assert_eq!(
            Clean("GET /apps/v1/instance").to_string(),
            "GET /apps/v1/instance"
        );
    }

    #[test]
    fn the_cap_holds_for_a_value_written_in_pieces() {
        /// Writes "abc" `n` times, in `n` pieces (as error types do).
        struct Pieces(usize);
        impl fmt::Display for Pieces {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                (0..self.0).try_for_each(|_| f.write_str("abc"))
            }
        }
        for n in [MAX_FIELD / 3, MAX_FIELD / 3 + 1, MAX_FIELD, 10 * MAX_FIELD] {
            let clean = Clean(Pieces(n)).to_string();
            let len = 3 * n;
            if len <= MAX_FIELD {
                assert_eq!(clean.chars().count(), len, "{n} pieces");
            } else {
                assert_eq!(clean.chars().count(), MAX_FIELD + 1, "{n} pieces: {clean}");
                assert_eq!(clean.matches('…').count(), 1, "{n} pieces");
                assert!(clean.ends_with('…'));
            }
        }
        assert_eq!(
            CleanText(Pieces(1000)).to_string().chars().count(),
            MAX_TEXT + 1
        );
    }

    #[test]
    fn clean_escapes_unicode_line_breaks_and_every_bidirectional_control() {
        let disguising = [
            '\u{2028}', '\u{2029}', '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}',
            '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ];
        for c in disguising {
            let clean = Clean(format!("a{c}b")).to_string();
            assert!(!clean.contains(c), "U+{:04X} kept: {clean}", u32::from(c));
            assert_eq!(clean, format!("a\\u{{{:x}}}b", u32::from(c)));
        }
        // String fields: nothing to change borrows; a disguising character is
        // escaped (the subscriber quotes the rest).
        assert!(matches!(clean_str("m-1", MAX_FIELD), Cow::Borrowed("m-1")));
        assert_eq!(clean_str("a\u{202E}b\"", MAX_FIELD), "a\\u{202e}b\"");
        assert_eq!(clean_str("abcdef", 3), "abc…");
        // Letters of every script stay as they are.
        assert_eq!(
            Clean("héllo ÅΩж 名前 مرحبا").to_string(),
            "héllo ÅΩж 名前 مرحبا"
        );
    }
}
