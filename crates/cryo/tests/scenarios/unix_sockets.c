/*
 * unix_sockets: socketpair(2) ends of every type, split between the parent and a forked child,
 * shared by both, and kept in one process, each holding unread data across the checkpoint.
 *
 *   st  SOCK_STREAM     parent st[0], child st[1]; 1500 bytes queued for the child, 70000
 *                       for the parent; st[0] is owned by the parent for SIGIO (F_SETOWN)
 *   sp  SOCK_SEQPACKET  parent sp[0], child sp[1]; packets of 1, 333 and 4096 bytes for the
 *                       child, 17 and 9000 for the parent; sp[0] has SO_SNDBUF changed
 *   dg  SOCK_DGRAM      parent dg[0] (O_NONBLOCK), child dg[1] (SO_SNDBUF changed); packets
 *                       of 5, 0 and 60000 bytes for the child, 12 for the parent
 *   sh  SOCK_SEQPACKET  sh[0] held by the parent (twice: dup'd at SH_DUP) and the child,
 *                       sh[1] by the parent; one packet queued for sh[1]
 *   lo  SOCK_STREAM     both ends in the parent; "hello" and "world" queued, lo[0] shut for
 *                       writing, lo[1] with SO_PASSCRED, lo[0] moved to LO_FD close-on-exec
 *
 * After SIGTERM the parent reads and compares everything queued for it (contents, packet
 * boundaries, nothing more), checks the types, flags, options, owner and shutdown state
 * (read 0 / EPIPE), that the peek offset is unset, then lets the child check its side; the
 * child sends a new packet on each of its sockets and the parent answers on each, so every
 * connection is shown to work both ways. The child's verdict comes back through a pipe.
 */
#include "scenario.h"
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define LO_FD 100
#define SH_DUP 101
#define ST_TO_CHILD 1500
#define ST_TO_PARENT 70000
#define SP_SNDBUF 30000
#define DG_SNDBUF 50000

static const size_t sp_to_child[] = { 1, 333, 4096 };
static const size_t sp_to_parent[] = { 17, 9000 };
static const size_t dg_to_child[] = { 5, 0, 60000 };
static const size_t dg_to_parent[] = { 12 };
#define N(a) (sizeof(a) / sizeof((a)[0]))

static int st[2], sp[2], dg[2], sh[2], lo[2];
static int verdict[2]; /* child -> parent: the reason of a failure */
static int go[2];      /* parent -> child: check now */
static int readyp[2];  /* child -> parent: my data is queued */

/* Byte `i` of message `tag`. */
static unsigned char pat(int tag, size_t i)
{
	return (unsigned char)(tag * 31 + i * 7 + (i >> 8));
}

static void fill(unsigned char *b, int tag, size_t len)
{
	for (size_t i = 0; i < len; i++)
		b[i] = pat(tag, i);
}

static int is_child;

/* A failed check: in the child, tell the parent why and exit; in the parent, FAIL. */
__attribute__((noreturn, format(printf, 1, 2))) static void bad(const char *fmt, ...)
{
	char buf[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (!is_child)
		fail("%s", buf);
	if (write(verdict[1], buf, strlen(buf)) < 0)
		_exit(3);
	_exit(1);
}

#define EXPECT(cond, ...)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			bad(__VA_ARGS__);                                                          \
	} while (0)

static void send_exact(int fd, int tag, size_t len, const char *what)
{
	unsigned char *b = malloc(len + 1);
	EXPECT(b, "malloc");
	fill(b, tag, len);
	size_t off = 0;
	do {
		ssize_t n = send(fd, b + off, len - off, MSG_NOSIGNAL);
		EXPECT(n >= 0, "send %s: %s", what, strerror(errno));
		off += n;
	} while (off < len);
	free(b);
}

/* Wait up to 5 s for `fd` to be readable. */
static void wait_readable(int fd, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	for (;;) {
		int n = poll(&p, 1, 5000);
		if (n < 0 && errno == EINTR)
			continue;
		EXPECT(n == 1, "%s: nothing to read within 5 s", what);
		return;
	}
}

