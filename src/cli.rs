//! The `groupcast` command line: `serve` runs a node, `channel` runs a
//! channel server alone. The Python package's `python -m groupcast` calls
//! [`run`] too, so both share one CLI.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::channel::{ChannelServer, ChannelServerConfig};
use crate::config::{Config, DEFAULT_CHANNEL_LISTEN, DEFAULT_LISTEN, Limits};
use crate::server::Server;

/// Group broadcasting for websocket clients.
#[derive(Parser, Debug)]
#[command(name = "groupcast", version, about)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Subcommand, Debug)]
enum CliCommand {
    /// Run a websocket node (by default with an embedded channel server, as
    /// in the seed: websocket on 0.0.0.0:1234, channel on 127.0.0.1:2206).
    Serve(ServeArgs),
    /// Run a channel server alone, for nodes started with --channel.
    Channel(ChannelArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Websocket listen address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Runtime worker threads [default: number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Where the embedded channel server listens [default: 127.0.0.1:2206].
    /// It has no authentication: keep it on loopback unless the network is
    /// trusted.
    #[arg(long, value_name = "ADDR", conflicts_with = "channel")]
    channel_listen: Option<String>,
    /// Join the channel server at HOST:PORT instead of embedding one.
    #[arg(long, value_name = "HOST:PORT")]
    channel: Option<String>,
    /// Largest client message, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_message_size)]
    max_message_size: usize,
}

#[derive(clap::Args, Debug)]
struct ChannelArgs {
    /// Listen address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_CHANNEL_LISTEN)]
    listen: String,
}

/// Parses `args` (program name first) and runs the command until SIGINT or
/// SIGTERM. Prints the bound addresses on one line once listening.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version land here too, with exit code 0.
            let _ = error.print();
            return ExitCode::from(error.exit_code() as u8);
        }
    };
    let result = match cli.command {
        CliCommand::Serve(args) => serve(args),
        CliCommand::Channel(args) => channel(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("groupcast: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> crate::Result<()> {
    let channel_listen = match (&args.channel, args.channel_listen) {
        (Some(_), _) => None,
        (None, given) => Some(given.unwrap_or_else(|| DEFAULT_CHANNEL_LISTEN.to_owned())),
    };
    let config = Config {
        listen: args.listen,
        workers: args.workers.map(usize::from),
        channel_listen,
        channel: args.channel.clone(),
        limits: Limits {
            max_message_size: args.max_message_size,
            ..Limits::default()
        },
        ..Config::default()
    };
    let mut server = Server::start(config)?;
    let addresses = server.addresses();
    let channel = match (addresses.channel, &args.channel) {
        (Some(embedded), _) => format!("channel={embedded}"),
        (None, Some(remote)) => format!("channel-remote={remote}"),
        (None, None) => String::new(),
    };
    println!(
        "groupcast listening websocket={} {channel}",
        addresses.websocket
    );
    server.block_on(shutdown_signal())?;
    server.stop();
    Ok(())
}

fn channel(args: ChannelArgs) -> crate::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("groupcast-channel")
        .build()
        .map_err(crate::Error::Runtime)?;
    runtime.block_on(async {
        let server = ChannelServer::bind(&args.listen, ChannelServerConfig::default()).await?;
        println!("groupcast listening channel={}", server.local_addr());
        shutdown_signal().await;
        server.stop().await;
        Ok(())
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(term) => {
                    term.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
