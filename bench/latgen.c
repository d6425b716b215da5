/* The benchmark's open-loop latency generator, in C (see bench/latgen.py).
 *
 * It offers a tracker a fixed rate of pre-encoded requests (UDP BEP 15, or HTTP with
 * keep-alive or Connection: close), one every 1/rate seconds on an even schedule, for a
 * fixed time, and measures each reply with the kernel's receive timestamp (SO_TIMESTAMPNS
 * for UDP, SO_TIMESTAMPING software receive stamps for TCP). So a reply that waits in this
 * process's socket buffer while it is busy sending is not billed to the tracker, and the
 * send time is read just before the send system call. Two latencies per reply:
 *   service:  kernel receive time minus the time just before the request's send (for
 *             HTTP close, before the connect() that opens its connection);
 *   schedule: kernel receive time minus the time the request was due: what a client
 *             that sends on time sees, queueing for a connection and any lateness of this
 *             generator included (no coordinated omission).
 * The loop never sleeps (it busy-polls epoll), as the Python generator does.
 *
 * With RATE 0 the loop is closed instead: CONNECTIONS requests are kept in flight (for
 * UDP, over all sockets), the next one sent as soon as one is answered, so the tracker
 * is offered all it can take: the benchmark's peak phase. Requests are then due when
 * sent, and the latencies are those of a saturated tracker.
 *
 * LATGEN_CPU_PIDS (comma-separated pids, the tracker's process tree) makes it report the
 * CPU seconds those processes used from the end of the warm-up to the end of the drain,
 * read from /proc at those two moments, so the figure per CPU-second covers exactly the
 * replies counted.
 *
 * Input: a file written by bench/latgen.py (format in write_ops there). Output: one JSON
 * object on stdout. Only loopback IPv4 addresses are accepted.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SCM_TIMESTAMPING
#define SCM_TIMESTAMPING SO_TIMESTAMPING
#endif

enum { MODE_UDP = 0, MODE_KEEPALIVE = 1, MODE_CLOSE = 2 };
enum { UDP_CONNECT = 0, UDP_ANNOUNCE = 1, UDP_SCRAPE = 2, UDP_ERROR = 3 };
enum { KIND_ANNOUNCE = 1, KIND_SCRAPE = 2 };

typedef struct {
    uint16_t source;
    uint8_t connect; /* UDP: a fresh connect goes before it */
    uint8_t kind;    /* UDP action, or HTTP kind */
    uint32_t limit;  /* UDP: announce reply size limit, scrape exact size */
    uint32_t len;
    const uint8_t *body;
} Op;

static Op *ops;
static uint32_t n_ops;
static uint32_t *sources; /* network order */
static uint32_t n_sources;
static int mode;
static uint16_t port;

/* -- clock and results ------------------------------------------------------------- */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* the clock kernel receive stamps are in */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct {
    int64_t *v;
    size_t n, cap;
} Samples;

static void push(Samples *s, int64_t x) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->v = realloc(s->v, s->cap * sizeof(int64_t));
        if (!s->v) {
            perror("realloc");
            exit(2);
        }
    }
    s->v[s->n++] = x;
}

static Samples service, schedule, lag, arrival;
static struct {
    uint64_t sent, responses, announces, scrapes, connects, errors, timeouts, retries,
        skipped, no_stamp, late;
} st;

#define N_REASONS 16
static const char *reasons[N_REASONS];
static uint64_t reason_counts[N_REASONS];

static void error_(const char *why) {
    st.errors++;
    for (int i = 0; i < N_REASONS; i++) {
        if (reasons[i] == why || reasons[i] == NULL) {
            reasons[i] = why;
            reason_counts[i]++;
            return;
        }
    }
}

static int recording;
static int64_t record_from; /* requests due before this are the warm-up: not recorded */
static uint64_t measured;   /* checked replies to requests due after the warm-up */
static uint64_t measured_connects; /* UDP connect replies for those requests */

