//! The audit trail: one `tracing` event per elevated Wix call and per
//! denial, on target `wix_elevate::audit`, at `INFO`.
//!
//! Fields: `route`, `policy`, `subject_type`, `subject_id`, `instance_id`,
//! `operation` (method and path template, or the refused call), `outcome`,
//! `status`, `latency_ms`. Never a token or a secret. Route them to their
//! own sink with a target filter, e.g. `wix_elevate::audit=info`.
//!
//! `operation`, the one field a client can put text into (a refused path
//! built from route parameters), is written through [`Clean`]: control
//! characters, quotes and backslashes escaped, at most [`MAX_FIELD`]
//! characters, so no crafted route parameter can end a line and forge
//! another event. String fields (`route`, ids) are recorded as strings,
//! which subscribers quote and escape themselves.

use std::{fmt, time::Duration};

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
        subject_type = caller.subject_type().as_str(),
        subject_id = caller.subject_id(),
        instance_id = caller.instance_id(),
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
        subject_type = caller.map(|c| c.subject_type().as_str()),
        subject_id = caller.map(Caller::subject_id),
        instance_id = caller.map(Caller::instance_id),
        operation = operation.map(|op| tracing::field::display(Clean(op))),
        outcome,
        status = 403u16,
        "denied"
    );
}

/// A value written escaped and capped: printable ASCII and non-control
/// Unicode as is; `"`, `\` and control characters (newlines included) as
/// Rust escapes; an ellipsis past [`MAX_FIELD`] characters.
pub(crate) struct Clean<T>(pub(crate) T);

impl<T: fmt::Display> fmt::Display for Clean<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaper<'a, 'b> {
            out: &'a mut fmt::Formatter<'b>,
            written: usize,
        }
        impl fmt::Write for Escaper<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                for c in s.chars() {
                    if self.written == MAX_FIELD {
                        self.written += 1;
                        return self.out.write_str("…");
                    }
                    if self.written > MAX_FIELD {
                        return Ok(());
                    }
                    self.written += 1;
                    if c.is_control() || c == '"' || c == '\\' {
                        write!(self.out, "{}", c.escape_default())?;
                    } else {
                        self.out.write_char(c)?;
                    }
                }
                Ok(())
            }
        }
        fmt::write(
            &mut Escaper { out: f, written: 0 },
            format_args!("{}", self.0),
        )
    }
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
}
