/* raw_http: a bare HTTP/1.1 client for the unit tests of the HTTP layer, so that what goes over
 * the socket is exactly what a test wrote (libcurl would tidy it up). Include after cmocka.h:
 * failures to connect or write fail the test. */
#ifndef PETSTORE_TEST_RAW_HTTP_H
#define PETSTORE_TEST_RAW_HTTP_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Sends request (len bytes) to 127.0.0.1:port, half-closes, and returns the whole response,
 * NUL-terminated (malloc'd: the caller frees). */
static char *raw_http_roundtrip(int port, const char *request, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, request + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    ssize_t r;
    while (n < cap - 1 && (r = read(fd, buf + n, cap - n - 1)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
    return buf;
}

#endif
