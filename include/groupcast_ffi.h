enum groupcast_result
 {
  GROUPCAST_OK = 0,
  GROUPCAST_ERR_NULL_PARAMETER = 1,
  GROUPCAST_ERR_INVALID_UTF8 = 2,
  GROUPCAST_ERR_INVALID_ARGUMENT = 3,
  GROUPCAST_ERR_CONFIG = 4,
  GROUPCAST_ERR_BIND = 5,
  GROUPCAST_ERR_RUNTIME = 6,
  GROUPCAST_ERR_UNKNOWN_CONNECTION = 7,
  GROUPCAST_ERR_INVALID_GROUP = 8,
  GROUPCAST_ERR_JOIN = 9,
  GROUPCAST_ERR_INVALID_CLOSE_CODE = 10,
  GROUPCAST_ERR_CHANNEL = 11,
  GROUPCAST_ERR_STOPPED = 12,
  GROUPCAST_ERR_MODE = 13,
  GROUPCAST_ERR_BUFFER_TOO_SMALL = 14,
  GROUPCAST_ERR_PANIC = 15,
  GROUPCAST_ERR_INVALID_UID = 16,
};
typedef uint32_t groupcast_result;
enum groupcast_events
 {
  GROUPCAST_EVENTS_CONNECT = 1,
  GROUPCAST_EVENTS_APPROVE = 2,
  GROUPCAST_EVENTS_MESSAGE = 4,
  GROUPCAST_EVENTS_CLOSE = 8,
  GROUPCAST_EVENTS_CHANNEL = 16,
};
typedef uint32_t groupcast_events;
enum groupcast_event_kind
 {
  GROUPCAST_EVENT_CONNECT = 1,
  GROUPCAST_EVENT_MESSAGE = 2,
  GROUPCAST_EVENT_CLOSE = 3,
  GROUPCAST_EVENT_CHANNEL = 4,
};
typedef uint32_t groupcast_event_kind;
enum groupcast_limit
 {
  GROUPCAST_LIMIT_MAX_MESSAGE_SIZE = 1,
  GROUPCAST_LIMIT_OUTBOUND_QUEUE_BYTES = 2,
  GROUPCAST_LIMIT_MAX_GROUPS_PER_CONNECTION = 3,
  GROUPCAST_LIMIT_MAX_GROUP_ID_LEN = 4,
  GROUPCAST_LIMIT_MAX_CONNECTIONS = 5,
  GROUPCAST_LIMIT_PING_INTERVAL_MS = 6,
  GROUPCAST_LIMIT_IDLE_TIMEOUT_MS = 7,
  GROUPCAST_LIMIT_HANDSHAKE_TIMEOUT_MS = 8,
  GROUPCAST_LIMIT_DRAIN_TIMEOUT_MS = 9,
  GROUPCAST_LIMIT_SEND_BUFFER_SIZE = 10,
  GROUPCAST_LIMIT_HISTORY_SIZE = 170,
  GROUPCAST_LIMIT_HISTORY_TTL_MS = 171,
  GROUPCAST_LIMIT_HISTORY_MAX_BYTES = 172,
};
typedef uint32_t groupcast_limit;
enum groupcast_slow_consumer
 {
  GROUPCAST_SLOW_CONSUMER_CLOSE = 1,
  GROUPCAST_SLOW_CONSUMER_DROP = 2,
};
typedef uint32_t groupcast_slow_consumer;
typedef struct Verdict Verdict;
typedef struct groupcast_channel_client groupcast_channel_client;
typedef struct groupcast_channel_server groupcast_channel_server;
typedef struct groupcast_config groupcast_config;
typedef struct groupcast_groups groupcast_groups;
typedef struct groupcast_history groupcast_history;
typedef struct groupcast_server groupcast_server;
typedef struct groupcast_stats {
  uint64_t connections;
  uint64_t groups;
  uint64_t connections_opened;
  uint64_t connections_refused;
  uint64_t messages_in;
  uint64_t bytes_in;
  uint64_t messages_out;
  uint64_t bytes_out;
  uint64_t dropped_messages;
  uint64_t slow_consumer_closes;
  uint64_t heartbeat_timeouts;
  uint64_t bus_reconnects;
  uint64_t bus_dropped_publishes;
  uint64_t bus_connected;
  uint64_t bus_connect_attempts;
  uint64_t bus_auth_failures;
  uint64_t bus_dropped_events;
  uint64_t host_dropped_events;
  uint64_t tls_handshake_failures;
  uint64_t channel_refused;
  uint64_t channel_queue_dropped;
  uint64_t channel_undeliverable;
  uint64_t presence_resyncs;
  uint64_t presence_dropped_entries;
  uint64_t presence_expired_nodes;
  uint64_t presence_coalesced_events;
  uint64_t remote_actions_failed;
  uint64_t history_bytes;
  uint64_t history_evictions;
  uint64_t history_recovered;
  uint64_t history_not_recovered;
} groupcast_stats;
typedef struct groupcast_header {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} groupcast_header;
typedef struct groupcast_event {
  uint32_t kind;
  uint64_t conn;
  uint16_t close_code;
  bool is_binary;
  const uint8_t *data;
  size_t data_len;
  const char *channel;
  size_t channel_len;
  const char *peer;
  size_t peer_len;
  const char *path;
  size_t path_len;
  const char *query;
  size_t query_len;
  const struct groupcast_header *headers;
  size_t headers_len;
  const char *subprotocols;
  size_t subprotocols_len;
} groupcast_event;
typedef bool (*groupcast_connect_callback)(void *userdata,
                                           struct groupcast_server *server,
                                           const struct groupcast_event *event);
