//! The objects Python receives about what happened: the events `poll` and
//! `events()` return and the hooks get (`ConnectEvent`, …), and `Addresses`.
//! They are frozen snapshots; building one from a core [`HostEvent`] is
//! here once, for the poller and the hooks alike.

use std::net::SocketAddr;

use pyo3::PyTraverseError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyString};

use super::{address_tuple, json_loads};
use crate::{HostEvent, Payload};

/// A client connected. With `approve_connections` it comes before the
/// websocket upgrade, which waits for `on_connect`'s answer.
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
    /// The request's headers, looked up by any case.
    headers: Py<Headers>,
    /// The subprotocols the client offered, in its order of preference.
    subprotocols: Vec<String>,
}

impl ConnectEvent {
    pub(super) fn new(
        py: Python<'_>,
        conn: u64,
        peer: SocketAddr,
        path: String,
        query: String,
        headers: Vec<(String, String)>,
        subprotocols: Vec<String>,
    ) -> PyResult<Self> {
        Ok(ConnectEvent {
            conn,
            peer: address_tuple(peer),
            path,
            query,
            headers: Py::new(py, Headers { raw: headers })?,
            subprotocols,
        })
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
            "ConnectEvent(conn={}, peer=({:?}, {}), path={:?}, query={:?}, subprotocols={:?})",
            self.conn, self.peer.0, self.peer.1, self.path, self.query, self.subprotocols
        )
    }
}

/// A request's headers: a read-only mapping whose lookups ignore case.
/// A header sent several times reads as its values joined with `", "`
/// (`"; "` for `Cookie`); `raw` has them as sent.
#[pyclass(frozen, mapping, module = "groupcast._groupcast")]
pub(super) struct Headers {
    /// `(name, value)` in request order, names as sent.
    raw: Vec<(String, String)>,
}

impl Headers {
    /// The value of `name`, every occurrence joined.
    fn lookup(&self, name: &str) -> Option<String> {
        let separator = match name.eq_ignore_ascii_case("cookie") {
            true => "; ",
            false => ", ",
        };
        let mut values = self
            .raw
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        let first = values.next()?;
        Some(values.fold(first.to_owned(), |mut all, v| {
            all.push_str(separator);
            all.push_str(v);
            all
        }))
    }

    /// Each name once, as first sent.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in &self.raw {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name);
            }
        }
        names
    }
}

#[pymethods]
impl Headers {
    fn __getitem__(&self, name: &str) -> PyResult<String> {
        self.lookup(name)
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.to_owned()))
    }

    #[pyo3(signature = (name, default = None))]
    fn get(&self, py: Python<'_>, name: &str, default: Option<Py<PyAny>>) -> Py<PyAny> {
        match self.lookup(name) {
            Some(value) => PyString::new(py, &value).into_any().unbind(),
            None => default.unwrap_or_else(|| py.None()),
        }
    }

    fn __contains__(&self, name: &Bound<'_, PyAny>) -> bool {
        name.extract::<String>()
            .is_ok_and(|name| self.raw.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)))
    }

    fn __len__(&self) -> usize {
        self.names().len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        PyList::new(py, self.names())?.try_iter()
    }

    fn keys(&self) -> Vec<&str> {
        self.names()
    }

    fn values(&self) -> Vec<String> {
        self.names()
            .into_iter()
            .filter_map(|n| self.lookup(n))
            .collect()
    }

    fn items(&self) -> Vec<(String, String)> {
        self.names()
            .into_iter()
            .filter_map(|n| Some((n.to_owned(), self.lookup(n)?)))
            .collect()
    }

    /// `(name, value)` pairs in request order, names as sent.
    #[getter]
    fn raw(&self) -> Vec<(String, String)> {
        self.raw.clone()
    }

    fn __repr__(&self) -> String {
        let items: Vec<String> = self
            .items()
            .iter()
            .map(|(n, v)| format!("{n:?}: {v:?}"))
            .collect();
        format!("Headers({{{}}})", items.join(", "))
    }
}

/// What `on_connect` returns to refuse a connection before its websocket
/// upgrade with an HTTP `status` (400-599) and a short text `body`.
#[pyclass(frozen, get_all, module = "groupcast._groupcast")]
pub(super) struct Refuse {
    /// The HTTP status.
    pub(super) status: u16,
    /// The response body.
    pub(super) body: String,
}

#[pymethods]
impl Refuse {
    #[new]
    #[pyo3(signature = (status, body = String::new()))]
    fn new(status: u16, body: String) -> PyResult<Self> {
        if !(400..=599).contains(&status) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "a refusal's HTTP status must be 400-599, not {status}"
            )));
        }
        if body.len() > crate::node::MAX_REFUSAL_BODY {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "a refusal's body must be at most {} bytes",
                crate::node::MAX_REFUSAL_BODY
            )));
        }
        Ok(Refuse { status, body })
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("status", "body")
    }

    fn __repr__(&self) -> String {
        format!("Refuse({}, body={:?})", self.status, self.body)
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
            headers,
            subprotocols,
        } => Py::new(
            py,
            ConnectEvent::new(py, conn, peer, path, query, headers, subprotocols)?,
        )?
        .into_any(),
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
