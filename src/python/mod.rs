//! The Python bindings (the `python` feature), built by maturin as
//! `groupcast._groupcast`; `python/groupcast/` re-exports them.
//!
//! Split by object, as granian splits its module: [`events`] (what `poll`
//! and the callbacks receive), [`server`] (the `Server` class), [`hooks`]
//! (how the core runs a server's callbacks), [`channel`] (the standalone `ChannelServer` and
//! `ChannelClient`). This file holds what they share: the exceptions and the
//! mapping of core errors to them, argument helpers, the registry that
//! `atexit` stops, and the module itself. The plumbing (routing events to
//! callbacks, connect verdicts, polling, the channel runtimes, every range
//! rule of the configuration) is the core's, shared with the C binding.
//!
//! Threads: tokio threads never touch Python. Hook callbacks run on the one
//! host thread the core's dispatcher owns, which attaches to the interpreter
//! once per batch of events; channel-client callbacks run on a host thread of
//! the client's own. Every call that waits (start, stop, polling, joining
//! threads) detaches from the interpreter, and long waits wake every
//! [`SIGNAL_CHECK`] to run Python's signal handlers, so Ctrl-C works.
//!
//! Lifetimes: classes that hold Python callables implement
//! `__traverse__`/`__clear__`, so a server whose callback refers back to the
//! server is collected. Running servers and clients are also listed in
//! [`LIVE`], which an `atexit` hook of the package stops, because a host
//! thread must not try to attach to an interpreter that is finalizing.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Weak;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use crate::Error;

mod channel;
mod events;
mod hooks;
mod log_bridge;
mod presence;
mod server;

/// How long a wait stays detached before running Python's signal handlers.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

create_exception!(
    groupcast,
    GroupcastError,
    PyException,
    "Base class of groupcast's own errors."
);
create_exception!(
    groupcast,
    UnknownConnectionError,
    GroupcastError,
    "An action named a connection that is not open (it may have just closed)."
);
create_exception!(
    groupcast,
    GroupLimitError,
    GroupcastError,
    "A connection is already in as many groups as the server allows."
);
create_exception!(
    groupcast,
    ChannelError,
    GroupcastError,
    "A channel request failed: no channel server configured, or the client was closed."
);
create_exception!(
    groupcast,
    StoppedError,
    GroupcastError,
    "The server or client is not running (not started yet, or stopped)."
);

/// Turns a core error into the Python exception a caller expects: bad
/// arguments are `ValueError`, OS failures `OSError` with their errno.
fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Bind { source, .. } | Error::Runtime(source) => match source.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, message)),
            None => PyOSError::new_err(message),
        },
        Error::Config(_)
        | Error::InvalidGroup(_)
        | Error::InvalidCloseCode(_)
        | Error::InvalidUid(_) => PyValueError::new_err(message),
        Error::UnknownConnection(_) => UnknownConnectionError::new_err(message),
        Error::Join(_) => GroupLimitError::new_err(message),
        Error::Channel(_) => ChannelError::new_err(message),
        Error::Stopped => StoppedError::new_err(message),
    }
}

/// Something running that the package's `atexit` hook must stop.
trait Stoppable: Send + Sync {
    /// Stops it; called detached from the interpreter.
    fn stop_detached(&self);
}

/// Running servers and clients, weakly: see the module doc.
static LIVE: Mutex<Vec<Weak<dyn Stoppable>>> = Mutex::new(Vec::new());

fn register_live(item: Weak<dyn Stoppable>) {
    let mut live = LIVE.lock();
    live.retain(|weak| weak.strong_count() > 0);
    live.push(item);
}

/// Waits until `done` returns true, detached, running signal handlers every
/// [`SIGNAL_CHECK`] (their exception, e.g. `KeyboardInterrupt`, ends the
/// wait). `done` gets the instant it may block until; returns `false` once
/// `deadline` passed without `done`.
fn wait_interruptibly(
    py: Python<'_>,
    deadline: Option<Instant>,
    mut done: impl FnMut(Instant) -> bool + Send,
) -> PyResult<bool> {
    loop {
        let step = Instant::now() + SIGNAL_CHECK;
        let step = deadline.map_or(step, |deadline| deadline.min(step));
        if py.detach(|| done(step)) {
            return Ok(true);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(false);
        }
        py.check_signals()?;
    }
}

/// A duration setting in seconds. Refuses what is no duration at all
/// (negative, NaN, infinite); whether 0 is allowed is
/// [`crate::Config::validate`]'s call, as for every other binding.
fn seconds_arg(name: &str, seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        PyValueError::new_err(format!("{name} must be a number of seconds, not {seconds}"))
    })
}

/// A wait's `timeout` in seconds (`None`: no limit) as a deadline.
fn timeout_deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) => match Duration::try_from_secs_f64(t) {
            Ok(timeout) => Ok(Some(Instant::now() + timeout)),
            Err(_) => Err(PyValueError::new_err(format!(
                "timeout must be a non-negative number of seconds or None, not {t}"
            ))),
        },
    }
}

