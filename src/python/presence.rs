//! `Server`'s users and presence for Python: the arguments read as the
//! rest of the module reads them, the answers as plain dicts. The methods
//! themselves sit in `server.rs`'s `#[pymethods]`, one line each.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::{json_loads, text_arg, to_py};
use crate::NodeHandle;

/// `send_to_uid(uid_or_uids, message)`: a uid, or an iterable of them.
pub(super) fn send_to_uid(
    handle: &NodeHandle,
    uids: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
) -> PyResult<usize> {
    let message = text_arg("message", message)?;
    let uids: Vec<String> =
        if let Ok(uid) = uids.cast::<PyString>() {
            vec![uid.to_cow()?.into_owned()]
        } else {
            let mut all = Vec::new();
            for uid in uids
                .try_iter()
                .map_err(|_| PyTypeError::new_err("uids must be a str or an iterable of str"))?
            {
                all.push(uid?.extract::<String>().map_err(|_| {
                    PyTypeError::new_err("uids must be a str or an iterable of str")
                })?);
            }
            all
        };
    let uids: Vec<&str> = uids.iter().map(String::as_str).collect();
    handle.send_to_uids(&uids, &message).map_err(to_py)
}

/// `presence(group, max_uids)` as a dict.
pub(super) fn presence<'py>(
    py: Python<'py>,
    handle: &NodeHandle,
    group: &str,
    max_uids: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let answer = handle.presence(group, max_uids).map_err(to_py)?;
    json_loads(py, &serde_json::to_string(&answer).unwrap_or_default())
}

/// `cluster_stats()` as a dict.
pub(super) fn cluster_stats<'py>(
    py: Python<'py>,
    handle: &NodeHandle,
) -> PyResult<Bound<'py, PyAny>> {
    let stats = handle.cluster_stats().map_err(to_py)?;
    json_loads(py, &serde_json::to_string(&stats).unwrap_or_default())
}
