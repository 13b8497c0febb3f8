//! The committed C header must describe this crate's version: its version
//! macros, and `groupcast_version()`, match Cargo.toml; the PHP wrapper
//! expects the same version.

use std::ffi::CStr;

fn macro_value(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|line| line.strip_prefix(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("include/groupcast.h defines {name}"))
        .trim()
        .to_owned()
}

#[test]
fn version_macros_match_cargo_toml() {
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/groupcast.h"))
            .expect("include/groupcast.h is committed");
    assert_eq!(
        macro_value(&header, "GROUPCAST_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        macro_value(&header, "GROUPCAST_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        macro_value(&header, "GROUPCAST_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION_PATCH")
    );
}

#[test]
fn version_function_matches_cargo_toml() {
    // SAFETY: returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(groupcast::ffi::groupcast_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn php_wrapper_expects_this_version() {
    let php = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/php/Library.php"))
        .expect("php/Library.php exists");
    let expected = format!("const VERSION = '{}';", env!("CARGO_PKG_VERSION"));
    assert!(
        php.contains(&expected),
        "php/Library.php must declare {expected}"
    );
}