/* User plus system CPU seconds of the processes in LATGEN_CPU_PIDS; -1 without it. */
static double pids_cpu(void) {
    const char *list = getenv("LATGEN_CPU_PIDS");
    if (!list || !*list)
        return -1;
    long ticks = 0, hz = sysconf(_SC_CLK_TCK);
    for (const char *p = list; *p;) {
        long pid = strtol(p, (char **)&p, 10);
        if (*p == ',')
            p++;
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* gone: it used nothing more */
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        /* Fields after the command name (which may hold spaces): state is the 3rd field,
           utime the 14th and stime the 15th. */
        char *at = strrchr(buf, ')');
        unsigned long ut = 0, st_ = 0;
        if (at && sscanf(at + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                         &st_) == 2)
            ticks += (long)(ut + st_);
    }
    return hz > 0 ? (double)ticks / (double)hz : -1;
}

static void record(int64_t rx, int64_t sent, int64_t due) {
    if (!recording || due < record_from)
        return;
    measured++;
    push(&service, rx - sent);
    push(&schedule, rx - due);
    push(&arrival, rx);
}

/* The kernel receive stamp from a recvmsg's control data, or 0. */
static int64_t rx_stamp(struct msghdr *msg) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        }
        if (c->cmsg_type == SCM_TIMESTAMPING) {
            struct timespec ts[3];
            memcpy(ts, CMSG_DATA(c), sizeof ts);
            if (ts[0].tv_sec || ts[0].tv_nsec)
                return (int64_t)ts[0].tv_sec * 1000000000 + ts[0].tv_nsec;
        }
    }
    return 0;
}

static int64_t stamp_or_now(struct msghdr *msg) {
    int64_t t = rx_stamp(msg);
    if (t)
        return t;
    st.no_stamp++;
    return now_ns();
}

/* The kernel turns stamping on a while after a socket asks for it (deferred work), and
   off a while after the last one closes, such as the previous run's: wait until a datagram
   this socket sends itself over loopback comes back stamped, so the first replies are too.
   -1 (said on stderr) when none is within two seconds. */
static int await_stamps(int fd) {
    struct sockaddr_in self = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof self;
    if (bind(fd, (struct sockaddr *)&self, sizeof self) < 0 ||
        getsockname(fd, (struct sockaddr *)&self, &len) < 0) {
        perror("stamp check socket");
        return -1;
    }
    struct timeval wait = {0, 10000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    for (int tries = 0; tries < 100; tries++) {
        char byte = 0, ctrl[256];
        if (sendto(fd, &byte, 1, 0, (struct sockaddr *)&self, sizeof self) == 1) {
            struct iovec iov = {&byte, 1};
            struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl,
                                 .msg_controllen = sizeof ctrl};
            if (recvmsg(fd, &msg, 0) == 1 && rx_stamp(&msg) != 0)
                return 0;
        }
        usleep(10000);
    }
    fprintf(stderr, "the kernel does not stamp received packets\n");
    return -1;
}

static int epfd;

static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static struct sockaddr_in addr_of(uint32_t ip, uint16_t p) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = ip;
    a.sin_port = htons(p);
    return a;
}

/* -- UDP ----------------------------------------------------------------------------- */

#define PROTOCOL_ID 0x41727101980ULL
#define PENDING_BITS 18
#define PENDING (1u << PENDING_BITS)
#define WAIT_RING 256

typedef struct {
    uint32_t txid;
    uint32_t op; /* UINT32_MAX: a connect */
    uint16_t sock;
    uint8_t live;
    int64_t sent, due;
} Pending;

typedef struct {
    int fd;
    uint64_t cid;
    int have_cid;
    int connecting;
    uint32_t connect_txid;
    uint32_t wait_op[WAIT_RING];
    int64_t wait_due[WAIT_RING];
    unsigned wait_head, wait_n;
} UdpSock;

static UdpSock *usocks;
static Pending *pending;
static uint32_t next_txid = 0x5a5a0000u;
static uint64_t udp_out; /* operations issued and not yet answered, failed or given up */
static uint32_t oldest_txid; /* the pending table is in send order: txid order */

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}
static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static Pending *slot(uint32_t txid) { return &pending[txid & (PENDING - 1)]; }