typedef void (*groupcast_userdata_free)(void *userdata);
typedef void (*groupcast_event_callback)(void *userdata,
                                         struct groupcast_server *server,
                                         const struct groupcast_event *event);
typedef struct groupcast_cluster_stats {
  uint64_t nodes;
  uint64_t connections;
  uint64_t users;
  uint64_t groups;
} groupcast_cluster_stats;
const char *groupcast_version(void);
void groupcast_result_message(uint32_t code,
                              char *buf,
                              size_t len,
                              size_t *out_len);
void groupcast_last_error_message(char *buf,
                                  size_t len,
                                  size_t *out_len);
groupcast_result groupcast_server_send_text(const struct groupcast_server *server,
                                            uint64_t conn,
                                            const char *text,
                                            size_t text_len);
groupcast_result groupcast_server_send_binary(const struct groupcast_server *server,
                                              uint64_t conn,
                                              const uint8_t *data,
                                              size_t data_len);
groupcast_result groupcast_server_close(const struct groupcast_server *server,
                                        uint64_t conn,
                                        uint16_t code,
                                        const char *reason,
                                        size_t reason_len);
groupcast_result groupcast_server_admit(const struct groupcast_server *server,
                                        uint64_t conn);
groupcast_result groupcast_server_admit_subprotocol(const struct groupcast_server *server,
                                                    uint64_t conn,
                                                    const char *protocol,
                                                    size_t len);
groupcast_result groupcast_server_refuse(const struct groupcast_server *server,
                                         uint64_t conn,
                                         uint16_t status,
                                         const char *body,
                                         size_t body_len);
groupcast_result groupcast_server_join(const struct groupcast_server *server,
                                       uint64_t conn,
                                       const char *group,
                                       size_t group_len,
                                       bool *out_joined);
groupcast_result groupcast_server_leave(const struct groupcast_server *server,
                                        uint64_t conn,
                                        const char *group,
                                        size_t group_len,
                                        bool *out_left);
groupcast_result groupcast_server_send_to_group(const struct groupcast_server *server,
                                                const char *group,
                                                size_t group_len,
                                                const char *text,
                                                size_t text_len,
                                                const uint64_t *exclude,
                                                size_t exclude_count,
                                                size_t *out_delivered);
