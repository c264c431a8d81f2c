/* Unit tests of the management API client over HTTPS, against a real TLS server in this process
 * (no RabbitMQ): a throw-away CA made here with OpenSSL signs two server certificates, one for
 * localhost and 127.0.0.1 and one for another name, and a server thread serves one connection
 * per test. They check that the client trusts only the CA it is given (or the system's store),
 * checks the host name or address, sends SNI for names only, and that every failure (a plain
 * request to a TLS port, a server that never answers) ends in an error within the timeout.
 *
 * The client must never raise SIGPIPE, so this process leaves SIGPIPE at its default (fatal);
 * only the server thread blocks it, because the client may hang up while the server writes.
 * Every wait is bounded: the server's accept by poll(), its reads and writes by socket timeouts,
 * the client by its own timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "mgmt.h"

#define SERVER_WAIT_MS 5000 /* the longest any server-side wait lasts */
/* The timeout of the tests that wait for it to pass. Longer than one second because under load
 * (ctest -j, other suites churning loopback ports) a loopback SYN is now and then answered
 * wrongly and resent after 1 s: the wait must outlast the connect to reach the phase under test. */
#define SHORT_TIMEOUT_MS 1500
#define BODY "{\"management_version\":\"3.13.7\",\"node\":\"rabbit@test\"}"

/* ---- certificates -------------------------------------------------------------------- */

