//! [`NodeHandle`]'s users, presence and cluster routing: bind a uid to a
//! connection, send to a uid's every connection on every node, ask who is
//! online and who is in a group (answered from memory, never by asking the
//! other nodes), take every member out of a group, and act on a connection
//! held by another node (its id's high bits name that node).

use super::NodeHandle;
use super::presence::tag_of;
use crate::error::{Error, Result};
use crate::ids::ConnId;
use crate::presence::wire::Wire;
use crate::presence::{ClusterStats, GroupPresence, Presence, Uid, check_uid};
use crate::registry::users::{cluster_channel, node_channel, uid_channel};

impl NodeHandle {
    /// `Some(tag)` when `conn` belongs to another node of the cluster (its
    /// actions are forwarded there), `None` when it is this node's.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no node of the cluster has that
    /// tag (a node without a bus has only its own connections), or two
    /// have it (a collision of tags: `Presence::tag_shared`).
    pub(super) fn remote_tag(&self, conn: ConnId) -> Result<Option<u64>> {
        self.running()?;
        let state = self.state();
        let tag = tag_of(conn);
        if tag == state.node_tag {
            return Ok(None);
        }
        let known = match state.registry.presence() {
            // Without a bus there is no other node; with presence, the
            // live nodes are known by their heartbeats. A tag two live
            // nodes share names no one connection: refused, not guessed.
            _ if matches!(state.bus, crate::bus::Bus::Local) => false,
            Some(presence) => presence.nodes_with_tag(tag) == 1,
            None => true,
        };
        match known {
            true => Ok(Some(tag)),
            false => Err(Error::UnknownConnection(conn)),
        }
    }

    /// Sends an action to the node tagged `tag`.
    pub(super) fn forward(&self, tag: u64, action: Wire) -> Result<()> {
        let channel = node_channel(tag);
        self.state().bus.publish(channel.as_str(), &action.encode());
        Ok(())
    }

    fn uid(uid: &str) -> Result<Uid> {
        check_uid(uid).map_err(Error::InvalidUid)?;
        Ok(uid.into())
    }

    fn presence_state(&self) -> Result<&Presence> {
        self.running()?;
        self.state()
            .registry
            .presence()
            .map(|p| &**p)
            .ok_or_else(|| Error::Config("presence is off on this node (Config::presence)".into()))
    }

    /// Binds a connection to `uid` (one uid per connection: binding again
    /// replaces it). A uid may have many connections on many nodes;
    /// [`NodeHandle::send_to_uid`] reaches them all. A connection of
    /// another node is bound there (forwarded, not waited for).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUid`] for an empty uid or one over 256 bytes,
    /// [`Error::UnknownConnection`] when no such connection is open.
    pub fn bind_uid(&self, conn: ConnId, uid: &str) -> Result<()> {
        let uid = Self::uid(uid)?;
        if let Some(tag) = self.remote_tag(conn)? {
            let u = uid.to_string();
            return self.forward(tag, Wire::Bind { c: conn, u });
        }
        let entry = self.connection(conn)?;
        self.state()
            .registry
            .bind_uid(&entry, Some(uid))
            .map_err(|_| Error::UnknownConnection(conn))?;
        Ok(())
    }

    /// Unbinds a connection's uid. Returns the uid it had (`None` for a
    /// connection of another node: unbound there, not waited for).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open here.
    pub fn unbind_uid(&self, conn: ConnId) -> Result<Option<String>> {
        if let Some(tag) = self.remote_tag(conn)? {
            let u = String::new();
            return self.forward(tag, Wire::Bind { c: conn, u }).map(|()| None);
        }
        let entry = self.connection(conn)?;
        let old = self
            .state()
            .registry
            .bind_uid(&entry, None)
            .map_err(|_| Error::UnknownConnection(conn))?;
        Ok(old.map(|u| u.to_string()))
    }

    /// The uid a connection of this node is bound to.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] when no such connection is open here.
    pub fn uid_of(&self, conn: ConnId) -> Result<Option<String>> {
        let entry = self.connection(conn)?;
        Ok(self.state().registry.uid_of(&entry).map(|u| u.to_string()))
    }

    /// Sends a text message to every connection bound to `uid`, on every
    /// node, once each. Only the nodes holding one of its connections get
    /// the message (each subscribes to the uid's channel while it does).
    /// Returns the number of local connections it was queued for.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUid`] for an empty uid or one over 256 bytes.
    pub fn send_to_uid(&self, uid: &str, text: &str) -> Result<usize> {
        self.send_to_uids(&[uid], text)
    }

    /// [`NodeHandle::send_to_uid`] for several uids (a uid named twice is
    /// sent to once).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUid`] naming the first bad uid; nothing is sent then.
    pub fn send_to_uids(&self, uids: &[&str], text: &str) -> Result<usize> {
        self.running()?;
        for uid in uids {
            check_uid(uid).map_err(Error::InvalidUid)?;
        }
        let mut seen = std::collections::HashSet::new();
        let mut queued = 0;
        for uid in uids.iter().filter(|u| seen.insert(**u)) {
            let channel = uid_channel(uid);
            queued += self.state().send_to_group(channel.as_str(), text, &[]);
        }
        Ok(queued)
    }

    /// Whether `uid` has a connection on any node of the cluster (answered
    /// from this node's replica: see [`crate::presence`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUid`], or [`Error::Config`] when presence is off.
    pub fn is_uid_online(&self, uid: &str) -> Result<bool> {
        check_uid(uid).map_err(Error::InvalidUid)?;
        Ok(self.presence_state()?.is_online(uid))
    }

    /// Who is in `group` across the cluster: connections, distinct uids,
    /// and at most `max_uids` of those uids (sorted; `truncated` says when
    /// there were more).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGroup`], or [`Error::Config`] when presence is off.
    pub fn presence(&self, group: &str, max_uids: usize) -> Result<GroupPresence> {
        let group = self.group_id(group)?;
        Ok(self.presence_state()?.group(group.as_str(), max_uids))
    }

    /// Connections, users and groups across the cluster, and the nodes
    /// this node hears from.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when presence is off.
    pub fn cluster_stats(&self) -> Result<ClusterStats> {
        Ok(self.presence_state()?.cluster_stats())
    }

    /// Every member of `group` leaves it, on every node. Returns how many
    /// local members left.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGroup`] for an empty or over-long group id.
    pub fn ungroup(&self, group: &str) -> Result<usize> {
        let group = self.group_id(group)?;
        let state = self.state();
        let left = state.registry.ungroup_local(group.as_str());
        let n = state.registry.presence().map_or(0, |p| p.node_id());
        let message = Wire::Ungroup {
            n,
            g: group.as_str().to_owned(),
        };
        state
            .bus
            .publish(cluster_channel().as_str(), &message.encode());
        Ok(left)
    }
}
