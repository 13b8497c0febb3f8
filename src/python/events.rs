//! The objects Python receives about what happened: the events `poll` and
//! `events()` return and the hooks get (`ConnectEvent`, …), and `Addresses`.
//! They are frozen snapshots; building one from a core [`HostEvent`] is
//! here once, for the poller and the hooks alike.

use std::net::SocketAddr;

use pyo3::PyTraverseError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::{address_tuple, json_loads};
use crate::{HostEvent, Payload};

/// A client completed the websocket handshake.
#[pyclass(frozen, get_all, module = "groupcast._groupcast")]
pub(super) struct ConnectEvent {
    /// The connection's id, for actions.
    conn: u64,
    /// The client's `("host", port)`.
    peer: (String, u16),
    /// The request path, e.g. `"/chat"`.
    path: String,
    /// The query string without `?` (where tokens usually travel).
    query: String,
}

impl ConnectEvent {
    pub(super) fn new(conn: u64, peer: SocketAddr, path: String, query: String) -> Self {
        ConnectEvent {
            conn,
            peer: address_tuple(peer),
            path,
            query,
        }
    }
}

#[pymethods]
impl ConnectEvent {
    #[classattr]
    fn __match_args__() -> (&'static str, &'static str, &'static str, &'static str) {
        ("conn", "peer", "path", "query")
    }

    fn __repr__(&self) -> String {
        format!(
            "ConnectEvent(conn={}, peer=({:?}, {}), path={:?}, query={:?})",
            self.conn, self.peer.0, self.peer.1, self.path, self.query
        )
    }
}

/// A client message for the host: `str` for a text frame, `bytes` for a
/// binary one.
#[pyclass(frozen, get_all, module = "groupcast._groupcast")]
pub(super) struct MessageEvent {
    /// Who sent it.
    conn: u64,
    /// What it sent.
    data: Py<PyAny>,
}

#[pymethods]
impl MessageEvent {
    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("conn", "data")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "MessageEvent(conn={}, data={})",
            self.conn,
            self.data.bind(py).repr()?
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.data)
    }
}

/// A connection closed; it has already left all its groups.
#[pyclass(frozen, get_all, module = "groupcast._groupcast")]
pub(super) struct CloseEvent {
    /// Its id.
    conn: u64,
    /// The close code, `None` when the socket just ended.
    code: Option<u16>,
}

#[pymethods]
impl CloseEvent {
    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("conn", "code")
    }

    fn __repr__(&self) -> String {
        match self.code {
            Some(code) => format!("CloseEvent(conn={}, code={code})", self.conn),
            None => format!("CloseEvent(conn={}, code=None)", self.conn),
        }
    }
}

/// Data published on a channel this program subscribed to, decoded from
/// JSON.
#[pyclass(frozen, get_all, module = "groupcast._groupcast")]
pub(super) struct ChannelEvent {
    /// The channel (the seed calls it an event name).
    channel: String,
    /// The published value.
    data: Py<PyAny>,
}

#[pymethods]
impl ChannelEvent {
    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("channel", "data")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "ChannelEvent(channel={:?}, data={})",
            self.channel,
            self.data.bind(py).repr()?
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.data)
    }
}

/// Where a server listens.
#[pyclass(frozen, get_all, module = "groupcast._groupcast")]
pub(super) struct Addresses {
    /// The websocket listener, `("host", port)`.
    websocket: (String, u16),
    /// The embedded channel server, if any.
    channel: Option<(String, u16)>,
}

impl Addresses {
    pub(super) fn new(addresses: crate::Addresses) -> Self {
        Addresses {
            websocket: address_tuple(addresses.websocket),
            channel: addresses.channel.map(address_tuple),
        }
    }

    /// The websocket listener, `("host", port)`.
    pub(super) fn websocket(&self) -> &(String, u16) {
        &self.websocket
    }
}

#[pymethods]
impl Addresses {
    fn __repr__(&self) -> String {
        let channel = match &self.channel {
            Some((host, port)) => format!("({host:?}, {port})"),
            None => "None".into(),
        };
        format!(
            "Addresses(websocket=({:?}, {}), channel={channel})",
            self.websocket.0, self.websocket.1
        )
    }
}

/// A message's payload as Python data: `str` or `bytes`.
pub(super) fn message_data<'py>(py: Python<'py>, payload: &Payload) -> Bound<'py, PyAny> {
    match payload {
        Payload::Text(text) => PyString::new(py, text).into_any(),
        Payload::Binary(bytes) => PyBytes::new(py, bytes).into_any(),
    }
}

/// A host event as the Python object `poll` returns.
pub(super) fn event_object(py: Python<'_>, event: HostEvent) -> PyResult<Py<PyAny>> {
    Ok(match event {
        HostEvent::Connect {
            conn,
            peer,
            path,
            query,
        } => Py::new(py, ConnectEvent::new(conn, peer, path, query))?.into_any(),
        HostEvent::Message { conn, payload } => Py::new(
            py,
            MessageEvent {
                conn,
                data: message_data(py, &payload).unbind(),
            },
        )?
        .into_any(),
        HostEvent::Close { conn, code } => Py::new(py, CloseEvent { conn, code })?.into_any(),
        HostEvent::Channel { channel, data } => Py::new(
            py,
            ChannelEvent {
                channel,
                data: json_loads(py, &data)?.unbind(),
            },
        )?
        .into_any(),
    })
}