static int udp_send(uint16_t si, uint32_t op, int64_t due) {
    UdpSock *s = &usocks[si];
    uint8_t buf[2048];
    uint32_t txid = next_txid;
    Pending *p = slot(txid);
    if (p->live) {
        st.skipped++; /* the table is full of unanswered requests */
        udp_out -= op != UINT32_MAX;
        return -1;
    }
    size_t len = 16;
    if (op == UINT32_MAX) {
        put_be64(buf, PROTOCOL_ID);
        put_be32(buf + 8, UDP_CONNECT);
    } else {
        const Op *o = &ops[op];
        if (o->len > sizeof buf - 16) {
            error_("request too long");
            udp_out--;
            return -1;
        }
        put_be64(buf, s->cid);
        put_be32(buf + 8, o->kind);
        memcpy(buf + 16, o->body, o->len);
        len += o->len;
    }
    put_be32(buf + 12, txid);
    next_txid++;
    p->txid = txid;
    p->op = op;
    p->sock = si;
    p->live = 1;
    p->due = due;
    p->sent = now_ns();
    if (send(s->fd, buf, len, 0) < 0) {
        p->live = 0;
        error_("send failed");
        udp_out -= op != UINT32_MAX;
        return -1;
    }
    st.sent++;
    if (recording && op != UINT32_MAX && due >= record_from)
        push(&lag, p->sent - due);
    if (op == UINT32_MAX) {
        s->connecting = 1;
        s->connect_txid = txid;
    }
    return 0;
}

static void udp_issue(uint32_t op, int64_t due) {
    const Op *o = &ops[op];
    uint16_t si = o->source;
    UdpSock *s = &usocks[si];
    udp_out++;
    if (o->connect && !s->connecting)
        s->have_cid = 0;
    if (s->connecting || !s->have_cid || s->wait_n) {
        if (s->wait_n == WAIT_RING) {
            st.skipped++;
            udp_out--;
            return;
        }
        unsigned at = (s->wait_head + s->wait_n++) % WAIT_RING;
        s->wait_op[at] = op;
        s->wait_due[at] = due;
        if (!s->connecting)
            udp_send(si, UINT32_MAX, due);
        return;
    }
    udp_send(si, op, due);
}

static void udp_flush_waiting(uint16_t si) {
    UdpSock *s = &usocks[si];
    while (s->wait_n && s->have_cid && !s->connecting) {
        uint32_t op = s->wait_op[s->wait_head];
        int64_t due = s->wait_due[s->wait_head];
        s->wait_head = (s->wait_head + 1) % WAIT_RING;
        s->wait_n--;
        udp_send(si, op, due);
    }
}

static void udp_read(uint16_t si) {
    UdpSock *s = &usocks[si];
    for (;;) {
        uint8_t buf[4096];
        char ctrl[256];
        struct iovec iov = {buf, sizeof buf};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl;
        msg.msg_controllen = sizeof ctrl;
        ssize_t n = recvmsg(s->fd, &msg, MSG_DONTWAIT);
        if (n < 0)
            return;
        int64_t rx = stamp_or_now(&msg);
        if (n < 8) {
            error_("short datagram");
            continue;
        }
        uint32_t action = get_be32(buf), txid = get_be32(buf + 4);
        Pending *p = slot(txid);
        if (!p->live || p->txid != txid || p->sock != si) {
            st.late++;
            continue;
        }
        p->live = 0;
        if (p->op == UINT32_MAX) {
            s->connecting = 0;
            if (action == UDP_CONNECT && n == 16) {
                s->cid = (uint64_t)get_be32(buf + 8) << 32 | get_be32(buf + 12);
                s->have_cid = 1;
                st.connects++;
                measured_connects += recording && p->due >= record_from;
                udp_flush_waiting(si);
            } else {
                error_("bad connect reply");
                s->have_cid = 0;
                st.skipped += s->wait_n;
                udp_out -= s->wait_n;
                s->wait_n = 0;
            }
            continue;
        }
        const Op *o = &ops[p->op];
        udp_out--;
        if (action != o->kind) {
            if (action == UDP_ERROR) {
                error_("error reply");
                s->have_cid = 0;
            } else {
                error_("unexpected action");
            }
        } else if (action == UDP_ANNOUNCE) {
            if (n < 20 || (n - 20) % 6 || (uint32_t)n > o->limit) {
                error_("bad announce reply size");
            } else {
                st.announces++;
                st.responses++;
                record(rx, p->sent, p->due);
            }
        } else if ((uint32_t)n != o->limit) {
            error_("bad scrape reply size");
        } else {
            st.scrapes++;
            st.responses++;
            record(rx, p->sent, p->due);
        }
    }
}