groupcast_result groupcast_server_broadcast(const struct groupcast_server *server,
                                            const char *text,
                                            size_t text_len,
                                            const uint64_t *exclude,
                                            size_t exclude_count,
                                            size_t *out_delivered);
groupcast_result groupcast_server_group_size(const struct groupcast_server *server,
                                             const char *group,
                                             size_t group_len,
                                             size_t *out_size);
groupcast_result groupcast_server_connection_count(const struct groupcast_server *server,
                                                   size_t *out_count);
groupcast_result groupcast_server_stats(const struct groupcast_server *server,
                                        struct groupcast_stats *out_stats);
groupcast_result groupcast_server_health(const struct groupcast_server *server,
                                         bool *out_ok,
                                         char *buf,
                                         size_t len,
                                         size_t *out_len);
groupcast_result groupcast_server_groups(const struct groupcast_server *server,
                                         struct groupcast_groups **out_groups);
size_t groupcast_groups_count(const struct groupcast_groups *groups);
groupcast_result groupcast_groups_get(const struct groupcast_groups *groups,
                                      size_t index,
                                      const char **out_name,
                                      size_t *out_len);
void groupcast_groups_free(struct groupcast_groups *groups);
groupcast_result groupcast_server_channel_publish(const struct groupcast_server *server,
                                                  const char *channel,
                                                  size_t channel_len,
                                                  const char *data_json,
                                                  size_t data_json_len);
groupcast_result groupcast_server_channel_subscribe(const struct groupcast_server *server,
                                                    const char *channel,
                                                    size_t channel_len);
groupcast_result groupcast_server_channel_unsubscribe(const struct groupcast_server *server,
                                                      const char *channel,
                                                      size_t channel_len);
groupcast_result groupcast_channel_server_start(const char *listen,
                                                size_t listen_len,
                                                const char *secret,
                                                size_t secret_len,
                                                struct groupcast_channel_server **out_server);
groupcast_result groupcast_channel_server_address(const struct groupcast_channel_server *server,
                                                  char *buf,
                                                  size_t len,
                                                  size_t *out_len);
groupcast_result groupcast_channel_server_subscriber_count(const struct groupcast_channel_server *server,
                                                           const char *channel,
                                                           size_t channel_len,
                                                           size_t *out_count);
groupcast_result groupcast_channel_server_stats(const struct groupcast_channel_server *server,
                                                struct groupcast_stats *out_stats);
groupcast_result groupcast_channel_server_stop(struct groupcast_channel_server *server);
void groupcast_channel_server_free(struct groupcast_channel_server *server);
groupcast_result groupcast_channel_client_connect(const char *addr,
                                                  size_t addr_len,
                                                  const char *secret,
                                                  size_t secret_len,
                                                  struct groupcast_channel_client **out_client);
groupcast_result groupcast_channel_client_wait_connected(const struct groupcast_channel_client *client,
                                                         uint32_t timeout_ms,
                                                         bool *out_connected);
groupcast_result groupcast_channel_client_publish(const struct groupcast_channel_client *client,
                                                  const char *channel,
                                                  size_t channel_len,
                                                  const char *data_json,
                                                  size_t data_json_len);
groupcast_result groupcast_channel_client_subscribe(const struct groupcast_channel_client *client,
                                                    const char *channel,
                                                    size_t channel_len);
groupcast_result groupcast_channel_client_unsubscribe(const struct groupcast_channel_client *client,
                                                      const char *channel,
                                                      size_t channel_len);
groupcast_result groupcast_channel_client_poll(struct groupcast_channel_client *client,
                                               int32_t timeout_ms,
                                               struct groupcast_event *events,
                                               size_t capacity,
                                               size_t *out_count);
groupcast_result groupcast_channel_client_notify_fd(const struct groupcast_channel_client *client,
                                                    int *out_fd);
