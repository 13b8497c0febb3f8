//! The Python bindings (the `python` feature), built by maturin as `groupcast._groupcast`.
