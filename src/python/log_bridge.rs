//! groupcast's log records in Python's `logging`, under the logger
//! `groupcast` (`groupcast.node`, `groupcast.channel.client`, ...).
//!
//! Records are made on tokio threads, which never run Python code: a
//! tracing layer formats each record and hands it, without waiting, to a
//! bounded queue (a full queue drops the record: logs never slow the
//! server), and one thread of the module's own, "groupcast-log", passes
//! them to `logging.getLogger(name).log(level, message)`. Records up to
//! `info` are forwarded (`debug` too when `GROUPCAST_LOG` asks for it);
//! Python's own levels and handlers decide the rest.

use std::fmt::Write as _;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use parking_lot::Mutex;
use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Records waiting for the logging thread; more are dropped.
const QUEUE: usize = 1024;

/// One record, formatted on the thread that made it.
struct Record {
    /// Python's level number (`logging.INFO` is 20).
    level: u8,
    /// The logger's name, e.g. `groupcast.channel.client`.
    logger: String,
    /// The message, then the fields as `key=value`.
    message: String,
}

/// Hands records to the logging thread.
struct ToPython {
    records: SyncSender<Record>,
}

impl<S: Subscriber> Layer<S> for ToPython {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        let level = match *metadata.level() {
            Level::ERROR => 40,
            Level::WARN => 30,
            Level::INFO => 20,
            Level::DEBUG | Level::TRACE => 10,
        };
        let mut text = Text::default();
        event.record(&mut text);
        let record = Record {
            level,
            logger: metadata.target().replace("::", "."),
            message: text.message + &text.fields,
        };
        // A full queue (Python busy, or not reading): drop, never wait.
        let _ = self.records.try_send(record);
    }
}

/// A record's message and its other fields, as text.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

/// Whether records may still be handed to Python; held by the log thread
/// for as long as it is inside the interpreter, so that [`close`] returns
/// only once it is out. The interpreter must not be finalizing while this
/// thread is in it.
static OPEN: Mutex<bool> = Mutex::new(true);

/// Stops handing records to Python (they are dropped from then on), and
/// waits until the log thread is out of the interpreter. Called at exit,
/// before the interpreter finalizes, detached from it.
pub(crate) fn close() {
    *OPEN.lock() = false;
}

/// Passes records to Python until the process ends.
fn forward(records: Receiver<Record>) {
    while let Ok(record) = records.recv() {
        let open = OPEN.lock();
        if !*open {
            continue;
        }
        let attached = Python::try_attach(|py| {
            let logged = py
                .import("logging")
                .and_then(|logging| logging.call_method1("getLogger", (&record.logger,)))
                .and_then(|logger| logger.call_method1("log", (record.level, &record.message)));
            if let Err(error) = logged {
                error.write_unraisable(py, None);
            }
        });
        drop(open);
        if attached.is_none() {
            return; // the interpreter is finalizing
        }
    }
}

/// Installs the bridge as the process's subscriber, unless one is already
/// installed. Called once, when the module is imported.
pub(crate) fn install() {
    let (records, received) = sync_channel(QUEUE);
    let filter = std::env::var(crate::logging::LOG_VARIABLE)
        .ok()
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("groupcast=info"));
    let installed = tracing_subscriber::registry()
        .with(ToPython { records }.with_filter(filter))
        .try_init()
        .is_ok();
    if installed {
        let _ = std::thread::Builder::new()
            .name("groupcast-log".into())
            .spawn(move || forward(received));
    }
}
