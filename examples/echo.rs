//! A Rust host: the built-in commands work as usual, and every other message
//! is answered by the host, on the library's host thread.
//!
//!     cargo run --example echo -- 127.0.0.1:1234
//!
//! Then send `hello` from a websocket client: it answers `you said hello`.
//! Ctrl-C stops it.

use groupcast::{Config, HostConfig, HostEvent, Payload, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:1234".into());
    let server = Server::start(Config {
        host: HostConfig {
            message_events: true,
            ..HostConfig::default()
        },
        ..Config::local(listen)
    })?;
    println!("listening on {}", server.addresses().websocket);
    let handle = server.handle().clone();
    server.dispatch(move |events| {
        for event in events.drain(..) {
            if let HostEvent::Message {
                conn,
                payload: Payload::Text(text),
            } = event
            {
                let _ = handle.send_text(conn, &format!("you said {text}"));
            }
        }
    })?;
    server.block_on(tokio::signal::ctrl_c())??;
    server.stop();
    Ok(())
}