static void udp_expire(int64_t now, int64_t timeout) {
    while (oldest_txid != next_txid) {
        Pending *p = slot(oldest_txid);
        if (p->live && p->txid == oldest_txid) {
            if (now - p->sent < timeout)
                return;
            p->live = 0;
            st.timeouts++;
            UdpSock *s = &usocks[p->sock];
            udp_out -= p->op != UINT32_MAX;
            if (p->op == UINT32_MAX && s->connecting && s->connect_txid == p->txid) {
                s->connecting = 0;
                st.skipped += s->wait_n;
                udp_out -= s->wait_n;
                s->wait_n = 0;
            }
        }
        oldest_txid++;
    }
}

static void udp_open(void) {
    usocks = calloc(n_sources, sizeof *usocks);
    pending = calloc(PENDING, sizeof *pending);
    if (!usocks || !pending) {
        perror("calloc");
        exit(2);
    }
    oldest_txid = next_txid;
    for (uint32_t i = 0; i < n_sources; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        int on = 1, rcv = 1 << 20;
        struct sockaddr_in local = addr_of(sources[i], 0);
        struct sockaddr_in remote = addr_of(htonl(INADDR_LOOPBACK), port);
        if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof local) < 0 ||
            connect(fd, (struct sockaddr *)&remote, sizeof remote) < 0) {
            perror("udp socket");
            exit(2);
        }
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
        nonblock(fd);
        usocks[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

/* -- HTTP ---------------------------------------------------------------------------- */

#define HTTP_BUF 65536
#define MAX_CONNS 8192
#define QUEUE 65536

enum { C_FREE = 0, C_CONNECTING, C_BUSY, C_IDLE, C_DRAIN };

typedef struct {
    int fd;
    int state;
    uint16_t source;
    uint32_t op;
    uint32_t served;
    int64_t sent, due, since;
    size_t have;
    int next_idle; /* the source's idle list */
    uint8_t *buf;
} Conn;

static Conn conns[MAX_CONNS];
static int *idle_head; /* per source */
static int in_flight, max_in_flight, reuse = 1, idle_closes;
static uint32_t q_op[QUEUE];
static int64_t q_due[QUEUE];
static unsigned q_head, q_n;

static int free_list[MAX_CONNS], n_free = -1;

static int free_conn(void) {
    if (n_free < 0) {
        for (n_free = 0; n_free < MAX_CONNS; n_free++)
            free_list[n_free] = MAX_CONNS - 1 - n_free;
    }
    return n_free ? free_list[--n_free] : -1;
}

static void conn_close(int ci) {
    Conn *c = &conns[ci];
    if (c->state == C_FREE)
        return;
    if (c->state == C_IDLE) {
        int *at = &idle_head[c->source];
        while (*at >= 0 && *at != ci)
            at = &conns[*at].next_idle;
        if (*at == ci)
            *at = c->next_idle;
    }
    if (c->state == C_BUSY || c->state == C_CONNECTING)
        in_flight--;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = C_FREE;
    free_list[n_free++] = ci;
}

static void http_write(int ci) {
    Conn *c = &conns[ci];
    const Op *o = &ops[c->op];
    c->sent = now_ns();
    ssize_t n = send(c->fd, o->body, o->len, MSG_NOSIGNAL);
    if (n != (ssize_t)o->len) {
        error_("send failed");
        conn_close(ci);
    }
}

static int http_open(uint32_t op, int64_t due) {
    int ci = free_conn();
    if (ci < 0) {
        error_("out of connection slots");
        return -1;
    }
    Conn *c = &conns[ci];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int on = 1;
    int flags = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
    struct sockaddr_in local = addr_of(sources[ops[op].source], 0);
    struct sockaddr_in remote = addr_of(htonl(INADDR_LOOPBACK), port);
    if (fd < 0) {
        free_list[n_free++] = ci;
        error_("socket failed");
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    nonblock(fd);
    if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) {
        close(fd);
        free_list[n_free++] = ci;
        error_("bind failed");
        return -1;
    }
    c->fd = fd;
    c->source = ops[op].source;
    c->op = op;
    c->due = due;
    c->served = 0;
    c->have = 0;
    if (!c->buf && !(c->buf = malloc(HTTP_BUF))) {
        perror("malloc");
        exit(2);
    }
    c->since = now_ns();
    int r = connect(fd, (struct sockaddr *)&remote, sizeof remote);
    if (r < 0 && errno != EINPROGRESS) {
        close(fd);
        free_list[n_free++] = ci;
        error_("connect failed");
        return -1;
    }
    in_flight++;
    /* On loopback the kernel has usually finished the handshake inside connect(): then the
       request goes out at once, without waiting for the loop to see the socket writable. */
    struct tcp_info info;
    socklen_t info_len = sizeof info;
    int up = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &info_len) == 0 &&
             info.tcpi_state == TCP_ESTABLISHED;
    c->state = up ? C_BUSY : C_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (up ? 0 : EPOLLOUT),
                             .data.u64 = ci};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    if (up)
        http_write(ci);
    return 0;
}

