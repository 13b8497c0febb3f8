//! TLS from C: the certificate of the websocket port (`wss://`) and of an
//! embedded or standalone channel server, the CA a node or channel client
//! trusts for the channel link, and reloading certificates without
//! dropping anyone. The files are PEM; they are read (and a bad one named
//! in `groupcast_last_error_message`) when the server starts or reloads.

use std::ffi::c_char;
use std::path::PathBuf;

use super::channel::{
    connect_client, groupcast_channel_client, groupcast_channel_server, secret_of, start_server,
};
use super::config::{address_arg, groupcast_config};
use super::result::*;
use super::server::groupcast_server;
use crate::channel::{ChannelClientConfig, ChannelServerConfig};

/// A pair of paths given together: both empty is "none", one alone is an
/// error naming `what`.
fn pair(what: &str, cert: &str, key: &str) -> Result<Option<(PathBuf, PathBuf)>, groupcast_result> {
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some((cert.into(), key.into()))),
        _ => Err(fail(
            GROUPCAST_ERR_INVALID_ARGUMENT,
            format!("{what}: the certificate and the key go together (both empty turns TLS off)"),
        )),
    }
}

/// Serves `wss://` (and the demo page over https) with the PEM certificate
/// chain in the file `cert` (leaf first) and its key in `key` (PKCS#8,
/// PKCS#1 or SEC1). Both of length 0 turn TLS off; one alone is
/// `GROUPCAST_ERR_INVALID_ARGUMENT`. A file that cannot be used fails
/// `groupcast_server_start` with `GROUPCAST_ERR_CONFIG`, naming it.
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `cert` points to `cert_len`
/// bytes, `key` to `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_tls(
    config: *mut groupcast_config,
    cert: *const c_char,
    cert_len: usize,
    key: *const c_char,
    key_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let cert = arg_str!(cert, cert_len);
        let key = arg_str!(key, key_len);
        let (cert, key) = match pair("tls", cert, key) {
            Ok(files) => files.unzip(),
            Err(code) => return code,
        };
        (config.config.tls_cert, config.config.tls_key) = (cert, key);
        GROUPCAST_OK
    })
}

/// The embedded channel server speaks TLS with this certificate chain and
/// key (as `groupcast_config_set_tls`); the node's own link to it then
/// needs `groupcast_config_set_channel_ca`.
///
/// # Safety
///
/// As `groupcast_config_set_tls`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_channel_tls(
    config: *mut groupcast_config,
    cert: *const c_char,
    cert_len: usize,
    key: *const c_char,
    key_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let cert = arg_str!(cert, cert_len);
        let key = arg_str!(key, key_len);
        let (cert, key) = match pair("channel tls", cert, key) {
            Ok(files) => files.unzip(),
            Err(code) => return code,
        };
        (
            config.config.channel_tls_cert,
            config.config.channel_tls_key,
        ) = (cert, key);
        GROUPCAST_OK
    })
}

/// Reaches the channel server over TLS, trusting the CA certificates in
/// the PEM file `ca`, and checking the server's certificate against
/// `server_name` (length 0: the host of the channel address). `ca` of
/// length 0 turns it off.
///
/// # Safety
///
/// `config` from `groupcast_config_new`; `ca` points to `ca_len` bytes,
/// `server_name` to `server_name_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_config_set_channel_ca(
    config: *mut groupcast_config,
    ca: *const c_char,
    ca_len: usize,
    server_name: *const c_char,
    server_name_len: usize,
) -> groupcast_result {
    guard(|| {
        let config = arg_mut!(config);
        let ca = arg_str!(ca, ca_len);
        let server_name = arg_str!(server_name, server_name_len);
        if ca.is_empty() && !server_name.is_empty() {
            return fail(
                GROUPCAST_ERR_INVALID_ARGUMENT,
                "a channel server name needs a CA file",
            );
        }
        config.config.channel_ca = (!ca.is_empty()).then(|| ca.into());
        config.config.channel_server_name =
            (!server_name.is_empty()).then(|| server_name.to_owned());
        GROUPCAST_OK
    })
}

