//! The `groupcast` binary: only the command line; everything else is the
//! library.

fn main() -> std::process::ExitCode {
    groupcast::cli::run(std::env::args_os())
}