groupcast_result groupcast_channel_client_close(struct groupcast_channel_client *client);
void groupcast_channel_client_free(struct groupcast_channel_client *client);
groupcast_result groupcast_config_new(struct groupcast_config **out_config);
void groupcast_config_free(struct groupcast_config *config);
groupcast_result groupcast_config_set_listen(struct groupcast_config *config,
                                             const char *addr,
                                             size_t addr_len);
groupcast_result groupcast_config_set_channel_listen(struct groupcast_config *config,
                                                     const char *addr,
                                                     size_t addr_len);
groupcast_result groupcast_config_set_channel(struct groupcast_config *config,
                                              const char *addr,
                                              size_t addr_len);
groupcast_result groupcast_config_set_bus(struct groupcast_config *config,
                                          const char *url,
                                          size_t url_len);
groupcast_result groupcast_config_set_workers(struct groupcast_config *config,
                                              size_t workers);
groupcast_result groupcast_config_set_builtin_commands(struct groupcast_config *config,
                                                       bool enabled);
groupcast_result groupcast_config_set_demo_page(struct groupcast_config *config,
                                                bool enabled);
groupcast_result groupcast_config_set_events(struct groupcast_config *config,
                                             uint32_t events);
groupcast_result groupcast_config_set_queue_capacity(struct groupcast_config *config,
                                                     size_t capacity);
groupcast_result groupcast_config_set_limit(struct groupcast_config *config,
                                            uint32_t which,
                                            uint64_t value);
groupcast_result groupcast_config_set_slow_consumer(struct groupcast_config *config,
                                                    uint32_t policy);
groupcast_result groupcast_config_add_allowed_origin(struct groupcast_config *config,
                                                     const char *origin,
                                                     size_t origin_len);
groupcast_result groupcast_config_set_channel_secret(struct groupcast_config *config,
                                                     const char *secret,
                                                     size_t secret_len);
groupcast_result groupcast_config_set_metrics_listen(struct groupcast_config *config,
                                                     const char *addr,
                                                     size_t addr_len);
groupcast_result groupcast_config_on_connect(struct groupcast_config *config,
                                             groupcast_connect_callback callback_fn,
                                             void *userdata,
                                             groupcast_userdata_free free_userdata);
groupcast_result groupcast_config_on_message(struct groupcast_config *config,
                                             groupcast_event_callback callback_fn,
                                             void *userdata,
                                             groupcast_userdata_free free_userdata);
groupcast_result groupcast_config_on_close(struct groupcast_config *config,
                                           groupcast_event_callback callback_fn,
                                           void *userdata,
                                           groupcast_userdata_free free_userdata);
groupcast_result groupcast_config_on_channel_event(struct groupcast_config *config,
                                                   groupcast_event_callback callback_fn,
                                                   void *userdata,
                                                   groupcast_userdata_free free_userdata);
groupcast_result groupcast_config_set_channel_protocol(struct groupcast_config *config,
                                                       const char *protocol,
                                                       size_t protocol_len);
groupcast_result groupcast_server_poll(struct groupcast_server *server,
                                       int32_t timeout_ms,
                                       struct groupcast_event *events,
                                       size_t capacity,
                                       size_t *out_count);
groupcast_result groupcast_server_notify_fd(const struct groupcast_server *server,
                                            int *out_fd);
groupcast_result groupcast_server_send_to_group_with_offset(const struct groupcast_server *server,
                                                            const char *group,
                                                            size_t group_len,
                                                            const char *text,
                                                            size_t text_len,
                                                            const uint64_t *exclude,
                                                            size_t exclude_count,
                                                            size_t *out_delivered,
                                                            uint64_t *out_offset);
groupcast_result groupcast_server_history(const struct groupcast_server *server,
                                          const char *group,
                                          size_t group_len,
                                          uint64_t since,
                                          size_t limit,
                                          struct groupcast_history **out_history);
groupcast_result groupcast_history_epoch(const struct groupcast_history *history,
                                         const char **out_epoch,
                                         size_t *out_len);