/* Read exactly `len` bytes of stream data with pattern `tag`. */
static void expect_stream(int fd, int tag, size_t len, const char *what)
{
	unsigned char *b = malloc(len + 1);
	EXPECT(b, "malloc");
	size_t off = 0;
	while (off < len) {
		wait_readable(fd, what);
		ssize_t n = recv(fd, b + off, len - off, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		EXPECT(n > 0, "%s: read %zd after %zu of %zu bytes: %s", what, n, off, len,
		       n < 0 ? strerror(errno) : "end of stream");
		off += n;
	}
	for (size_t i = 0; i < len; i++)
		EXPECT(b[i] == pat(tag, i), "%s: byte %zu is %#x, not %#x", what, i, b[i], pat(tag, i));
	free(b);
}

/* Read one packet, which must be `len` bytes with pattern `tag`. */
static void expect_packet(int fd, int tag, size_t len, const char *what)
{
	unsigned char *b = malloc(len + 64);
	EXPECT(b, "malloc");
	wait_readable(fd, what);
	ssize_t n = recv(fd, b, len + 64, MSG_DONTWAIT | MSG_TRUNC);
	EXPECT(n >= 0, "%s: recv: %s", what, strerror(errno));
	EXPECT((size_t)n == len, "%s: a packet of %zd bytes, not %zu", what, n, len);
	for (size_t i = 0; i < len; i++)
		EXPECT(b[i] == pat(tag, i), "%s: byte %zu is %#x, not %#x", what, i, b[i], pat(tag, i));
	free(b);
}

/* Nothing more is queued (and the socket is not at its end). */
static void expect_empty(int fd, const char *what)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
	EXPECT(n < 0 && errno == EAGAIN, "%s: more in the queue than was put there (%zd, %s)", what, n,
	       n < 0 ? strerror(errno) : "data");
}

static int sockopt(int fd, int opt, const char *what)
{
	int v = 0;
	socklen_t len = sizeof(v);
	EXPECT(getsockopt(fd, SOL_SOCKET, opt, &v, &len) == 0, "%s: getsockopt %d: %s", what, opt,
	       strerror(errno));
	return v;
}

static void expect_type(int fd, int type, const char *what)
{
	int t = sockopt(fd, SO_TYPE, what);
	EXPECT(t == type, "%s: type %d, not %d", what, t, type);
	EXPECT(sockopt(fd, SO_PEEK_OFF, what) == -1, "%s: the peek offset is set", what);
}

/* Before the checkpoint: what each process had, to compare after. */
static int sp_sndbuf_before, dg_sndbuf_before;

static int child_main(void)
{
	is_child = 1;
	close(st[0]);
	close(sp[0]);
	close(dg[0]);
	close(sh[1]);
	close(lo[0]);
	close(lo[1]);
	close(SH_DUP);
	close(verdict[0]);
	close(go[1]);
	close(readyp[0]);
	send_exact(st[1], 2, ST_TO_PARENT, "child st");
	for (size_t i = 0; i < N(sp_to_parent); i++)
		send_exact(sp[1], 20 + i, sp_to_parent[i], "child sp");
	EXPECT(setsockopt(dg[1], SOL_SOCKET, SO_SNDBUF, &(int){ DG_SNDBUF }, sizeof(int)) == 0,
	       "SO_SNDBUF: %s", strerror(errno));
	dg_sndbuf_before = sockopt(dg[1], SO_SNDBUF, "child dg");
	for (size_t i = 0; i < N(dg_to_parent); i++)
		send_exact(dg[1], 40 + i, dg_to_parent[i], "child dg");
	EXPECT(write(readyp[1], "r", 1) == 1, "tell ready: %s", strerror(errno));
	char c;
	while (read(go[0], &c, 1) != 1)
		EXPECT(errno == EINTR, "wait for go: %s", strerror(errno));

	expect_type(st[1], SOCK_STREAM, "child st");
	expect_type(sp[1], SOCK_SEQPACKET, "child sp");
	expect_type(dg[1], SOCK_DGRAM, "child dg");
	expect_type(sh[0], SOCK_SEQPACKET, "child sh");
	expect_stream(st[1], 1, ST_TO_CHILD, "child st");
	expect_empty(st[1], "child st");
	for (size_t i = 0; i < N(sp_to_child); i++)
		expect_packet(sp[1], 10 + i, sp_to_child[i], "child sp");
	expect_empty(sp[1], "child sp");
	for (size_t i = 0; i < N(dg_to_child); i++)
		expect_packet(dg[1], 30 + i, dg_to_child[i], "child dg");
	expect_empty(dg[1], "child dg");
	int b = sockopt(dg[1], SO_SNDBUF, "child dg");
	EXPECT(b == dg_sndbuf_before, "child dg: SO_SNDBUF %d, was %d", b, dg_sndbuf_before);
	EXPECT(!(fcntl(dg[1], F_GETFL) & O_NONBLOCK), "child dg: O_NONBLOCK is set");
	EXPECT(fcntl(sh[0], F_GETFL) & O_NONBLOCK, "child sh: O_NONBLOCK is not set");

	/* New data both ways. */
	int mine[] = { st[1], sp[1], dg[1], sh[0] };
	const char *names[] = { "child st", "child sp", "child dg", "child sh" };
	for (int i = 0; i < 4; i++)
		send_exact(mine[i], 60 + i, 100 + i, names[i]);
	expect_stream(st[1], 70, 200, "child st answer");
	expect_packet(sp[1], 71, 201, "child sp answer");
	expect_packet(dg[1], 72, 202, "child dg answer");
	_exit(0);
}

