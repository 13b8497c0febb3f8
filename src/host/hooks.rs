//! Hooks: a host's callbacks, run by the core on the host thread.
//!
//! Every binding used to carry the same plumbing: which event goes to which
//! callback, what a connect callback's answer means, when to admit or refuse
//! a connection held for approval. It lives here once. A binding implements
//! [`Hooks`] (how to enter its world for one batch: Python attaches to the
//! interpreter once per batch) and [`EventHandler`] (its callbacks);
//! [`crate::Server::run_hooks`] runs them on the host thread.

use super::HostEvent;
use crate::ids::ConnId;

/// What a host decided about a connection held before its websocket
/// upgrade (see [`crate::HostConfig::approve_connections`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it upgrade; `subprotocol`, one of those the client offered, is
    /// put in the handshake response's `Sec-WebSocket-Protocol`.
    Admit {
        /// The chosen subprotocol, if any.
        subprotocol: Option<String>,
    },
    /// Refuse it with a plain HTTP response: `status` (400-599) and a short
    /// text `body`; no websocket frame is ever sent.
    Refuse {
        /// The HTTP status.
        status: u16,
        /// The response body (text), may be empty.
        body: String,
    },
    /// The callback failed (raised, panicked): refused with HTTP 500,
    /// since admitting a client nobody checked would be worse.
    Failed,
}

impl Verdict {
    /// Admit without a subprotocol.
    pub const ADMIT: Verdict = Verdict::Admit { subprotocol: None };

    /// The default refusal: HTTP 403 with an empty body.
    pub fn refuse() -> Verdict {
        Verdict::Refuse {
            status: REFUSED_STATUS,
            body: String::new(),
        }
    }
}

/// HTTP status of a refusal that says no more (a C callback returning
/// false, Python's `False`, [`crate::NodeHandle::close`] on a held
/// connection).
pub const REFUSED_STATUS: u16 = 403;
/// HTTP status for [`Verdict::Failed`].
pub const FAILED_STATUS: u16 = 500;

/// A host's callbacks for one batch of events. Each method gets the event
/// it is named for (the other kinds never reach it) and may change it in
/// place (C terminates its strings there). Defaults: admit, ignore.
pub trait EventHandler {
    /// A new connection ([`HostEvent::Connect`]); with
    /// [`crate::HostConfig::approve_connections`] it waits for this answer.
    fn on_connect(&mut self, _event: &mut HostEvent) -> Verdict {
        Verdict::ADMIT
    }
    /// A client message for the host ([`HostEvent::Message`]).
    fn on_message(&mut self, _event: &mut HostEvent) {}
    /// A closed connection ([`HostEvent::Close`]).
    fn on_close(&mut self, _event: &mut HostEvent) {}
    /// Data on a channel the host subscribed to ([`HostEvent::Channel`]).
    fn on_channel(&mut self, _event: &mut HostEvent) {}
    /// Whether to stop handing events over (a C host freed the server from
    /// a callback): the rest of the batch is dropped.
    fn halted(&self) -> bool {
        false
    }
}

/// How a host runs its callbacks: once per batch of events, on the host
/// thread, `batch` gets the host's [`EventHandler`] and returns when the
/// batch is done.
pub trait Hooks: Send + 'static {
    /// Enters the host's world for one batch and calls `route` with the
    /// handler. Not calling `route` drops the batch (a Python interpreter
    /// that is finalizing can run no callback).
    fn batch(&mut self, route: &mut dyn FnMut(&mut dyn EventHandler));
}

/// Hands each event of `batch` to its handler method; a connect verdict is
/// handed to `verdict` to carry out (the server admits or refuses the
/// connection: this layer knows nothing of nodes).
pub(crate) fn route(
    batch: &mut Vec<HostEvent>,
    handler: &mut dyn EventHandler,
    verdict: &mut dyn FnMut(ConnId, Verdict),
) {
    for mut event in batch.drain(..) {
        if handler.halted() {
            break;
        }
        match event {
            HostEvent::Connect { conn, .. } => verdict(conn, handler.on_connect(&mut event)),
            HostEvent::Message { .. } => handler.on_message(&mut event),
            HostEvent::Close { .. } => handler.on_close(&mut event),
            HostEvent::Channel { .. } => handler.on_channel(&mut event),
        }
    }
    batch.clear();
}
