/* TLS from C: the setters, clear start errors, plain ws:// refused and
 * counted on the TLS port, reload (a new connection sees the new
 * certificate: read with the openssl command line tool), and a channel
 * server and client over TLS. Uses the fixed pairs in tests/fixtures/tls. */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "wsclient.h"

#define EC_CERT "tests/fixtures/tls/ec.crt"
#define EC_KEY "tests/fixtures/tls/ec-sec1.key"
#define RSA_CERT "tests/fixtures/tls/rsa.crt"
#define RSA_KEY "tests/fixtures/tls/rsa-pkcs1.key"

static void last_error(char *buf, size_t len) {
    groupcast_last_error_message(buf, len, NULL);
}

/* Runs a shell command and keeps its first line of output. */
static void first_line(const char *command, char *out, size_t len) {
    out[0] = '\0';
    FILE *pipe = popen(command, "r");
    CHECK(pipe != NULL);
    if (fgets(out, (int)len, pipe) == NULL) {
        out[0] = '\0';
    }
    pclose(pipe);
}

static void fingerprint_of_file(const char *cert, char *out, size_t len) {
    char command[512];
    snprintf(command, sizeof command, "openssl x509 -in %s -noout -fingerprint -sha256", cert);
    first_line(command, out, len);
}

static void fingerprint_served(unsigned short port, char *out, size_t len) {
    char command[512];
    snprintf(command, sizeof command,
             "openssl s_client -connect 127.0.0.1:%u -servername localhost </dev/null 2>/dev/null"
             " | openssl x509 -noout -fingerprint -sha256",
             port);
    first_line(command, out, len);
}

static void copy_file(const char *from, const char *to) {
    char command[1024];
    snprintf(command, sizeof command, "cp %s %s", from, to);
    CHECK(system(command) == 0);
}

static void setters_and_start_errors(void) {
    char message[512];
    groupcast_config *config = test_config();
    /* One without the other. */
    CHECK_RC(groupcast_config_set_tls(config, STR(EC_CERT), NULL, 0), GROUPCAST_ERR_INVALID_ARGUMENT);
    CHECK_RC(groupcast_config_set_channel_ca(config, NULL, 0, STR("localhost")),
             GROUPCAST_ERR_INVALID_ARGUMENT);
    /* A key from another pair: the start fails, naming the key file. */
    CHECK_OK(groupcast_config_set_tls(config, STR(EC_CERT), STR(RSA_KEY)));
    groupcast_server *server = NULL;
    CHECK_RC(groupcast_server_start(config, &server), GROUPCAST_ERR_CONFIG);
    CHECK(server == NULL);
    last_error(message, sizeof message);
    CHECK(strstr(message, RSA_KEY) != NULL);
    CHECK(strstr(message, "does not match the certificate") != NULL);
    /* A missing file. */
    CHECK_OK(groupcast_config_set_tls(config, STR("/nonexistent/cert.pem"), STR(EC_KEY)));
    CHECK_RC(groupcast_server_start(config, &server), GROUPCAST_ERR_CONFIG);
    last_error(message, sizeof message);
    CHECK(strstr(message, "/nonexistent/cert.pem: cannot read it") != NULL);
    /* Off again: a plain server, which has nothing to reload. */
    CHECK_OK(groupcast_config_set_tls(config, NULL, 0, NULL, 0));
    CHECK_OK(groupcast_server_start(config, &server));
    CHECK_RC(groupcast_server_reload_tls(server), GROUPCAST_ERR_CONFIG);
    last_error(message, sizeof message);
    CHECK(strstr(message, "serves no TLS") != NULL);
    groupcast_server_free(server);
    groupcast_config_free(config);
}

static void plain_refused_and_reload(void) {
    char dir[] = "/tmp/groupcast-c-tls-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char cert[256], key[256];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    copy_file(EC_CERT, cert);
    copy_file(EC_KEY, key);

    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_tls(config, STR(cert), STR(key)));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    unsigned short port = server_port(server);

    /* Plain ws:// gets no websocket, and is counted. */
    int fd = ws_connect(port, "/", 2000);
    CHECK(fd < 0);
    groupcast_stats stats;
    WAIT_FOR(groupcast_server_stats(server, &stats) == GROUPCAST_OK &&
             stats.tls_handshake_failures == 1);

    char expected[256], served[256];
    fingerprint_of_file(EC_CERT, expected, sizeof expected);
    CHECK(strncmp(expected, "sha256 Fingerprint=", 19) == 0 ||
          strncmp(expected, "SHA256 Fingerprint=", 19) == 0);
    fingerprint_served(port, served, sizeof served);
    CHECK(strcmp(expected, served) == 0);

    /* Renewed files, reloaded: new connections get the new certificate. */
    copy_file(RSA_CERT, cert);
    copy_file(RSA_KEY, key);
    CHECK_OK(groupcast_server_reload_tls(server));
    fingerprint_of_file(RSA_CERT, expected, sizeof expected);
    fingerprint_served(port, served, sizeof served);
    CHECK(strcmp(expected, served) == 0);

    /* A bad key: refused, named, and the certificate in use stays. */
    FILE *bad = fopen(key, "w");
    CHECK(bad != NULL);
    fputs("not a key\n", bad);
    fclose(bad);
    char message[512];
    CHECK_RC(groupcast_server_reload_tls(server), GROUPCAST_ERR_CONFIG);
    last_error(message, sizeof message);
    CHECK(strstr(message, "no private key in it") != NULL);
    fingerprint_served(port, served, sizeof served);
    CHECK(strcmp(expected, served) == 0);

    CHECK_OK(groupcast_server_stop(server));
    CHECK_RC(groupcast_server_reload_tls(server), GROUPCAST_ERR_STOPPED);
    groupcast_server_free(server);
    groupcast_config_free(config);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

static void channel_over_tls(void) {
    groupcast_channel_server *hub = NULL;
    CHECK_OK(groupcast_channel_server_start_tls(STR("127.0.0.1:0"), STR("s3cret"), STR(EC_CERT),
                                                STR(EC_KEY), &hub));
    char addr[64];
    CHECK_OK(groupcast_channel_server_address(hub, addr, sizeof addr, NULL));

    groupcast_channel_client *client = NULL;
    CHECK_OK(groupcast_channel_client_connect_tls(STR(addr), STR("s3cret"), STR(EC_CERT),
                                                  STR("localhost"), &client));
    bool connected = false;
    CHECK_OK(groupcast_channel_client_wait_connected(client, 5000, &connected));
    CHECK(connected);
    groupcast_channel_client_free(client);

    /* A client that does not trust the certificate never connects. */
    CHECK_OK(groupcast_channel_client_connect_tls(STR(addr), STR("s3cret"), STR(RSA_CERT), NULL, 0,
                                                  &client));
    CHECK_OK(groupcast_channel_client_wait_connected(client, 300, &connected));
    CHECK(!connected);
    groupcast_channel_client_free(client);
    CHECK_RC(groupcast_channel_client_connect_tls(STR(addr), STR("s3cret"), NULL, 0, NULL, 0, &client),
             GROUPCAST_ERR_INVALID_ARGUMENT);

    CHECK_OK(groupcast_channel_server_reload_tls(hub));
    groupcast_channel_server_free(hub);
}

int main(void) {
    setters_and_start_errors();
    plain_refused_and_reload();
    channel_over_tls();
    report("test_tls");
    return 0;
}