int main(void)
{
	install_term_handler();
	signal(SIGPIPE, SIG_IGN);
	SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, st));
	SYS(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp));
	SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg));
	SYS(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sh));
	SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, lo));
	SYS(pipe(verdict));
	SYS(pipe(go));
	SYS(pipe(readyp));
	SYS(dup2(lo[0], LO_FD));
	close(lo[0]);
	lo[0] = LO_FD;
	SYS(fcntl(LO_FD, F_SETFD, FD_CLOEXEC));
	SYS(fcntl(sh[0], F_SETFL, O_NONBLOCK));
	SYS(dup2(sh[0], SH_DUP));
	pid_t child = SYS(fork());
	if (child == 0)
		return child_main();
	close(st[1]);
	close(sp[1]);
	close(dg[1]);
	close(verdict[1]);
	close(go[0]);
	close(readyp[1]);

	send_exact(st[0], 1, ST_TO_CHILD, "parent st");
	SYS(setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &(int){ SP_SNDBUF }, sizeof(int)));
	sp_sndbuf_before = sockopt(sp[0], SO_SNDBUF, "parent sp");
	for (size_t i = 0; i < N(sp_to_child); i++)
		send_exact(sp[0], 10 + i, sp_to_child[i], "parent sp");
	for (size_t i = 0; i < N(dg_to_child); i++)
		send_exact(dg[0], 30 + i, dg_to_child[i], "parent dg");
	SYS(fcntl(dg[0], F_SETFL, O_NONBLOCK));
	send_exact(SH_DUP, 50, 77, "parent sh");
	SYS(fcntl(st[0], F_SETOWN, getpid()));
	send_exact(lo[0], 80, 5, "parent lo[0]");
	send_exact(lo[1], 81, 5, "parent lo[1]");
	SYS(shutdown(lo[0], SHUT_WR));
	SYS(setsockopt(lo[1], SOL_SOCKET, SO_PASSCRED, &(int){ 1 }, sizeof(int)));
	char c;
	CHECK(read(readyp[0], &c, 1) == 1, "the child did not get ready: %s", strerror(errno));
	ready();
	wait_term();

	expect_type(st[0], SOCK_STREAM, "parent st");
	expect_type(sp[0], SOCK_SEQPACKET, "parent sp");
	expect_type(dg[0], SOCK_DGRAM, "parent dg");
	expect_type(sh[0], SOCK_SEQPACKET, "parent sh[0]");
	expect_type(SH_DUP, SOCK_SEQPACKET, "parent sh dup");
	expect_type(sh[1], SOCK_SEQPACKET, "parent sh[1]");
	expect_type(lo[0], SOCK_STREAM, "parent lo[0]");
	expect_type(lo[1], SOCK_STREAM, "parent lo[1]");

	expect_stream(st[0], 2, ST_TO_PARENT, "parent st");
	expect_empty(st[0], "parent st");
	for (size_t i = 0; i < N(sp_to_parent); i++)
		expect_packet(sp[0], 20 + i, sp_to_parent[i], "parent sp");
	expect_empty(sp[0], "parent sp");
	for (size_t i = 0; i < N(dg_to_parent); i++)
		expect_packet(dg[0], 40 + i, dg_to_parent[i], "parent dg");
	expect_empty(dg[0], "parent dg");
	expect_packet(sh[1], 50, 77, "parent sh[1]");
	expect_empty(sh[1], "parent sh[1]");

	/* Flags, options, owner. */
	CHECK(fcntl(dg[0], F_GETFL) & O_NONBLOCK, "parent dg: O_NONBLOCK is gone");
	CHECK(!(fcntl(st[0], F_GETFL) & O_NONBLOCK), "parent st: O_NONBLOCK is set");
	CHECK(fcntl(SH_DUP, F_GETFL) & O_NONBLOCK, "parent sh dup: O_NONBLOCK is gone");
	CHECK(fcntl(LO_FD, F_GETFD) == FD_CLOEXEC, "fd %d: FD_CLOEXEC is gone", LO_FD);
	CHECK(fcntl(st[0], F_GETFD) == 0, "parent st: FD_CLOEXEC is set");
	CHECK(fcntl(st[0], F_GETOWN) == getpid(), "parent st: owner %d, not %d",
	      fcntl(st[0], F_GETOWN), getpid());
	int b = sockopt(sp[0], SO_SNDBUF, "parent sp");
	CHECK(b == sp_sndbuf_before, "parent sp: SO_SNDBUF %d, was %d", b, sp_sndbuf_before);
	CHECK(sockopt(lo[1], SO_PASSCRED, "lo[1]") == 1, "lo[1]: SO_PASSCRED is off");
	CHECK(sockopt(lo[0], SO_PASSCRED, "lo[0]") == 0, "lo[0]: SO_PASSCRED is on");
	/* sh[0] and its dup are one file: a flag set through one shows through the other. */
	SYS(fcntl(sh[0], F_SETFL, 0));
	CHECK(!(fcntl(SH_DUP, F_GETFL) & O_NONBLOCK), "parent sh: the dup is another file");
	SYS(fcntl(sh[0], F_SETFL, O_NONBLOCK));

	/* The pair in one process, lo[0] shut for writing. */
	expect_stream(lo[1], 80, 5, "parent lo[1]");
	char x;
	ssize_t n = recv(lo[1], &x, 1, MSG_DONTWAIT);
	CHECK(n == 0, "lo[1]: after the data a read gives %zd (%s), not the end", n,
	      n < 0 ? strerror(errno) : "data");
	expect_stream(lo[0], 81, 5, "parent lo[0]");
	expect_empty(lo[0], "parent lo[0]");
	n = send(lo[0], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	CHECK(n < 0 && errno == EPIPE, "lo[0] is shut for writing, yet send gives %zd (%s)", n,
	      n < 0 ? strerror(errno) : "sent");
	send_exact(lo[1], 82, 3000, "parent lo[1] new");
	expect_stream(lo[0], 82, 3000, "parent lo[0] new");

	/* The child checks its side and sends on each of its sockets; answer. */
	CHECK(write(go[1], "g", 1) == 1, "tell the child: %s", strerror(errno));
	expect_stream(st[0], 60, 100, "parent st from the child");
	expect_packet(sp[0], 61, 101, "parent sp from the child");
	expect_packet(dg[0], 62, 102, "parent dg from the child");
	expect_packet(sh[1], 63, 103, "parent sh[1] from the child");
	send_exact(st[0], 70, 200, "parent st answer");
	send_exact(sp[0], 71, 201, "parent sp answer");
	send_exact(dg[0], 72, 202, "parent dg answer");

	int status;
	while (waitpid(child, &status, 0) != child)
		CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char why[400] = "";
		ssize_t r = read(verdict[0], why, sizeof(why) - 1);
		why[r > 0 ? r : 0] = 0;
		fail("child: status %#x: %s", status, why);
	}
	return pass();
}