static void http_start(uint32_t op, int64_t due) {
    uint16_t src = ops[op].source;
    if (reuse && mode == MODE_KEEPALIVE && idle_head[src] >= 0) {
        int ci = idle_head[src];
        Conn *c = &conns[ci];
        idle_head[src] = c->next_idle;
        c->state = C_BUSY;
        c->op = op;
        c->due = due;
        c->have = 0;
        c->since = now_ns();
        in_flight++;
        st.sent++;
        if (recording && due >= record_from)
            push(&lag, c->since - due);
        http_write(ci);
        return;
    }
    if (recording && due >= record_from)
        push(&lag, now_ns() - due);
    if (http_open(op, due) == 0)
        st.sent++;
}

static void http_issue(uint32_t op, int64_t due) {
    if (in_flight >= max_in_flight || q_n) {
        if (q_n == QUEUE) {
            st.skipped++;
            return;
        }
        unsigned at = (q_head + q_n++) % QUEUE;
        q_op[at] = op;
        q_due[at] = due;
        return;
    }
    http_start(op, due);
}

static void http_dequeue(void) {
    while (q_n && in_flight < max_in_flight) {
        uint32_t op = q_op[q_head];
        int64_t due = q_due[q_head];
        q_head = (q_head + 1) % QUEUE;
        q_n--;
        http_start(op, due);
    }
}

static const char *check_body(int kind, const uint8_t *b, size_t n) {
    if (n < 2 || b[0] != 'd' || b[n - 1] != 'e')
        return "body is not a dictionary";
    if (memmem(b, n, "14:failure reason", 17))
        return "failure reason";
    if (kind == KIND_ANNOUNCE ? !memmem(b, n, "8:interval", 10) : !memmem(b, n, "5:files", 7))
        return "reply without its keys";
    return NULL;
}

/* The reply in c->buf, once complete: its length (head and body), 0 if not yet, -1 bad. */
static long reply_length(Conn *c, int eof, long *body_at) {
    uint8_t *b = c->buf;
    uint8_t *end = memmem(b, c->have, "\r\n\r\n", 4);
    if (!end)
        return eof ? -1 : 0;
    size_t head = (size_t)(end - b) + 4;
    *body_at = (long)head;
    for (size_t i = 0; i + 17 < head; i++) {
        if (b[i] == '\r' && strncasecmp((char *)b + i, "\r\ncontent-length:", 17) == 0) {
            long len = strtol((char *)b + i + 17, NULL, 10);
            if (len < 0)
                return -1;
            return c->have >= head + (size_t)len ? (long)(head + len) : (eof ? -1 : 0);
        }
    }
    return eof ? (long)c->have : 0; /* the body runs to the close */
}

