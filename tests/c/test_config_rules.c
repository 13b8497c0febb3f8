/* One meaning for 0: setters store what they are given and
 * groupcast_server_start refuses a 0 count, size or duration (but the drain
 * timeout) with GROUPCAST_ERR_CONFIG, naming the setting. An address that is
 * not HOST:PORT is refused at once by its setter with
 * GROUPCAST_ERR_INVALID_ARGUMENT, naming the setting. */
#include "check.h"

/* Starts `config` (then frees it), expecting GROUPCAST_ERR_CONFIG with
 * `name` in the details and no server written. */
static void refused_naming(groupcast_config *config, const char *name) {
    groupcast_server *server = (groupcast_server *)&server; /* not NULL */
    groupcast_server *const untouched = server;
    CHECK_RC(groupcast_server_start(config, &server), GROUPCAST_ERR_CONFIG);
    CHECK(server == untouched); /* out-parameters only on success */
    char why[512];
    size_t len = 0;
    groupcast_last_error_message(why, sizeof why, &len);
    if (strstr(why, name) == NULL) {
        fprintf(stderr, "expected \"%s\" in \"%s\"\n", name, why);
    }
    CHECK(len == strlen(why) && strstr(why, name) != NULL);
    groupcast_config_free(config);
}

static void zero_counts_and_sizes_are_refused_at_start(void) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_workers(config, 0));
    refused_naming(config, "workers");

    config = test_config();
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_MAX_CONNECTIONS, 0));
    refused_naming(config, "max_connections");

    config = test_config();
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_SEND_BUFFER_SIZE, 0));
    refused_naming(config, "send_buffer_size");

    config = test_config();
    CHECK_OK(groupcast_config_set_queue_capacity(config, 0));
    refused_naming(config, "queue_capacity");
}

static void zero_durations_are_refused_but_drain(void) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_PING_INTERVAL_MS, 0));
    refused_naming(config, "ping_interval");

    config = test_config();
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_HANDSHAKE_TIMEOUT_MS, 0));
    refused_naming(config, "handshake_timeout");

    config = test_config();
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_PING_INTERVAL_MS, 2000));
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_IDLE_TIMEOUT_MS, 1000));
    refused_naming(config, "idle_timeout");

    /* A drain timeout of 0 means "close at once": it starts. */
    config = test_config();
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_DRAIN_TIMEOUT_MS, 0));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    CHECK(server != NULL && server_port(server) != 0);
    CHECK_OK(groupcast_server_stop(server));
    groupcast_server_free(server);
    groupcast_config_free(config);
}

/* Expects the last error to name `name`. */
static void last_error_names(const char *name) {
    char why[512];
    groupcast_last_error_message(why, sizeof why, NULL);
    if (strstr(why, name) == NULL) {
        fprintf(stderr, "expected \"%s\" in \"%s\"\n", name, why);
    }
    CHECK(strstr(why, name) != NULL);
}

static void a_malformed_address_is_refused_by_its_setter(void) {
    groupcast_config *config = test_config();
    CHECK_RC(groupcast_config_set_listen(config, STR("127.0.0.1")), GROUPCAST_ERR_INVALID_ARGUMENT);
    last_error_names("HOST:PORT");
    CHECK_RC(groupcast_config_set_listen(config, NULL, 0), GROUPCAST_ERR_INVALID_ARGUMENT);
    last_error_names("listen");
    CHECK_RC(groupcast_config_set_channel_listen(config, STR("localhost")),
             GROUPCAST_ERR_INVALID_ARGUMENT);
    last_error_names("channel_listen");
    CHECK_RC(groupcast_config_set_channel(config, STR("[::1]")), GROUPCAST_ERR_INVALID_ARGUMENT);
    last_error_names("channel");
    CHECK_RC(groupcast_config_set_metrics_listen(config, STR("127.0.0.1:99999")),
             GROUPCAST_ERR_INVALID_ARGUMENT);
    last_error_names("metrics_listen");
    /* Length 0 still turns the optional ones off; the refused values were
     * not stored, so the config still starts. */
    CHECK_OK(groupcast_config_set_channel(config, NULL, 0));
    CHECK_OK(groupcast_config_set_metrics_listen(config, NULL, 0));
    CHECK_OK(groupcast_config_set_listen(config, STR("[::1]:0")));
    CHECK_OK(groupcast_config_set_listen(config, STR("127.0.0.1:0")));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    CHECK_OK(groupcast_server_stop(server));
    groupcast_server_free(server);
    groupcast_config_free(config);
}

int main(void) {
    zero_counts_and_sizes_are_refused_at_start();
    zero_durations_are_refused_but_drain();
    a_malformed_address_is_refused_by_its_setter();
    report("test_config_rules");
    return 0;
}
