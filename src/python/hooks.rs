//! The Hooks through which the core runs a `Server`'s Python callbacks.
//!
//! The core decides what reaches which callback and what a connect verdict
//! does ([`crate::host`]); this file only says how to enter Python for a
//! batch (one attach, the callables read once) and what each callback gets.
//! It is apart from `server.rs` because it runs on the host thread, never
//! on the caller's: nothing here may wait.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;

use super::call_channel_callback;
use super::events::{ConnectEvent, Refuse, message_data};
use crate::HostEvent;
use crate::host::{EventHandler, Hooks, Verdict};

/// The Python callables of a server. Shared with the host thread; the
/// mutex is held only to read or swap references, never while Python code
/// runs, so `__traverse__` and `__clear__` never wait on a callback.
#[derive(Default)]
pub(super) struct Callbacks {
    pub(super) on_connect: Option<Py<PyAny>>,
    pub(super) on_message: Option<Py<PyAny>>,
    pub(super) on_close: Option<Py<PyAny>>,
    /// channel → callback, for `subscribe` (`None` with `events=True`:
    /// the data goes to `poll`); subscribed again at every start.
    pub(super) channels: HashMap<String, Option<Py<PyAny>>>,
}

/// How the core enters Python: once per batch of events.
pub(super) struct PyHooks {
    pub(super) callbacks: Arc<Mutex<Callbacks>>,
}

impl Hooks for PyHooks {
    fn batch(&mut self, route: &mut dyn FnMut(&mut dyn EventHandler)) {
        // An interpreter that is finalizing runs no callback: the batch is
        // dropped (held connections are refused at their approval timeout).
        Python::try_attach(|py| {
            let mut handler = {
                let callbacks = self.callbacks.lock();
                let bind = |hook: &Option<Py<PyAny>>| hook.as_ref().map(|h| h.bind(py).clone());
                PyHandler {
                    py,
                    on_connect: bind(&callbacks.on_connect),
                    on_message: bind(&callbacks.on_message),
                    on_close: bind(&callbacks.on_close),
                    callbacks: &self.callbacks,
                }
            };
            route(&mut handler);
        });
    }
}

/// The callbacks for one batch, read once (a hook cleared meanwhile by the
/// garbage collector is still called for the rest of the batch).
struct PyHandler<'py, 'a> {
    py: Python<'py>,
    on_connect: Option<Bound<'py, PyAny>>,
    on_message: Option<Bound<'py, PyAny>>,
    on_close: Option<Bound<'py, PyAny>>,
    /// For channel callbacks, looked up per event.
    callbacks: &'a Mutex<Callbacks>,
}

impl PyHandler<'_, '_> {
    fn report(&self, error: PyErr, hook: &Bound<'_, PyAny>) {
        error.write_unraisable(self.py, Some(hook));
    }
}

impl EventHandler for PyHandler<'_, '_> {
    fn on_connect(&mut self, event: &mut HostEvent) -> Verdict {
        // Cleared by the garbage collector: nobody decides, so admit.
        let Some(hook) = &self.on_connect else {
            return Verdict::ADMIT;
        };
        let HostEvent::Connect {
            conn,
            peer,
            path,
            query,
            headers,
            subprotocols,
        } = event
        else {
            return Verdict::ADMIT;
        };
        let offered = subprotocols.clone();
        let info = ConnectEvent::new(
            self.py,
            *conn,
            *peer,
            std::mem::take(path),
            std::mem::take(query),
            std::mem::take(headers),
            std::mem::take(subprotocols),
        );
        match info
            .and_then(|info| Py::new(self.py, info))
            .and_then(|info| hook.call1((info,)))
        {
            Ok(result) => verdict_of(&result, &offered),
            Err(error) => {
                self.report(error, hook);
                Verdict::Failed
            }
        }
    }

    fn on_message(&mut self, event: &mut HostEvent) {
        if let (Some(hook), HostEvent::Message { conn, payload }) = (&self.on_message, event) {
            let data = message_data(self.py, payload);
            if let Err(error) = hook.call1((*conn, data)) {
                self.report(error, hook);
            }
        }
    }

    fn on_close(&mut self, event: &mut HostEvent) {
        if let (Some(hook), HostEvent::Close { conn, code }) = (&self.on_close, event) {
            if let Err(error) = hook.call1((*conn, *code)) {
                self.report(error, hook);
            }
        }
    }

    fn on_channel(&mut self, event: &mut HostEvent) {
        let HostEvent::Channel { channel, data } = event else {
            return;
        };
        let callback = self
            .callbacks
            .lock()
            .channels
            .get(channel.as_str())
            .and_then(|c| c.as_ref().map(|c| c.bind(self.py).clone()));
        if let Some(callback) = callback {
            call_channel_callback(self.py, &callback, data);
        }
    }
}

/// What `on_connect`'s result means: exactly `False` refuses with 403, a
/// `Refuse` with its status and body, a `str` among the offered
/// subprotocols admits with it; anything else (`None`, the result of a
/// function without `return`) admits.
fn verdict_of(value: &Bound<'_, PyAny>, offered: &[String]) -> Verdict {
    if value.is_instance_of::<pyo3::types::PyBool>() && !value.is_truthy().unwrap_or(true) {
        return Verdict::refuse();
    }
    if let Ok(refusal) = value.cast::<Refuse>() {
        let refusal = refusal.get();
        return Verdict::Refuse {
            status: refusal.status,
            body: refusal.body.clone(),
        };
    }
    match value.extract::<String>() {
        Ok(chosen) if offered.contains(&chosen) => Verdict::Admit {
            subprotocol: Some(chosen),
        },
        _ => Verdict::ADMIT,
    }
}
