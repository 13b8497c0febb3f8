//! A redis-server process per test (standalone or a cluster node), for the
//! test files that run nodes on Redis (`redis.rs`, `history_redis.rs`,
//! `history_redis_cluster.rs`).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::ARRIVES;

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A port for a cluster node: Redis Cluster also listens on port + 10000
/// (the cluster bus), which must be free and below 65536 too.
pub fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// A redis-server process, killed on drop.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    pub child: Option<Child>,
}

impl RedisServer {
    /// A standalone server on a free port.
    pub async fn start() -> RedisServer {
        Self::start_with(free_port(), &[]).await
    }

    pub async fn start_with(port: u16, extra: &[&str]) -> RedisServer {
        let dir =
            std::env::temp_dir().join(format!("groupcast-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = RedisServer {
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.spawn().await;
        server
    }

    /// Starts (or restarts, same port and directory) the process and waits
    /// until it answers.
    pub async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed: run `bash tests/redis/run.sh`, which installs \
                 redis-server and redis-tools with apt-get and runs these tests"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + ARRIVES;
        loop {
            if let Ok(mut conn) = self.connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process at once (no goodbye to its clients), as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }

    /// `PUBSUB <subcommand> channel`'s count (NUMSUB or SHARDNUMSUB).
    pub async fn subscribers(&self, subcommand: &str, channel: &str) -> i64 {
        let mut conn = self.connection().await.expect("redis connection");
        let (_, count): (String, i64) = redis::cmd("PUBSUB")
            .arg(subcommand)
            .arg(channel)
            .query_async(&mut conn)
            .await
            .expect("PUBSUB");
        count
    }

    /// Waits (up to 20 s) until this cluster node reports `cluster_state:ok`.
    pub async fn wait_cluster_ok(&self) {
        until("cluster_state:ok", Duration::from_secs(20), || async {
            let mut conn = self.connection().await.expect("connection");
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            info.contains("cluster_state:ok")
        })
        .await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls an async condition until it holds or `within` passes.
pub async fn until<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A 3-master Redis Cluster on free ports, created with redis-cli.
pub struct RedisCluster {
    /// The masters first, then their replicas (if any).
    pub servers: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        Self::start_with(0, "5000").await
    }

    /// With `replicas` replicas per master, and `node_timeout` ms before a
    /// silent node is failed over.
    pub async fn start_with(replicas: usize, node_timeout: &str) -> RedisCluster {
        let mut servers = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            let port = free_cluster_port();
            servers.push(
                RedisServer::start_with(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &format!("nodes-{port}.conf"),
                        "--cluster-node-timeout",
                        node_timeout,
                        // One master down must not stop the other shards.
                        "--cluster-require-full-coverage",
                        "no",
                        // Replicas sync at once, and may always fail over.
                        "--repl-diskless-sync-delay",
                        "0",
                        "--cluster-replica-validity-factor",
                        "0",
                    ],
                )
                .await,
            );
        }
        let addrs: Vec<String> = servers
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match created {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-cli is not installed: run `bash tests/redis/run.sh`, which installs \
                 redis-tools with apt-get"
            ),
            Err(e) => panic!("cannot run redis-cli: {e}"),
        }
        let cluster = RedisCluster { servers };
        for master in &cluster.servers {
            master.wait_cluster_ok().await;
        }
        cluster
    }

    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .servers
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        format!("redis+cluster://{}", addrs.join(","))
    }

    /// The index of the master that owns `channel`'s slot.
    pub async fn owner(&self, channel: &str) -> usize {
        // Ask any server that is up.
        let mut conn = None;
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            if let Ok(c) = server.connection().await {
                conn = Some(c);
                break;
            }
        }
        let mut conn = conn.expect("a cluster node is up");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(channel)
            .query_async(&mut conn)
            .await
            .expect("CLUSTER KEYSLOT");
        // CLUSTER SLOTS: [[first, last, [host, port, id, ...], ...], ...]
        let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .expect("CLUSTER SLOTS");
        for range in ranges {
            let int = |v: &redis::Value| match v {
                redis::Value::Int(i) => *i,
                other => panic!("unexpected CLUSTER SLOTS entry {other:?}"),
            };
            let (first, last) = (int(&range[0]), int(&range[1]));
            let redis::Value::Array(master) = &range[2] else {
                panic!("unexpected CLUSTER SLOTS entry {range:?}");
            };
            let port = int(&master[1]);
            if (first..=last).contains(&slot) {
                return self
                    .servers
                    .iter()
                    .position(|m| i64::from(m.port) == port)
                    .expect("slot owner is one of the masters");
            }
        }
        panic!("no master owns slot {slot}");
    }
}