typedef struct pki {
    EVP_PKEY *ca_key, *good_key, *other_key;
    X509 *ca, *good, *other; /* good: localhost and 127.0.0.1; other: other.invalid only */
    char dir[256];
    char ca_file[300];       /* ca, PEM */
    char stranger_file[300]; /* another CA that signed nothing here, PEM */
    char garbage_file[300];  /* not PEM at all */
} pki_t;

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for key, named cn, signed by issuer (NULL: self-signed, a CA). san: the
 * subjectAltName of a server certificate. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san, X509 *issuer,
                       EVP_PKEY *issuer_key, long serial)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600));
    assert_int_equal(X509_set_pubkey(x, key), 1);
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0),
        1);
    assert_int_equal(X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name),
                     1);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    if (issuer == NULL) {
        add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
        add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, &ctx, NID_ext_key_usage, "serverAuth");
        add_ext(x, &ctx, NID_subject_alt_name, san);
    }
    assert_true(X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static void write_file(const char *path, X509 *cert, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (cert != NULL)
        assert_int_equal(PEM_write_X509(f, cert), 1);
    else
        assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static int setup_pki(void **state)
{
    pki_t *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->ca_key = EVP_EC_gen("P-256");
    p->good_key = EVP_EC_gen("P-256");
    p->other_key = EVP_EC_gen("P-256");
    assert_non_null(p->ca_key);
    assert_non_null(p->good_key);
    assert_non_null(p->other_key);
    p->ca = make_cert(p->ca_key, "petstore test CA", NULL, NULL, NULL, 1);
    p->good =
        make_cert(p->good_key, "localhost", "DNS:localhost,IP:127.0.0.1", p->ca, p->ca_key, 2);
    p->other = make_cert(p->other_key, "other.invalid", "DNS:other.invalid", p->ca, p->ca_key, 3);

    const char *tmp = getenv("TMPDIR");
    snprintf(p->dir, sizeof(p->dir), "%s/petstore-mgmt-tls-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(p->dir));
    snprintf(p->ca_file, sizeof(p->ca_file), "%s/ca.pem", p->dir);
    snprintf(p->stranger_file, sizeof(p->stranger_file), "%s/stranger.pem", p->dir);
    snprintf(p->garbage_file, sizeof(p->garbage_file), "%s/garbage.pem", p->dir);
    write_file(p->ca_file, p->ca, NULL);
    EVP_PKEY *stranger_key = EVP_EC_gen("P-256");
    assert_non_null(stranger_key);
    X509 *stranger = make_cert(stranger_key, "petstore test CA", NULL, NULL, NULL, 1);
    write_file(p->stranger_file, stranger, NULL);
    X509_free(stranger);
    EVP_PKEY_free(stranger_key);
    write_file(p->garbage_file, NULL, "this is not a certificate\n");
    *state = p;
    return 0;
}

static int teardown_pki(void **state)
{
    pki_t *p = *state;
    unlink(p->ca_file);
    unlink(p->stranger_file);
    unlink(p->garbage_file);
    rmdir(p->dir);
    X509_free(p->ca);
    X509_free(p->good);
    X509_free(p->other);
    EVP_PKEY_free(p->ca_key);
    EVP_PKEY_free(p->good_key);
    EVP_PKEY_free(p->other_key);
    free(p);
    return 0;
}

/* ---- the server ---------------------------------------------------------------------- */

typedef enum serve_mode {
    SERVE_ANSWER, /* handshake, read the request, answer 200 with BODY (or a large body) */
    SERVE_SILENT, /* handshake, read the request, never answer; wait for the client to leave */
    SERVE_PLAIN,  /* no TLS: read what comes, answer 400 in plain HTTP, as Cowboy would */
} serve_mode_t;

typedef struct server {
    SSL_CTX *ctx;
    int lfd, port;
    serve_mode_t mode;
    size_t big; /* SERVE_ANSWER: when > 0, answer a JSON array of this many zeros instead */
    pthread_t thread;
    /* Written by the thread, read after the join. */
    int handshake_ok;
    char sni[256]; /* the server name the client sent, "" for none */
    char request[4096];
} server_t;

/* Reads until the end of the request's header section (or an error, or the buffer is full). */
static void read_request(SSL *ssl, server_t *s)
{
    size_t n = 0;
    while (n < sizeof(s->request) - 1 && strstr(s->request, "\r\n\r\n") == NULL) {
        int k = SSL_read(ssl, s->request + n, (int)(sizeof(s->request) - 1 - n));
        if (k <= 0)
            return;
        n += (size_t)k;
        s->request[n] = '\0';
    }
}

static void write_all(SSL *ssl, const char *p, size_t n)
{
    while (n > 0) {
        int k = SSL_write(ssl, p, (int)n);
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static void answer(SSL *ssl, const server_t *s)
{
    char head[256];
    if (s->big == 0) {
        int h = snprintf(head, sizeof(head),
                         "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         "content-length: %zu\r\n\r\n",
                         strlen(BODY));
        write_all(ssl, head, (size_t)h);
        write_all(ssl, BODY, strlen(BODY));
        return;
    }
    /* "[0,0,...,0]": 2 * big + 1 bytes, sent in pieces over many TLS records. */
    size_t len = 2 * s->big + 1;
    char *body = malloc(len);
    if (body == NULL) /* no cmocka assertion on this thread: the client sees the failure */
        return;
    for (size_t i = 0; i < s->big; i++) {
        body[2 * i] = i == 0 ? '[' : ',';
        body[2 * i + 1] = '0';
    }
    body[len - 1] = ']';
    int h = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\ncontent-length: %zu\r\n\r\n", len);
    write_all(ssl, head, (size_t)h);
    for (size_t off = 0; off < len; off += 5000)
        write_all(ssl, body + off, len - off < 5000 ? len - off : 5000);
    free(body);
}

static void *serve(void *arg)
{
    server_t *s = arg;
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);

    struct pollfd p = {.fd = s->lfd, .events = POLLIN};
    if (poll(&p, 1, SERVER_WAIT_MS) != 1)
        return NULL;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    struct timeval tv = {.tv_sec = SERVER_WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (s->mode == SERVE_PLAIN) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                                  "connection: close\r\n\r\n";
        char hello[512];
        if (recv(fd, hello, sizeof(hello), 0) > 0 && send(fd, bad, strlen(bad), 0) > 0)
            shutdown(fd, SHUT_WR);
        while (recv(fd, hello, sizeof(hello), 0) > 0) /* until the client closes */
            ;
        close(fd);
        return NULL;
    }
    SSL *ssl = SSL_new(s->ctx);
    if (ssl != NULL && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1) {
        s->handshake_ok = 1;
        const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        snprintf(s->sni, sizeof(s->sni), "%s", sni != NULL ? sni : "");
        read_request(ssl, s);
        if (s->mode == SERVE_ANSWER) {
            answer(ssl, s);
            SSL_shutdown(ssl);
        } else {
            char c;
            while (SSL_read(ssl, &c, 1) > 0) /* until the client gives up and closes */
                ;
        }
    }
    SSL_free(ssl);
    close(fd);
    ERR_clear_error();
    return NULL;
}

/* Starts a server on 127.0.0.1 presenting cert (with the CA in its chain); mode and big as in
 * server_t. */
static void server_start(server_t *s, const pki_t *p, X509 *cert, EVP_PKEY *key, serve_mode_t mode,
                         size_t big)
{
    memset(s, 0, sizeof(*s));
    s->mode = mode;
    s->big = big;
    s->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(s->ctx);
    assert_int_equal(SSL_CTX_use_certificate(s->ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(s->ctx, key), 1);
    assert_int_equal(SSL_CTX_add1_chain_cert(s->ctx, p->ca), 1);

    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_join(server_t *s)
{
    assert_int_equal(pthread_join(s->thread, NULL), 0);
    close(s->lfd);
    SSL_CTX_free(s->ctx);
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000L + (t1.tv_nsec - t0->tv_nsec) / 1000000L;
}

/* One GET of /api/overview from the server's port on host, over scheme, as guest:secret. It
 * asserts nothing, so that a test always joins its server before it checks. */
static int get(const server_t *s, const char *scheme, const char *host, const char *ca_file,
               int timeout_ms, json_t **doc, err_t *e)
{
    char url[128];
    snprintf(url, sizeof(url), "%s://%s:%d", scheme, host, s->port);
    err_clear(e);
    *doc = NULL;
    int rc = mgmt_get_json(url, ca_file, "guest", "secret", "/api/overview", timeout_ms, doc, e);
    if (rc != 0)
        print_message("%s: %s: %s\n", url, err_name(rc), e->msg);
    return rc;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_https_with_the_right_ca_returns_the_json_answer(void **state)
{
    pki_t *p = *state;
    server_t s;
    server_start(&s, p, p->good, p->good_key, SERVE_ANSWER, 0);
    json_t *doc = NULL;
    err_t e;
    int rc = get(&s, "https", "127.0.0.1", p->ca_file, 5000, &doc, &e);
    server_join(&s);
    assert_int_equal(rc, 0);
    assert_null(strstr(e.msg, "secret"));
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "node")), "rabbit@test");
    json_decref(doc);
    assert_int_equal(s.handshake_ok, 1);
    assert_string_equal(s.sni, ""); /* no SNI for an address */
    assert_non_null(strstr(s.request, "GET /api/overview HTTP/1.1\r\n"));
    assert_non_null(strstr(s.request, "Authorization: Basic "));
}

static void test_https_to_a_host_name_sends_sni_and_checks_the_name(void **state)
{
    pki_t *p = *state;
    server_t s;
    server_start(&s, p, p->good, p->good_key, SERVE_ANSWER, 0);
    json_t *doc = NULL;
    err_t e;
    /* localhost may resolve to ::1 first, where nobody listens: the client tries the next. */
    int rc = get(&s, "https", "localhost", p->ca_file, 5000, &doc, &e);
    server_join(&s);
    assert_int_equal(rc, 0);
    assert_null(strstr(e.msg, "secret"));
    json_decref(doc);
    assert_string_equal(s.sni, "localhost");
    char host[64];
    snprintf(host, sizeof(host), "Host: localhost:%d\r\n", s.port);
    assert_non_null(strstr(s.request, host));
}

static void test_a_large_answer_arrives_over_many_records(void **state)
{
    pki_t *p = *state;
    server_t s;
    server_start(&s, p, p->good, p->good_key, SERVE_ANSWER, 100000); /* 200 kB: many records */
    json_t *doc = NULL;
    err_t e;
    int rc = get(&s, "https", "127.0.0.1", p->ca_file, 5000, &doc, &e);
    server_join(&s);
    assert_int_equal(rc, 0);
    assert_null(strstr(e.msg, "secret"));
    assert_true(json_is_array(doc));
    assert_int_equal(json_array_size(doc), 100000);
    json_decref(doc);
}

static void test_without_the_ca_the_certificate_does_not_verify(void **state)
{
    pki_t *p = *state;
    const char *none[] = {NULL, ""}; /* both mean the system's store, which lacks our CA */
    for (size_t i = 0; i < 2; i++) {
        server_t s;
        server_start(&s, p, p->good, p->good_key, SERVE_ANSWER, 0);
        json_t *doc = NULL;
        err_t e;
        int rc = get(&s, "https", "127.0.0.1", none[i], 5000, &doc, &e);
        server_join(&s);
        assert_int_equal(rc, ERR_CONFIG);
        assert_null(strstr(e.msg, "secret"));
        assert_null(doc);
        assert_int_equal(s.handshake_ok, 0);
        assert_non_null(strstr(e.msg, "certificate verify failed"));
        assert_non_null(strstr(e.msg, "TLS_CA_FILE"));
        assert_non_null(strstr(e.msg, "https://127.0.0.1:"));
    }
}

static void test_a_ca_file_of_another_authority_does_not_verify(void **state)
{
    pki_t *p = *state;
    server_t s;
    server_start(&s, p, p->good, p->good_key, SERVE_ANSWER, 0);
    json_t *doc = NULL;
    err_t e;
    /* The stranger has the same name as our CA, but not its key. */
    int rc = get(&s, "https", "127.0.0.1", p->stranger_file, 5000, &doc, &e);
    server_join(&s);
    assert_int_equal(rc, ERR_CONFIG);
    assert_null(doc);
    assert_non_null(strstr(e.msg, "certificate verify failed"));
    assert_non_null(strstr(e.msg, p->stranger_file));
}

static void test_a_certificate_for_another_name_does_not_verify(void **state)
{
    pki_t *p = *state;
    const char *hosts[] = {"127.0.0.1", "localhost"}; /* an address, then a name */
    for (size_t i = 0; i < 2; i++) {
        server_t s;
        server_start(&s, p, p->other, p->other_key, SERVE_ANSWER, 0);
        json_t *doc = NULL;
        err_t e;
        int rc = get(&s, "https", hosts[i], p->ca_file, 5000, &doc, &e);
        server_join(&s);
        assert_int_equal(rc, ERR_CONFIG);
        assert_null(strstr(e.msg, "secret"));
        assert_null(doc);
        assert_int_equal(s.handshake_ok, 0);
        assert_non_null(strstr(e.msg, "certificate verify failed"));
        assert_non_null(strstr(e.msg, "mismatch"));
    }
}

static void test_an_unreadable_ca_file_is_a_configuration_error(void **state)
{
    pki_t *p = *state;
    char missing[400];
    snprintf(missing, sizeof(missing), "%s/missing.pem", p->dir);
    json_t *doc = NULL;
    err_t e;
    err_clear(&e);
    /* Refused before any connection: the port does not matter. */
    assert_int_equal(
        mgmt_get_json("https://127.0.0.1:1", missing, "u", "p", "/api/overview", 1000, &doc, &e),
        ERR_CONFIG);
    print_message("%s\n", e.msg);
    assert_non_null(strstr(e.msg, missing));
    assert_null(doc);
    err_clear(&e);
    assert_int_equal(mgmt_get_json("https://127.0.0.1:1", p->garbage_file, "u", "p",
                                   "/api/overview", 1000, &doc, &e),
                     ERR_CONFIG);
    print_message("%s\n", e.msg);
    assert_non_null(strstr(e.msg, p->garbage_file));
    assert_null(doc);
}

static void test_plain_http_to_a_tls_port_fails_quickly_and_suggests_https(void **state)
{
    pki_t *p = *state;
    server_t s;
    server_start(&s, p, p->good, p->good_key, SERVE_ANSWER, 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    json_t *doc = NULL;
    err_t e;
    int rc = get(&s, "http", "127.0.0.1", NULL, 3000, &doc, &e);
    long ms = elapsed_ms(&t0);
    server_join(&s);
    assert_null(strstr(e.msg, "secret"));
    assert_null(doc);
    assert_int_equal(rc, ERR_RETRY);
    assert_non_null(strstr(e.msg, "https://"));
    assert_true(ms < 3000); /* the server hung up: no waiting for the timeout */
}

static void test_https_to_a_plain_http_port_is_a_handshake_failure(void **state)
{
    pki_t *p = *state;
    server_t s;
    server_start(&s, p, p->good, p->good_key, SERVE_PLAIN, 0);
    json_t *doc = NULL;
    err_t e;
    int rc = get(&s, "https", "127.0.0.1", p->ca_file, 3000, &doc, &e);
    server_join(&s);
    assert_int_equal(rc, ERR_CONFIG);
    assert_null(doc);
    assert_non_null(strstr(e.msg, "TLS handshake failed"));
    assert_non_null(strstr(e.msg, "http://"));
}

static void test_a_tls_server_that_never_answers_times_out(void **state)
{
    pki_t *p = *state;
    server_t s;
    server_start(&s, p, p->good, p->good_key, SERVE_SILENT, 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    json_t *doc = NULL;
    err_t e;
    int rc = get(&s, "https", "127.0.0.1", p->ca_file, SHORT_TIMEOUT_MS, &doc, &e);
    long ms = elapsed_ms(&t0);
    server_join(&s); /* the client closed the connection, so the server's read ends */
    assert_int_equal(rc, ERR_TIMEOUT);
    assert_null(strstr(e.msg, "secret"));
    assert_null(doc);
    assert_int_equal(s.handshake_ok, 1);
    assert_true(ms >= SHORT_TIMEOUT_MS - 10 && ms < SHORT_TIMEOUT_MS + 2000);
}

static void test_a_port_that_never_starts_tls_times_out(void **state)
{
    (void)state;
    /* The kernel accepts the connection; nobody ever reads the client's hello. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char url[64];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", ntohs(a.sin_port));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    json_t *doc = NULL;
    err_t e;
    err_clear(&e);
    assert_int_equal(
        mgmt_get_json(url, NULL, "u", "p", "/api/overview", SHORT_TIMEOUT_MS, &doc, &e),
        ERR_TIMEOUT);
    long ms = elapsed_ms(&t0);
    print_message("%s\n", e.msg);
    assert_true(ms >= SHORT_TIMEOUT_MS - 10 && ms < SHORT_TIMEOUT_MS + 2000);
    assert_non_null(strstr(e.msg, "TLS handshake"));
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https_with_the_right_ca_returns_the_json_answer),
        cmocka_unit_test(test_https_to_a_host_name_sends_sni_and_checks_the_name),
        cmocka_unit_test(test_a_large_answer_arrives_over_many_records),
        cmocka_unit_test(test_without_the_ca_the_certificate_does_not_verify),
        cmocka_unit_test(test_a_ca_file_of_another_authority_does_not_verify),
        cmocka_unit_test(test_a_certificate_for_another_name_does_not_verify),
        cmocka_unit_test(test_an_unreadable_ca_file_is_a_configuration_error),
        cmocka_unit_test(test_plain_http_to_a_tls_port_fails_quickly_and_suggests_https),
        cmocka_unit_test(test_https_to_a_plain_http_port_is_a_handshake_failure),
        cmocka_unit_test(test_a_tls_server_that_never_answers_times_out),
        cmocka_unit_test(test_a_port_that_never_starts_tls_times_out),
    };
    return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
