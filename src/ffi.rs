//! The C ABI (see include/groupcast.h).
