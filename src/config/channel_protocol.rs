//! Which channel protocol a node speaks to its channel server: groupcast's
//! own (JSON bodies, a channel per group, interest routing) or the seed's
//! Workerman layout (PHP `serialize()` bodies, every group message on the
//! one `send_to_group` channel), so that a node joins a cluster of the
//! seed's PHP workers.

use std::fmt;
use std::str::FromStr;

/// The protocol a node speaks to its channel server (`channel_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelProtocol {
    /// JSON bodies; each group on its own channel; a node subscribes only to
    /// the groups it has members in.
    #[default]
    Groupcast,
    /// The seed's walkor/channel protocol: PHP `serialize()` bodies, and the
    /// seed's event layout (`send_to_group` with data `{group_id,
    /// message}`), so PHP workers and groupcast nodes share a cluster. Every
    /// node receives every group message (no interest routing).
    Workerman,
}

impl ChannelProtocol {
    /// The name used in configuration: `groupcast` or `workerman`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelProtocol::Groupcast => "groupcast",
            ChannelProtocol::Workerman => "workerman",
        }
    }
}

impl fmt::Display for ChannelProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelProtocol {
    type Err = String;

    /// # Errors
    ///
    /// A message naming the accepted values.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "groupcast" => Ok(ChannelProtocol::Groupcast),
            "workerman" => Ok(ChannelProtocol::Workerman),
            other => Err(format!(
                "unknown channel protocol {other:?}; expected groupcast or workerman"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_refused() {
        for protocol in [ChannelProtocol::Groupcast, ChannelProtocol::Workerman] {
            assert_eq!(protocol.as_str().parse(), Ok(protocol));
        }
        assert_eq!(ChannelProtocol::default(), ChannelProtocol::Groupcast);
        let error = "php".parse::<ChannelProtocol>().unwrap_err();
        assert!(error.contains("groupcast or workerman"), "{error}");
    }
}
