//! The `bus` URL grammar: which Redis deployment a node meets the others
//! on, and the prefix of its groups' channels. Parsed when the
//! configuration is checked, so a bad URL is a configuration error at start,
//! not a bus that never connects.

use redis::{ConnectionInfo, IntoConnectionInfo, ProtocolVersion};

/// Channel prefix when the URL does not set one.
pub const DEFAULT_PREFIX: &str = "groupcast:";

/// Where the bus connects, parsed from the `bus` URL.
#[derive(Debug, Clone)]
pub(crate) struct RedisTarget {
    /// One server, or a cluster's seed nodes.
    pub(crate) deployment: Deployment,
    /// Prepended to a group id to name its channel.
    pub(crate) prefix: String,
}

/// A standalone Redis, or a Redis Cluster given by its seed nodes.
#[derive(Debug, Clone)]
pub(crate) enum Deployment {
    Standalone(ConnectionInfo),
    Cluster(Vec<ConnectionInfo>),
}

impl RedisTarget {
    /// Parses `redis://[user:password@]host:port[/db][?prefix=P]` or
    /// `redis+cluster://[user:password@]h1:p1,h2:p2,...[?prefix=P]`.
    /// Other query parameters go to the Redis client as they are.
    ///
    /// # Errors
    ///
    /// A message for people when the URL cannot be used.
    pub(crate) fn parse(url: &str) -> Result<RedisTarget, String> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (url, None),
        };
        let mut prefix = DEFAULT_PREFIX.to_owned();
        let mut passed_on = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("prefix", value)) => prefix = percent_decode(value)?,
                _ if pair.is_empty() => {}
                _ => passed_on.push(pair),
            }
        }
        let query = match passed_on.is_empty() {
            true => String::new(),
            false => format!("?{}", passed_on.join("&")),
        };
        let bad = |why: String| format!("bus URL {url:?}: {why}");
        let deployment = if let Some(rest) = base.strip_prefix("redis+cluster://") {
            let (userinfo, hosts) = match rest.rsplit_once('@') {
                Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
                None => (String::new(), rest),
            };
            let hosts = hosts.split('/').next().unwrap_or_default();
            let nodes = hosts
                .split(',')
                .map(|host| {
                    if host.is_empty() {
                        return Err(bad("empty host in the node list".into()));
                    }
                    resp3(&format!("redis://{userinfo}{host}{query}")).map_err(bad)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Deployment::Cluster(nodes)
        } else if base.starts_with("redis://") {
            Deployment::Standalone(resp3(&format!("{base}{query}")).map_err(bad)?)
        } else if base.starts_with("rediss://") {
            return Err(bad("TLS (rediss://) is not built in".into()));
        } else {
            return Err(bad(
                "expected redis://host:port or redis+cluster://host:port,host:port,...".into(),
            ));
        };
        Ok(RedisTarget { deployment, prefix })
    }
}

/// The connection info for `url`, speaking RESP3: pushes (pub/sub messages)
/// and replies share one connection, which both publishes and subscribes.
fn resp3(url: &str) -> Result<ConnectionInfo, String> {
    let info = url.into_connection_info().map_err(|e| e.to_string())?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Ok(info.set_redis_settings(settings))
}

/// Decodes `%XX` escapes, so a prefix may hold `&`, `?` or `%`.
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in prefix {value:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("prefix {value:?} is not UTF-8"))
}

/// Why `prefix` cannot name history on a Redis Cluster (`None`: it can):
/// a `{` in it would start the hash tag of every channel and key, leaving
/// a group's channel and keys on different slots.
pub(crate) fn cluster_prefix_problem(prefix: &str) -> Option<String> {
    prefix.contains('{').then(|| {
        format!(
            "group history on a Redis Cluster needs a bus prefix without '{{' (it would take the place of the group's hash tag): {prefix:?}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_with_an_opening_brace_is_refused_for_cluster_history() {
        assert!(cluster_prefix_problem("groupcast:").is_none());
        assert!(cluster_prefix_problem("a}b:").is_none());
        let why = cluster_prefix_problem("app{1}:").expect("refused");
        assert!(why.contains("'{'"), "{why}");
    }

    #[test]
    fn standalone_url_with_default_prefix() {
        let target = RedisTarget::parse("redis://127.0.0.1:6380").unwrap();
        assert_eq!(target.prefix, "groupcast:");
        let Deployment::Standalone(info) = target.deployment else {
            panic!("standalone expected");
        };
        assert_eq!(info.addr().to_string(), "127.0.0.1:6380");
        assert_eq!(info.redis_settings().protocol(), ProtocolVersion::RESP3);
    }

    #[test]
    fn cluster_url_with_prefix() {
        let target =
            RedisTarget::parse("redis+cluster://a:7000,b:7001,c:7002/?prefix=app%3Ag%26:").unwrap();
        assert_eq!(target.prefix, "app:g&:");
        let Deployment::Cluster(nodes) = target.deployment else {
            panic!("cluster expected");
        };
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        assert_eq!(addrs, ["a:7000", "b:7001", "c:7002"]);
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("http://x:1", "expected redis://"),
            ("rediss://x:1", "TLS"),
            ("redis+cluster://a:1,,b:2", "empty host"),
            ("redis://x:1?prefix=%zz", "%-escape"),
        ] {
            let error = RedisTarget::parse(url).unwrap_err();
            assert!(error.contains(why), "{url}: {error}");
        }
    }
}