/// Checks a `HOST:PORT` argument with the core's rule (and message), for
/// the classes whose addresses no [`crate::Config`] validates.
fn check_address(name: &str, value: &str) -> PyResult<()> {
    crate::config::check_address(name, value).map_err(to_py)
}

/// `("host", port)`, as Python's socket module writes addresses.
fn address_tuple(addr: SocketAddr) -> (String, u16) {
    (addr.ip().to_string(), addr.port())
}

/// A group id from Python: a str, or an int naming the same group as its
/// decimal text (as clients may send `123` or `"123"`).
fn group_arg(group: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = group.cast::<PyString>() {
        return Ok(text.to_cow()?.into_owned());
    }
    if group.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err("group must be str or int, not bool"));
    }
    if let Ok(number) = group.extract::<i64>() {
        return Ok(number.to_string());
    }
    Err(PyTypeError::new_err(format!(
        "group must be str or int, not {}",
        group.get_type().name()?
    )))
}

/// Connection ids to leave out, from any iterable of ints.
fn exclude_arg(exclude: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<u64>> {
    let Some(exclude) = exclude else {
        return Ok(Vec::new());
    };
    if exclude.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "exclude must be an iterable of connection ids, not str",
        ));
    }
    let mut ids = Vec::new();
    for item in exclude
        .try_iter()
        .map_err(|_| PyTypeError::new_err("exclude must be an iterable of connection ids (ints)"))?
    {
        ids.push(item?.extract::<u64>().map_err(|_| {
            PyTypeError::new_err("exclude must contain connection ids (non-negative ints)")
        })?);
    }
    Ok(ids)
}

/// A `str` argument, borrowed when possible.
fn text_arg<'a>(name: &str, value: &'a Bound<'_, PyAny>) -> PyResult<std::borrow::Cow<'a, str>> {
    match value.cast::<PyString>() {
        Ok(text) => text.to_cow(),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{name} must be str, not {}",
            value.get_type().name()?
        ))),
    }
}

static JSON_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Encodes `data` as JSON text with Python's `json` module (what crosses
/// the channel protocol).
fn json_dumps(data: &Bound<'_, PyAny>) -> PyResult<String> {
    let dumps = JSON_DUMPS.import(data.py(), "json", "dumps")?;
    dumps.call1((data,))?.extract()
}

fn json_loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    JSON_LOADS.import(py, "json", "loads")?.call1((text,))
}

/// A channel's name and callback, checked the same for `Server.subscribe`
/// and `ChannelClient.on`.
fn check_channel_callback(callback: &Bound<'_, PyAny>) -> PyResult<()> {
    if !callback.is_callable() {
        return Err(PyTypeError::new_err("callback must be callable"));
    }
    check_not_async("callback", callback)
}

/// What to do instead of an `async def` callback.
const ASYNC_HINT: &str = "groupcast calls it on a thread of its own and never awaits it; \
     use a plain `def`, or in an asyncio program make the server with \
     Server(events=True) and take events with `async for event in server.events()`";

/// Refuses a coroutine function (or async generator function, or an object
/// whose `__call__` is one) as a callback: calling it would only make a
/// coroutine that nobody awaits, so its body would never run.
fn check_not_async(name: &str, callback: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = callback.py();
    let inspect = py.import("inspect")?;
    let is_async = |f: &Bound<'_, PyAny>| -> PyResult<bool> {
        Ok(inspect
            .call_method1("iscoroutinefunction", (f,))?
            .is_truthy()?
            || inspect
                .call_method1("isasyncgenfunction", (f,))?
                .is_truthy()?)
    };
    let call = callback.getattr("__call__").ok();
    if is_async(callback)? || call.map(|c| is_async(&c)).transpose()? == Some(true) {
        return Err(PyTypeError::new_err(format!(
            "{name} must not be an async function ({}): {ASYNC_HINT}",
            callback.repr()?
        )));
    }
    Ok(())
}

/// Checks what a callback returned: an awaitable (a coroutine from a
/// callable that `check_not_async` could not see through, e.g. a lambda
/// calling an `async def`) is closed unrun, so that Python does not warn
/// "coroutine ... was never awaited", and becomes a `TypeError` for the
/// caller to report.
fn refuse_awaitable<'py>(
    callback: &Bound<'py, PyAny>,
    result: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    if result.is_none() || result.is_instance_of::<pyo3::types::PyBool>() {
        return Ok(result); // the common results, without a lookup
    }
    if !result.get_type().hasattr("__await__")? {
        return Ok(result);
    }
    let shown = result.repr()?;
    if let Ok(close) = result.getattr("close") {
        // Ignored: the error below says what matters.
        let _ = close.call0();
    }
    Err(PyTypeError::new_err(format!(
        "{} returned an awaitable ({shown}), closed without running: {ASYNC_HINT}",
        callback.repr()?
    )))
}

/// A hook as the server stores it: calls the registered callable and
/// refuses an awaitable result ([`refuse_awaitable`]), which the server
/// then reports as it reports any exception of a hook.
#[pyclass(frozen, module = "groupcast._groupcast", name = "_SyncHook")]
pub(super) struct SyncHook {
    callback: Py<PyAny>,
}

