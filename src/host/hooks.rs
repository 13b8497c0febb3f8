//! Hooks: a host's callbacks, run by the core on the host thread.
//!
//! Every binding used to carry the same plumbing: which event goes to which
//! callback, what a connect callback's answer means, when to admit or close
//! a connection held for approval. It lives here once. A binding implements
//! [`Hooks`] (how to enter its world for one batch: Python attaches to the
//! interpreter once per batch) and [`EventHandler`] (its callbacks);
//! [`crate::Server::run_hooks`] runs them on the host thread.

use super::HostEvent;
use crate::ids::ConnId;

/// What a host's connect callback decided about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it talk.
    Admit,
    /// Refuse it: closed with 1008 "connection refused".
    Refuse,
    /// The callback failed (raised, panicked): closed with 1011 "internal
    /// error", since admitting a client nobody checked would be worse.
    Failed,
}

/// Close code and reason for [`Verdict::Refuse`].
pub const REFUSED: (u16, &str) = (1008, "connection refused");
/// Close code and reason for [`Verdict::Failed`].
pub const HOOK_FAILED: (u16, &str) = (1011, "internal error");

/// A host's callbacks for one batch of events. Each method gets the event
/// it is named for (the other kinds never reach it) and may change it in
/// place (C terminates its strings there). Defaults: admit, ignore.
pub trait EventHandler {
    /// A new connection ([`HostEvent::Connect`]); with
    /// [`crate::HostConfig::approve_connections`] it waits for this answer.
    fn on_connect(&mut self, _event: &mut HostEvent) -> Verdict {
        Verdict::Admit
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
/// handed to `verdict` to carry out (the server admits or closes the
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
