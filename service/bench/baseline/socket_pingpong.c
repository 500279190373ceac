// C reference for lowlat's numba socket round trip (service/kernels/transport_probes.py).
//
// `trading-service bench --transports` judges the numba UDP and TCP paths against this program
// on the same machine and route: "the numba socket paths within 1.3x of the C reference RTT".
// The ratio means something only if both run the same loop, so this file copies the kernels'
// loop and nothing more:
//
//   - a 64-byte message (seq, stamp, 48-byte body) per round, over a connected UDP socket or a
//     TCP connection with TCP_NODELAY, both non-blocking;
//   - send(MSG_DONTWAIT | MSG_NOSIGNAL) until every byte is out, recv(MSG_DONTWAIT) until the
//     64 bytes are in, busy-polling on EAGAIN with no pause hint;
//   - one clock_gettime(CLOCK_MONOTONIC) before the send and one after the echo per round, and
//     one every 256 polls while waiting, for the timeout;
//   - a UDP echo that does not come within the timeout is a lost round, not a sample.
//
// Build (service/bench/baseline/__init__.py):   cc -O2 -std=c11
//
// Usage:
//   socket_pingpong responder --proto udp|tcp --local IP:PORT --peer IP:PORT --cpu C
//                             [--idle-ms MS]
//   socket_pingpong initiator --proto udp|tcp --local IP:PORT --peer IP:PORT --cpu C
//                             --rounds N [--warmup W] [--timeout-ms MS]
// The responder prints "ready" once it listens (TCP) or is bound (UDP), then {"echoed": N}.
// The initiator prints one JSON line: rounds, lost and rtt_ns {min, p50, p90, p99, p999, max,
// mean} (nearest-rank percentiles of the rounds that came back). Errors: a message on stderr,
// exit 2 (usage) or 3 (runtime).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kExitUsage = 2, kExitRuntime = 3, kBytes = 64, kClockEvery = 256 };
static const int64_t kStop = -1;
static const int kTimedOut = -ETIMEDOUT;

typedef struct {
    int64_t seq;
    int64_t stamp;
    int64_t body[6];
} Message;
_Static_assert(sizeof(Message) == kBytes, "a message is 64 bytes");

static void die(int code, const char* what, const char* detail) {
    fprintf(stderr, "socket_pingpong: %s%s%s\n", what, detail[0] ? ": " : "", detail);
    exit(code);
}

static inline int64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// The kernels' send_all and recv_all: the byte count, 0 (recv: peer closed) or -errno.
static int64_t send_all(int fd, const char* p, int64_t size, int64_t deadline) {
    int64_t done = 0, polls = 0;
    while (done < size) {
        ssize_t n = send(fd, p + done, (size_t)(size - done), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) { done += n; continue; }
        if (errno != EAGAIN && errno != EINTR) return -errno;
        if (++polls % kClockEvery == 0 && monotonic_ns() > deadline) return kTimedOut;
    }
    return done;
}

static int64_t recv_all(int fd, char* p, int64_t size, int64_t deadline) {
    int64_t done = 0, polls = 0;
    while (done < size) {
        ssize_t n = recv(fd, p + done, (size_t)(size - done), MSG_DONTWAIT);
        if (n > 0) { done += n; continue; }
        if (n == 0) return 0;
        if (errno != EAGAIN && errno != EINTR) return -errno;
        if (++polls % kClockEvery == 0 && monotonic_ns() > deadline) return kTimedOut;
    }
    return done;
}

typedef struct {
    const char* role;
    int tcp;
    struct sockaddr_in local, peer;
    int cpu;
    int64_t rounds, warmup, timeout_ns, idle_ns;
} Args;

static void parse_addr(const char* text, struct sockaddr_in* out) {
    char host[64];
    const char* colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host) die(kExitUsage, "bad address", text);
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1) die(kExitUsage, "bad IPv4 address", text);
}

static Args parse(int argc, char** argv) {
    if (argc < 2) die(kExitUsage, "usage: socket_pingpong initiator|responder --proto ...", "");
    Args a = {argv[1], -1, {0}, {0}, -1, 0, 1000, 100000000LL, 2000000000LL};
    int have_local = 0, have_peer = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--proto")) a.tcp = !strcmp(v, "tcp") ? 1 : !strcmp(v, "udp") ? 0 : -2;
        else if (!strcmp(k, "--local")) { parse_addr(v, &a.local); have_local = 1; }
        else if (!strcmp(k, "--peer")) { parse_addr(v, &a.peer); have_peer = 1; }
        else if (!strcmp(k, "--cpu")) a.cpu = atoi(v);
        else if (!strcmp(k, "--rounds")) a.rounds = atoll(v);
        else if (!strcmp(k, "--warmup")) a.warmup = atoll(v);
        else if (!strcmp(k, "--timeout-ms")) a.timeout_ns = atoll(v) * 1000000LL;
        else if (!strcmp(k, "--idle-ms")) a.idle_ns = atoll(v) * 1000000LL;
        else die(kExitUsage, "unknown option", k);
    }
    if (strcmp(a.role, "initiator") && strcmp(a.role, "responder"))
        die(kExitUsage, "the role is initiator or responder, not", a.role);
    if (a.tcp < 0) die(kExitUsage, "--proto must be udp or tcp", "");
    if (!have_local || !have_peer || a.cpu < 0) die(kExitUsage, "need --local, --peer, --cpu", "");
    if (!strcmp(a.role, "initiator") && a.rounds < 1) die(kExitUsage, "need --rounds >= 1", "");
    return a;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die(kExitRuntime, "cannot pin", strerror(errno));
}

