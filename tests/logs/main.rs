//! Tests that capture `tracing` output. They live in their own binary: the
//! `tracing` callsite cache is process-wide, and events first hit on another
//! test's thread (with no subscriber) can race a thread-scoped capture.

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod plugins;
mod rejections;
mod secrets;
mod spans;

use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::{MakeWriter, format::FmtSpan};

/// Everything the test's subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Install a subscriber at `level` on this thread, writing here.
    fn install(&self, level: tracing::Level) -> tracing::subscriber::DefaultGuard {
        // Spans as lines of their own, with every field: what they carry
        // is checked like any log line.
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
            .with_writer(self.clone())
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        guard
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
