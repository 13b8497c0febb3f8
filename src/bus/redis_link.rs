//! The Redis bus's connection: to a standalone server or a cluster, and the
//! plain (not numbered) publications and pings sent on it.

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo};

use super::{CONNECT_TIMEOUT, Publication, RESPONSE_TIMEOUT};
use crate::config::Deployment;

/// A live connection to the deployment.
pub(super) enum RedisLink {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Connects to the deployment with `on_push` receiving its pushes.
pub(super) async fn connect(
    deployment: &Deployment,
    on_push: impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static,
) -> redis::RedisResult<RedisLink> {
    match deployment {
        Deployment::Standalone(info) => {
            let client = redis::Client::open(info.clone())?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_push_sender(on_push);
            let conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            Ok(RedisLink::Standalone(conn))
        }
        Deployment::Cluster(nodes) => {
            let client = ClusterClientBuilder::new(nodes.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(on_push)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                // The bus retries subscriptions itself; a command for a
                // master that is down should fail soon, not stall the bus.
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .build()?;
            Ok(RedisLink::Cluster(client.get_async_connection().await?))
        }
    }
}

impl RedisLink {
    /// Sends a batch of publications. Returns how many failed.
    pub(super) async fn publish(&mut self, batch: &[Publication]) -> usize {
        match self {
            RedisLink::Standalone(conn) => {
                let mut pipe = redis::pipe();
                for p in batch {
                    pipe.cmd("PUBLISH")
                        .arg(&p.channel)
                        .arg(&p.payload[..])
                        .ignore();
                }
                match pipe.exec_async(conn).await {
                    Ok(()) => 0,
                    Err(_) => batch.len(),
                }
            }
            RedisLink::Cluster(conn) => {
                // Each channel may live on another shard: one command each,
                // all in flight at once (issued in order).
                let results = futures_util::future::join_all(batch.iter().map(|p| {
                    let mut conn = conn.clone();
                    async move {
                        redis::cmd("SPUBLISH")
                            .arg(&p.channel)
                            .arg(&p.payload[..])
                            .exec_async(&mut conn)
                            .await
                    }
                }))
                .await;
                results.iter().filter(|r| r.is_err()).count()
            }
        }
    }

    pub(super) async fn ping(&mut self) -> redis::RedisResult<()> {
        match self {
            RedisLink::Standalone(conn) => redis::cmd("PING").exec_async(conn).await,
            RedisLink::Cluster(conn) => redis::cmd("PING").exec_async(conn).await,
        }
    }
}
