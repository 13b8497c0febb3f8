//! Gives the C library (the cdylib) a versioned SONAME, so that programs
//! linked against one ABI never load another: `libgroupcast.so.<major>`,
//! and before 1.0 `libgroupcast.so.0.<minor>`, since a 0.x minor release
//! may change the ABI (the PHP wrapper checks major.minor for the same
//! reason). `scripts/install-c.sh` installs the file under that name.
//!
//! A program linked against the build directory (`-L target/release
//! -lgroupcast`) records that SONAME too, so the script also puts a link of
//! that name next to the library it builds, as an install would.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // With the `python` feature the cdylib is the Python extension module,
    // loaded by path: it is not the C library and gets no SONAME.
    if env::var_os("CARGO_FEATURE_PYTHON").is_some() {
        return;
    }
    // SONAMEs are an ELF matter; other platforms name libraries their way.
    let elf = matches!(
        env::var("CARGO_CFG_TARGET_OS").as_deref(),
        Ok("linux"
            | "android"
            | "freebsd"
            | "netbsd"
            | "openbsd"
            | "dragonfly"
            | "illumos"
            | "solaris")
    );
    if !elf {
        return;
    }
    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    let minor = env::var("CARGO_PKG_VERSION_MINOR").expect("cargo sets CARGO_PKG_VERSION_MINOR");
    let soname = match major.as_str() {
        "0" => format!("libgroupcast.so.0.{minor}"),
        _ => format!("libgroupcast.so.{major}"),
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    link_in_profile_dir(&soname);
}

/// Links `<profile dir>/<soname>` to `libgroupcast.so`. OUT_DIR is
/// `<profile dir>/build/<package>-<hash>/out`; when it is laid out
/// otherwise, nothing is done.
fn link_in_profile_dir(soname: &str) {
    let Some(out_dir) = env::var_os("OUT_DIR") else {
        return;
    };
    let mut up = Path::new(&out_dir).ancestors();
    let (Some(build), Some(profile_dir)) = (up.nth(2), up.next()) else {
        return;
    };
    if build.file_name().is_none_or(|name| name != "build") {
        return;
    }
    let link = profile_dir.join(soname);
    if link.symlink_metadata().is_err() {
        #[cfg(unix)]
        if let Err(e) = std::os::unix::fs::symlink("libgroupcast.so", &link) {
            println!("cargo:warning=cannot link {}: {e}", link.display());
        }
    }
}