/// Reads the TLS certificate and key files again (the websocket port's and
/// the embedded channel server's): new connections get the new
/// certificate, open ones stay. `GROUPCAST_ERR_CONFIG` when the server has
/// no TLS or a file cannot be used (the certificate in use then stays; the
/// message names the file), `GROUPCAST_ERR_STOPPED` after stop. May be
/// called from any thread.
///
/// # Safety
///
/// `server` from `groupcast_server_start`, not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_server_reload_tls(
    server: *const groupcast_server,
) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        match server.server.reload_tls() {
            Ok(()) => GROUPCAST_OK,
            Err(e) => fail_with(&e),
        }
    })
}

/// As `groupcast_channel_server_start`, speaking TLS with the certificate
/// chain in `cert` and its key in `key` (PEM files; both of length 0: no
/// TLS). A file that cannot be used is `GROUPCAST_ERR_CONFIG`, naming it.
///
/// # Safety
///
/// As `groupcast_channel_server_start`; `cert` points to `cert_len` bytes,
/// `key` to `key_len` bytes.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn groupcast_channel_server_start_tls(
    listen: *const c_char,
    listen_len: usize,
    secret: *const c_char,
    secret_len: usize,
    cert: *const c_char,
    cert_len: usize,
    key: *const c_char,
    key_len: usize,
    out_server: *mut *mut groupcast_channel_server,
) -> groupcast_result {
    guard(|| {
        let listen = arg_str!(listen, listen_len);
        let secret = arg_str!(secret, secret_len);
        let cert = arg_str!(cert, cert_len);
        let key = arg_str!(key, key_len);
        arg_out!(out_server);
        if let Err(code) = address_arg("listen", listen) {
            return code;
        }
        let (tls_cert, tls_key) = match pair("tls", cert, key) {
            Ok(files) => files.unzip(),
            Err(code) => return code,
        };
        let config = ChannelServerConfig {
            secret: secret_of(secret),
            tls_cert,
            tls_key,
            ..ChannelServerConfig::default()
        };
        start_server(listen, config, out_server)
    })
}

/// Reads the channel server's TLS certificate and key again, as
/// `groupcast_server_reload_tls`.
///
/// # Safety
///
/// `server` from `groupcast_channel_server_start_tls`, not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn groupcast_channel_server_reload_tls(
    server: *const groupcast_channel_server,
) -> groupcast_result {
    guard(|| {
        let server = arg_ref!(server);
        match server.inner.reload_tls() {
            Ok(()) => GROUPCAST_OK,
            Err(e) => fail_with(&e),
        }
    })
}

/// As `groupcast_channel_client_connect`, over TLS: the server's
/// certificate must chain to a CA in the PEM file `ca` and carry
/// `server_name` (length 0: the host of `addr`). Nothing, the secret
/// included, is sent before the handshake succeeds. A CA file that cannot
/// be used is `GROUPCAST_ERR_CONFIG`, naming it.
///
/// # Safety
///
/// As `groupcast_channel_client_connect`; `ca` points to `ca_len` bytes,
/// `server_name` to `server_name_len` bytes.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn groupcast_channel_client_connect_tls(
    addr: *const c_char,
    addr_len: usize,
    secret: *const c_char,
    secret_len: usize,
    ca: *const c_char,
    ca_len: usize,
    server_name: *const c_char,
    server_name_len: usize,
    out_client: *mut *mut groupcast_channel_client,
) -> groupcast_result {
    guard(|| {
        let addr = arg_str!(addr, addr_len);
        let secret = arg_str!(secret, secret_len);
        let ca = arg_str!(ca, ca_len);
        let server_name = arg_str!(server_name, server_name_len);
        arg_out!(out_client);
        if let Err(code) = address_arg("address", addr) {
            return code;
        }
        if ca.is_empty() {
            return fail(
                GROUPCAST_ERR_INVALID_ARGUMENT,
                "ca must name the CA file (use groupcast_channel_client_connect without TLS)",
            );
        }
        let config = ChannelClientConfig {
            secret: secret_of(secret),
            tls_ca: Some(ca.into()),
            tls_server_name: (!server_name.is_empty()).then(|| server_name.to_owned()),
            ..ChannelClientConfig::default()
        };
        connect_client(addr, config, out_client)
    })
}
