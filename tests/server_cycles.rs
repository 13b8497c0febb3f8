//! Start/stop cycles of the blocking [`groupcast::Server`], alone in this
//! test binary so that counting the process's threads means something.

use groupcast::{Config, Server};

#[test]
fn server_start_stop_cycles_release_the_port_and_threads() {
    let threads = || std::fs::read_dir("/proc/self/task").unwrap().count();
    let before = threads();
    for _ in 0..20 {
        let server = Server::start(Config {
            workers: Some(2),
            ..Config::local("127.0.0.1:0")
        })
        .unwrap();
        let addr = server.addresses().websocket;
        server.stop();
        server.stop(); // harmless
        assert!(std::net::TcpStream::connect(addr).is_err(), "port released");
    }
    assert_eq!(threads(), before, "every runtime thread joined");
}