static void http_read(int ci, uint32_t events) {
    Conn *c = &conns[ci];
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            error_("connect refused");
            conn_close(ci);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        c->state = C_BUSY;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = ci};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        http_write(ci);
        return;
    }
    for (;;) {
        char ctrl[256];
        struct iovec iov = {c->buf + c->have, HTTP_BUF - c->have};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl;
        msg.msg_controllen = sizeof ctrl;
        if (c->have == HTTP_BUF) {
            error_("reply too long");
            conn_close(ci);
            return;
        }
        ssize_t n = recvmsg(c->fd, &msg, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        int eof = n <= 0;
        if (c->state == C_DRAIN || c->state == C_IDLE) {
            if (eof) {
                if (c->state == C_IDLE && mode == MODE_KEEPALIVE && ++idle_closes >= 3)
                    reuse = 0;
                conn_close(ci);
            } else {
                error_("bytes with no request outstanding");
                conn_close(ci);
            }
            return;
        }
        if (eof && c->have == 0 && c->served > 0) {
            /* A reused connection closed under the request: send it again, on a new one. */
            uint32_t op = c->op;
            int64_t due = c->due;
            st.retries++;
            if (++idle_closes >= 3)
                reuse = 0;
            conn_close(ci);
            http_open(op, due);
            return;
        }
        int64_t rx = eof ? now_ns() : stamp_or_now(&msg);
        if (!eof)
            c->have += (size_t)n;
        long body_at = 0;
        long len = reply_length(c, eof, &body_at);
        if (len == 0)
            continue;
        if (len < 0) {
            error_(eof ? "connection closed with a request outstanding" : "bad reply");
            conn_close(ci);
            return;
        }
        const Op *o = &ops[c->op];
        const char *why = NULL;
        if (c->have < 12 || memcmp(c->buf, "HTTP/1.", 7) || memcmp(c->buf + 9, "200", 3))
            why = "status is not 200";
        else
            why = check_body(o->kind, c->buf + body_at, (size_t)(len - body_at));
        if (why) {
            error_(why);
        } else {
            st.responses++;
            if (o->kind == KIND_ANNOUNCE)
                st.announces++;
            else
                st.scrapes++;
            record(rx, c->sent, c->due);
        }
        c->served++;
        in_flight--;
        int server_closes = eof || memmem(c->buf, (size_t)body_at, "onnection: close", 16) ||
                            memmem(c->buf, (size_t)body_at, "onnection: Close", 16);
        c->have = 0;
        if (eof) {
            c->state = C_DRAIN; /* already counted out of flight */
            conn_close(ci);
        } else if (mode == MODE_KEEPALIVE && reuse && !server_closes) {
            c->state = C_IDLE;
            c->next_idle = idle_head[c->source];
            idle_head[c->source] = ci;
        } else {
            c->state = C_DRAIN; /* wait for the server's close */
            c->since = now_ns();
        }
        http_dequeue();
        return;
    }
}

static void http_expire(int64_t now, int64_t timeout) {
    for (int i = 0; i < MAX_CONNS; i++) {
        Conn *c = &conns[i];
        if ((c->state == C_BUSY || c->state == C_CONNECTING) && now - c->since > timeout) {
            st.timeouts++;
            conn_close(i);
        } else if (c->state == C_DRAIN && now - c->since > timeout) {
            conn_close(i);
        }
    }
    http_dequeue();
}

/* -- main loop ------------------------------------------------------------------------ */

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void quantiles(const char *name, Samples *s, int last) {
    qsort(s->v, s->n, sizeof(int64_t), cmp64);
    double q[] = {0.5, 0.9, 0.99, 0.999, 1.0};
    const char *k[] = {"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"};
    printf("\"%s\": {\"n\": %zu", name, s->n);
    for (int i = 0; i < 5; i++) {
        if (!s->n) {
            printf(", \"%s\": null", k[i]);
            continue;
        }
        size_t at = (size_t)(q[i] * (double)(s->n - 1) + 0.5);
        printf(", \"%s\": %.4f", k[i], (double)s->v[at] / 1e6);
    }
    printf("}%s", last ? "" : ", ");
}

static uint8_t *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *size = (size_t)n;
    return b;
}

static uint32_t rd32(const uint8_t **p, const uint8_t *end) {
    if (end - *p < 4) {
        fprintf(stderr, "truncated input\n");
        exit(2);
    }
    uint32_t v = (uint32_t)(*p)[0] | (uint32_t)(*p)[1] << 8 | (uint32_t)(*p)[2] << 16 |
                 (uint32_t)(*p)[3] << 24;
    *p += 4;
    return v;
}