// Every call passes MSG_DONTWAIT, as the kernels do: the socket itself may stay blocking.
static void nodelay(int fd, int tcp) {
    int one = 1;
    if (tcp && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        die(kExitRuntime, "TCP_NODELAY", strerror(errno));
}

// The responder: bound (UDP, connected to the peer) or accepting (TCP), then echoing.
static int responder(const Args* a) {
    int s = socket(AF_INET, a->tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (const struct sockaddr*)&a->local, sizeof a->local) != 0)
        die(kExitRuntime, "bind", strerror(errno));
    int fd = s;
    if (a->tcp) {
        if (listen(s, 1) != 0) die(kExitRuntime, "listen", strerror(errno));
        printf("ready\n");
        fflush(stdout);
        fd = accept(s, NULL, NULL);
        if (fd < 0) die(kExitRuntime, "accept", strerror(errno));
        close(s);
    } else {
        if (connect(s, (const struct sockaddr*)&a->peer, sizeof a->peer) != 0)
            die(kExitRuntime, "connect", strerror(errno));
        printf("ready\n");
        fflush(stdout);
    }
    nodelay(fd, a->tcp);
    Message m;
    int64_t echoed = 0;
    for (;;) {
        int64_t n = recv_all(fd, (char*)&m, kBytes, monotonic_ns() + a->idle_ns);
        if (n == kTimedOut || n == 0) break;
        if (n < 0) die(kExitRuntime, "recv", strerror((int)-n));
        n = send_all(fd, (const char*)&m, kBytes, monotonic_ns() + a->idle_ns);
        if (n < 0) die(kExitRuntime, "send", strerror((int)-n));
        ++echoed;
        if (m.seq == kStop) break;
    }
    printf("{\"echoed\": %" PRId64 "}\n", echoed);
    close(fd);
    return 0;
}

static int compare(const void* x, const void* y) {
    int64_t a = *(const int64_t*)x, b = *(const int64_t*)y;
    return (a > b) - (a < b);
}

static int64_t rank(const int64_t* sorted, int64_t n, int64_t ppm) {
    int64_t r = (n * ppm + 999999) / 1000000;  // nearest rank: ceil(q * n), 1-based
    return sorted[(r < 1 ? 1 : r) - 1];
}

// One round: 0 and the sample in *rtt, 1 for a lost round (UDP), or -errno.
static int64_t round_trip(int fd, int64_t i, int64_t timeout_ns, int64_t* rtt) {
    Message out = {0}, back;
    out.seq = i;
    int64_t t0 = monotonic_ns();
    out.stamp = t0;
    int64_t n = send_all(fd, (const char*)&out, kBytes, t0 + timeout_ns);
    if (n < 0) return n;
    for (;;) {
        n = recv_all(fd, (char*)&back, kBytes, t0 + timeout_ns);
        if (n == kTimedOut) return 1;
        if (n <= 0) return n < 0 ? n : -ECONNRESET;
        if (back.seq == i) {
            *rtt = monotonic_ns() - t0;
            return 0;
        }
    }
}

static int initiator(const Args* a) {
    int s = socket(AF_INET, a->tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (!a->tcp && bind(s, (const struct sockaddr*)&a->local, sizeof a->local) != 0)
        die(kExitRuntime, "bind", strerror(errno));
    int tries = 0;
    while (connect(s, (const struct sockaddr*)&a->peer, sizeof a->peer) != 0) {
        if (!a->tcp || ++tries > 500) die(kExitRuntime, "connect", strerror(errno));
        close(s);  // a refused TCP connect leaves the socket unusable: a new one each try
        s = socket(AF_INET, SOCK_STREAM, 0);
        usleep(10000);
    }
    nodelay(s, a->tcp);
    int64_t* samples = malloc((size_t)a->rounds * sizeof *samples);
    if (!samples) die(kExitRuntime, "cannot allocate samples", "");
    int64_t got = 0, lost = 0, rtt = 0;
    for (int64_t i = 0; i < a->warmup + a->rounds; ++i) {
        int64_t rc = round_trip(s, i, a->timeout_ns, &rtt);
        if (rc < 0) die(kExitRuntime, "round trip", strerror((int)-rc));
        if (i < a->warmup) continue;
        if (rc == 1) ++lost;
        else samples[got++] = rtt;
    }
    Message stop = {0};
    stop.seq = kStop;
    send_all(s, (const char*)&stop, kBytes, monotonic_ns() + a->timeout_ns);
    close(s);
    if (got == 0) die(kExitRuntime, "no round trip came back", "");
    qsort(samples, (size_t)got, sizeof *samples, compare);
    double sum = 0;
    for (int64_t i = 0; i < got; ++i) sum += (double)samples[i];
    printf("{\"rounds\": %" PRId64 ", \"lost\": %" PRId64 ", \"rtt_ns\": {\"min\": %" PRId64
           ", \"p50\": %" PRId64 ", \"p90\": %" PRId64 ", \"p99\": %" PRId64 ", \"p999\": %" PRId64
           ", \"max\": %" PRId64 ", \"mean\": %.1f}}\n",
           got, lost, samples[0], rank(samples, got, 500000), rank(samples, got, 900000),
           rank(samples, got, 990000), rank(samples, got, 999000), samples[got - 1], sum / got);
    free(samples);
    return 0;
}

int main(int argc, char** argv) {
    Args a = parse(argc, argv);
    pin(a.cpu);
    return !strcmp(a.role, "responder") ? responder(&a) : initiator(&a);
}