size_t groupcast_history_count(const struct groupcast_history *history);
groupcast_result groupcast_history_get(const struct groupcast_history *history,
                                       size_t index,
                                       uint64_t *out_offset,
                                       const char **out_text,
                                       size_t *out_len);
void groupcast_history_free(struct groupcast_history *history);
groupcast_result groupcast_config_set_presence(struct groupcast_config *config,
                                               bool enabled,
                                               uint64_t lease_ms,
                                               bool client_command);
groupcast_result groupcast_server_bind_uid(const struct groupcast_server *server,
                                           uint64_t conn,
                                           const char *uid,
                                           size_t uid_len);
groupcast_result groupcast_server_unbind_uid(const struct groupcast_server *server,
                                             uint64_t conn);
groupcast_result groupcast_server_uid_of(const struct groupcast_server *server,
                                         uint64_t conn,
                                         bool *out_bound,
                                         char *buf,
                                         size_t len,
                                         size_t *out_len);
groupcast_result groupcast_server_send_to_uid(const struct groupcast_server *server,
                                              const char *uid,
                                              size_t uid_len,
                                              const char *text,
                                              size_t text_len,
                                              size_t *out_delivered);
groupcast_result groupcast_server_is_uid_online(const struct groupcast_server *server,
                                                const char *uid,
                                                size_t uid_len,
                                                bool *out_online);
groupcast_result groupcast_server_presence(const struct groupcast_server *server,
                                           const char *group,
                                           size_t group_len,
                                           size_t max_uids,
                                           uint64_t *out_connections,
                                           uint64_t *out_users,
                                           char *buf,
                                           size_t len,
                                           size_t *out_len);
groupcast_result groupcast_server_cluster_stats(const struct groupcast_server *server,
                                                struct groupcast_cluster_stats *out_stats);
groupcast_result groupcast_server_ungroup(const struct groupcast_server *server,
                                          const char *group,
                                          size_t group_len,
                                          size_t *out_left);
groupcast_result groupcast_server_start(const struct groupcast_config *config,
                                        struct groupcast_server **out_server);
groupcast_result groupcast_server_stop(struct groupcast_server *server);
void groupcast_server_free(struct groupcast_server *server);
groupcast_result groupcast_server_websocket_address(const struct groupcast_server *server,
                                                    char *buf,
                                                    size_t len,
                                                    size_t *out_len);
groupcast_result groupcast_server_channel_address(const struct groupcast_server *server,
                                                  char *buf,
                                                  size_t len,
                                                  size_t *out_len);
groupcast_result groupcast_config_set_tls(struct groupcast_config *config,
                                          const char *cert,
                                          size_t cert_len,
                                          const char *key,
                                          size_t key_len);
groupcast_result groupcast_config_set_channel_tls(struct groupcast_config *config,
                                                  const char *cert,
                                                  size_t cert_len,
                                                  const char *key,
                                                  size_t key_len);
groupcast_result groupcast_config_set_channel_ca(struct groupcast_config *config,
                                                 const char *ca,
                                                 size_t ca_len,
                                                 const char *server_name,
                                                 size_t server_name_len);
groupcast_result groupcast_server_reload_tls(const struct groupcast_server *server);
groupcast_result groupcast_channel_server_start_tls(const char *listen,
                                                    size_t listen_len,
                                                    const char *secret,
                                                    size_t secret_len,
                                                    const char *cert,
                                                    size_t cert_len,
                                                    const char *key,
                                                    size_t key_len,
                                                    struct groupcast_channel_server **out_server);
groupcast_result groupcast_channel_server_reload_tls(const struct groupcast_channel_server *server);
groupcast_result groupcast_channel_client_connect_tls(const char *addr,
                                                      size_t addr_len,
                                                      const char *secret,
                                                      size_t secret_len,
                                                      const char *ca,
                                                      size_t ca_len,
                                                      const char *server_name,
                                                      size_t server_name_len,
                                                      struct groupcast_channel_client **out_client);