static void load_ops(const char *path) {
    size_t size;
    const uint8_t *p = slurp(path, &size), *end = p + size;
    if (size < 4 || memcmp(p, "SLG1", 4)) {
        fprintf(stderr, "%s: not a latgen input\n", path);
        exit(2);
    }
    p += 4;
    n_sources = rd32(&p, end);
    if (n_sources == 0 || n_sources > 65535) {
        fprintf(stderr, "bad source count\n");
        exit(2);
    }
    sources = calloc(n_sources, sizeof *sources);
    for (uint32_t i = 0; i < n_sources; i++) {
        if (end - p < 4) {
            fprintf(stderr, "truncated input\n");
            exit(2);
        }
        memcpy(&sources[i], p, 4);
        p += 4;
        if (((const uint8_t *)&sources[i])[0] != 127) {
            fprintf(stderr, "source %u is not a loopback address\n", i);
            exit(2);
        }
    }
    n_ops = rd32(&p, end);
    ops = calloc(n_ops ? n_ops : 1, sizeof *ops);
    for (uint32_t i = 0; i < n_ops; i++) {
        uint32_t head = rd32(&p, end);
        ops[i].source = head & 0xffff;
        ops[i].connect = (head >> 16) & 0xff;
        ops[i].kind = head >> 24;
        ops[i].limit = rd32(&p, end);
        ops[i].len = rd32(&p, end);
        if (ops[i].source >= n_sources || (size_t)(end - p) < ops[i].len) {
            fprintf(stderr, "bad operation %u\n", i);
            exit(2);
        }
        ops[i].body = p;
        p += ops[i].len;
    }
}

/* Operations issued, and how many of them were due in the warm-up (not offered). */
static uint64_t issued, warm_issued;

/* Issue the next operation of the cycle, due at `due`. */
static void issue_next(int64_t due) {
    uint32_t op = (uint32_t)(issued % n_ops);
    issued++;
    if (due < record_from)
        warm_issued = issued;
    if (mode == MODE_UDP)
        udp_issue(op, due);
    else
        http_issue(op, due);
}