impl SyncHook {
    fn wrap(callback: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = callback.py();
        Ok(Py::new(
            py,
            SyncHook {
                callback: callback.unbind(),
            },
        )?
        .into_any())
    }
}

#[pymethods]
impl SyncHook {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        args: &Bound<'py, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'py, pyo3::types::PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let callback = self.callback.bind(args.py());
        let result = callback.call(args, kwargs)?;
        refuse_awaitable(callback, result)
    }

    /// The registered callable (what `sys.unraisablehook` shows, by this
    /// wrapper's `repr`, when it raises).
    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.callback.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.callback.bind(py).repr()?.to_string())
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.callback)
    }
}

/// Runs `wait` (a `serve_forever`) with SIGINT and SIGTERM handlers that
/// call `stop`, when called from the main thread (the only one Python runs
/// signal handlers on); the previous handlers are restored afterwards. So
/// Ctrl-C and a service manager's SIGTERM are a graceful stop: the wait
/// returns normally, no `KeyboardInterrupt`. A handler installed outside
/// Python (`getsignal` gives `None`) is left alone.
fn with_stop_signals<R>(
    py: Python<'_>,
    stop: impl Fn() + Send + Sync + 'static,
    wait: impl FnOnce() -> PyResult<R>,
) -> PyResult<R> {
    let signal = py.import("signal")?;
    let handler = pyo3::types::PyCFunction::new_closure(
        py,
        Some(c"groupcast_stop"),
        None,
        move |args, _kwargs| {
            args.py().detach(&stop);
        },
    )?;
    let mut previous = Vec::new();
    let mut installed = Ok(());
    for name in ["SIGINT", "SIGTERM"] {
        let step = (|| -> PyResult<()> {
            let signum = signal.getattr(name)?;
            let old = signal.call_method1("getsignal", (&signum,))?;
            if old.is_none() {
                return Ok(());
            }
            // `signal.signal` knows the main thread (whatever thread first
            // imported `threading`): elsewhere it refuses, and nothing is
            // installed.
            match signal.call_method1("signal", (&signum, &handler)) {
                Ok(_) => previous.push((signum, old)),
                Err(error) if error.is_instance_of::<PyValueError>(py) => {}
                Err(error) => return Err(error),
            }
            Ok(())
        })();
        if step.is_err() {
            installed = step;
            break;
        }
    }
    let result = installed.and_then(|()| wait());
    let mut restored = Ok(());
    for (signum, old) in previous.into_iter().rev() {
        if let Err(error) = signal.call_method1("signal", (signum, old)) {
            restored = Err(error);
        }
    }
    let result = result?;
    restored.map(|_| result)
}

fn check_channel_name(channel: &str) -> PyResult<()> {
    if channel.is_empty() {
        return Err(PyValueError::new_err("channel must not be empty"));
    }
    Ok(())
}

/// Hands channel data (JSON text) to its callback; what the callback raises
/// has no caller and goes to `sys.unraisablehook`.
fn call_channel_callback(py: Python<'_>, callback: &Bound<'_, PyAny>, data: &str) {
    let called = json_loads(py, data)
        .and_then(|data| callback.call1((data,)))
        .and_then(|result| refuse_awaitable(callback, result));
    if let Err(error) = called {
        error.write_unraisable(py, Some(callback));
    }
}

/// Runs the `groupcast` command line (`python -m groupcast ...`), detached
/// from the interpreter until it ends; returns the exit status.
#[pyfunction]
fn _cli(py: Python<'_>, args: Vec<String>) -> u8 {
    let code = py.detach(move || crate::cli::run(args));
    (0..=u8::MAX)
        .find(|n| ExitCode::from(*n) == code)
        .unwrap_or(1)
}

/// Stops every running server and client; the package calls it at exit,
/// before the interpreter finalizes.
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    let live: Vec<_> = std::mem::take(&mut *LIVE.lock());
    py.detach(move || {
        // Newest first: clients and nodes before the channel servers they
        // were started against, which would otherwise be seen to vanish.
        for item in live.iter().rev().filter_map(Weak::upgrade) {
            item.stop_detached();
        }
        // Detached: the log thread may need the interpreter to finish the
        // record it is handing over.
        log_bridge::close();
    });
}

#[pymodule(gil_used = true)]
mod _groupcast {
    #[pymodule_export]
    use super::channel::{ChannelClient, ChannelServer};
    #[pymodule_export]
    use super::events::{
        Addresses, ChannelEvent, CloseEvent, ConnectEvent, Headers, MessageEvent, Refuse,
    };
    #[pymodule_export]
    use super::server::Server;
    #[pymodule_export]
    use super::{
        _cli, _shutdown, ChannelError, GroupLimitError, GroupcastError, StoppedError,
        UnknownConnectionError,
    };

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        // `threading` first imported by another thread (the log bridge's,
        // importing `logging`) would take that thread for the main one.
        m.py().import("threading")?;
        super::log_bridge::install();
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