/* Read the replies the sockets hold now (no waiting). */
static void read_replies(struct epoll_event *evs) {
    int n = epoll_wait(epfd, evs, 256, 0);
    for (int i = 0; i < n; i++) {
        if (mode == MODE_UDP)
            udp_read((uint16_t)evs[i].data.u64);
        else
            http_read((int)evs[i].data.u64, evs[i].events);
    }
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr,
                "usage: latgen udp|http-keepalive|http-close PORT RATE WARMUP_S DURATION_S "
                "TIMEOUT_S CONNECTIONS INPUT\n(RATE 0: closed loop, CONNECTIONS in flight)\n");
        return 2;
    }
    mode = !strcmp(argv[1], "udp")              ? MODE_UDP
           : !strcmp(argv[1], "http-keepalive") ? MODE_KEEPALIVE
           : !strcmp(argv[1], "http-close")     ? MODE_CLOSE
                                                : -1;
    port = (uint16_t)atoi(argv[2]);
    double rate = atof(argv[3]), warmup = atof(argv[4]), duration = atof(argv[5]);
    double timeout_s = atof(argv[6]);
    max_in_flight = atoi(argv[7]);
    if (mode < 0 || !port || rate < 0 || warmup < 0 || duration <= 0 || timeout_s <= 0 ||
        max_in_flight <= 0 || max_in_flight > MAX_CONNS / 2) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    load_ops(argv[8]);
    if (!n_ops) {
        fprintf(stderr, "no operations\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* One socket that asks for receive stamps for the whole run: the kernel stamps packets
       while any socket wants it and switches stamping off (a code patch on every CPU, the
       tracker's too) when the last one closes, which short-lived HTTP connections would
       otherwise do thousands of times a second. */
    int keep_stamps = socket(AF_INET, SOCK_DGRAM, 0), on = 1;
    if (keep_stamps < 0 ||
        setsockopt(keep_stamps, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0) {
        perror("SO_TIMESTAMPNS");
        return 2;
    }
    if (await_stamps(keep_stamps) < 0)
        return 2;
    epfd = epoll_create1(0);
    int64_t timeout = (int64_t)(timeout_s * 1e9);
    if (mode == MODE_UDP) {
        udp_open();
        /* Every socket gets its connection id before the schedule starts. */
        for (uint32_t i = 0; i < n_sources; i++)
            udp_send((uint16_t)i, UINT32_MAX, now_ns());
    } else {
        idle_head = malloc(n_sources * sizeof *idle_head);
        for (uint32_t i = 0; i < n_sources; i++)
            idle_head[i] = -1;
    }
    struct epoll_event evs[256];
    if (mode == MODE_UDP) {
        int64_t until = now_ns() + timeout;
        uint32_t connected = 0;
        while (now_ns() < until) {
            int n = epoll_wait(epfd, evs, 256, 1);
            for (int i = 0; i < n; i++)
                udp_read((uint16_t)evs[i].data.u64);
            connected = 0;
            for (uint32_t i = 0; i < n_sources; i++)
                connected += usocks[i].have_cid;
            if (connected == n_sources)
                break;
        }
        st.sent = st.connects = 0;
    }
    recording = 1;
    int closed = rate == 0;
    double period = closed ? 0 : 1e9 / rate;
    /* The warm-up runs the same schedule (HTTP connections get opened, caches warm) but
       only requests due after it are recorded and counted as offered. */
    int64_t start = now_ns(), stop = start + (int64_t)((warmup + duration) * 1e9);
    record_from = start + (int64_t)(warmup * 1e9);
    int64_t last_expire = start;
    double cpu0 = -1;
    int cpu_read = 0;
    for (;;) {
        int64_t now = now_ns();
        if (now >= stop)
            break;
        if (!cpu_read && now >= record_from) {
            cpu0 = pids_cpu();
            cpu_read = 1;
        }
        /* Closed loop: top the window up (at most one window's worth a turn, so a run of
           failed sends cannot keep the loop from reading). */
        for (int room = max_in_flight; closed && room > 0; room--) {
            uint64_t out = mode == MODE_UDP ? udp_out : (uint64_t)in_flight + q_n;
            if (out >= (uint64_t)max_in_flight)
                break;
            issue_next(now);
        }
        while (!closed) {
            int64_t due = start + (int64_t)((double)issued * period);
            if (due > now || due >= stop)
                break;
            issue_next(due);
        }
        read_replies(evs);
        if (now - last_expire > 20000000) {
            last_expire = now;
            if (mode == MODE_UDP)
                udp_expire(now, timeout);
            else
                http_expire(now, timeout);
        }
    }
    double elapsed = (double)(now_ns() - record_from) / 1e9;

    /* Drain: replies to requests sent before the end still count. */
    int64_t drain_until = now_ns() + timeout;
    for (;;) {
        int64_t now = now_ns();
        int busy = mode == MODE_UDP ? oldest_txid != next_txid : in_flight > 0 || q_n > 0;
        if (!busy || now >= drain_until)
            break;
        read_replies(evs);
        if (mode == MODE_UDP)
            udp_expire(now, timeout);
        else
            http_expire(now, timeout);
    }
    double cpu1 = pids_cpu();
    const char *trace = getenv("LATGEN_TRACE");
    if (trace && *trace) {
        /* Before sorting: per reply, its arrival (CLOCK_REALTIME ns) and service latency. */
        FILE *f = fopen(trace, "wb");
        for (size_t i = 0; f && i < arrival.n; i++) {
            int64_t pair[2] = {arrival.v[i], service.v[i]};
            fwrite(pair, sizeof pair, 1, f);
        }
        if (f)
            fclose(f);
    }
    if (mode != MODE_UDP)
        st.skipped += q_n;
    printf("{\"offered\": %llu, \"sent\": %llu, \"responses\": %llu, \"all_responses\": %llu, "
           "\"announces\": %llu, "
           "\"scrapes\": %llu, \"connects\": %llu, \"errors\": %llu, \"timeouts\": %llu, "
           "\"retries\": %llu, \"skipped\": %llu, \"late\": %llu, \"no_stamp\": %llu, "
           "\"elapsed_s\": %.4f, \"connects_measured\": %llu, ",
           (unsigned long long)(issued - warm_issued), (unsigned long long)st.sent,
           (unsigned long long)measured, (unsigned long long)st.responses,
           (unsigned long long)st.announces,
           (unsigned long long)st.scrapes, (unsigned long long)st.connects,
           (unsigned long long)st.errors, (unsigned long long)st.timeouts,
           (unsigned long long)st.retries, (unsigned long long)st.skipped,
           (unsigned long long)st.late, (unsigned long long)st.no_stamp, elapsed,
           (unsigned long long)measured_connects);
    if (cpu0 >= 0 && cpu1 >= 0)
        printf("\"cpu_s\": %.3f, ", cpu1 - cpu0);
    else
        printf("\"cpu_s\": null, ");
    printf("\"error_reasons\": {");
    for (int i = 0; i < N_REASONS && reasons[i]; i++)
        printf("%s\"%s\": %llu", i ? ", " : "", reasons[i],
               (unsigned long long)reason_counts[i]);
    printf("}, ");
    quantiles("service", &service, 0);
    quantiles("schedule", &schedule, 0);
    quantiles("send_lag", &lag, 1);
    printf("}\n");
    return 0;
}
