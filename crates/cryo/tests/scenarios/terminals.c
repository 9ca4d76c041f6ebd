/*
 * terminals: pseudo-terminals made by the tree, a session's controlling terminal with a
 * foreground group that is not its leader's, and /dev/tty.
 *
 *   R, the root (a session leader without a terminal), holds:
 *     pair A, master and slave (the slave at fd 11): settings changed (no echo, VINTR ^G,
 *       9600 baud, no IUTF8), window size 37x101 (5x7 pixels), packet mode on the master,
 *       exclusive mode on the slave; queued for the slave "line one\n", "eofline" ended by
 *       VEOF, "line two\n" and the partial line "partial"; for the master "output\n" (ONLCR
 *       makes it "output\r\n");
 *     pair B, a master only, locked (TIOCSPTLCK);
 *     pair D, master and slave in raw mode (cfmakeraw): queued for the slave 3000 bytes with
 *       every byte value in them (the control characters too), for the master 1500;
 *     pair C, a master only: the terminal of session L.
 *   L, R's child, made a session, opened C's slave as its controlling terminal and closed it
 *     again, and made the group of its child G the foreground group.
 *   G, L's child, in a group of its own, holds /dev/tty.
 *
 *   R also holds the character devices /dev/full, /dev/random, /dev/urandom, and where they
 *     open here, /dev/console and the virtual console /dev/tty5.
 *
 * After SIGTERM R checks A (same index, settings, window size on both sides, packet and
 * exclusive modes, a data packet "output\r\n" on the master, the slave's lines one read each,
 * the partial line complete once "\n" is typed), B (same index, locked: opening its slave
 * fails with EIO), D (both queues byte for byte) and C (session L, foreground group G); L checks its controlling terminal
 * (/proc tty_nr, /dev/tty opens, foreground group G); G checks its /dev/tty (device 5:0,
 * session L, foreground group its own), opens /dev/tty again and writes through it: R reads it
 * on C's master. Each device is the same device again, open as it was (/dev/full is full).
 */
#include "scenario.h"
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>

#define SLAVE_A 11

static int m_a, m_b, m_c, m_d, s_d;
static int idx_a, idx_b, idx_c, idx_d;
#define D_IN 3000
#define D_OUT 1500

/* The byte at `i` of what is queued in D, a given way. */
static unsigned char d_byte(int i, int way)
{
	return (unsigned char)(i * 7 + way * 13 + i / 256);
}

/* Read exactly len bytes of fd (within 2 s each) and compare them with d_byte(., way). */
static void expect_d(int fd, int len, int way, const char *what)
{
	unsigned char buf[4096];
	int got = 0;
	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		CHECK(poll(&p, 1, 2000) == 1, "%s: %d bytes of %d, then nothing", what, got, len);
		ssize_t n = read(fd, buf + got, sizeof(buf) - got);
		CHECK(n > 0, "%s: read: %s", what, n < 0 ? strerror(errno) : "end of file");
		got += n;
	}
	CHECK(got == len, "%s: %d bytes, want %d", what, got, len);
	for (int i = 0; i < len; i++)
		CHECK(buf[i] == d_byte(i, way), "%s: byte %d is %#x, want %#x", what, i, buf[i],
		      d_byte(i, way));
	struct pollfd p = { .fd = fd, .events = POLLIN };
	CHECK(poll(&p, 1, 100) == 0, "%s: more than %d bytes", what, len);
}
static struct termios set_a;
static const struct winsize win_a = { .ws_row = 37, .ws_col = 101, .ws_xpixel = 5, .ws_ypixel = 7 };

static int open_master(int *index)
{
	int m = SYS(posix_openpt(O_RDWR | O_NOCTTY));
	SYS(grantpt(m));
	SYS(unlockpt(m));
	SYS(ioctl(m, TIOCGPTN, index));
	return m;
}

static void slave_path(int index, char *buf, size_t len)
{
	snprintf(buf, len, "/dev/pts/%d", index);
}

/* The device number of /dev/pts/N as /proc/PID/stat gives tty_nr. */
static int tty_nr_of(int index)
{
	dev_t d = makedev(136 + index / 256, index % 256);
	return (int)((minor(d) & 0xff) | (major(d) << 8) | ((minor(d) & ~0xffu) << 12));
}

static int my_tty_nr(void)
{
	char buf[1024];
	CHECK(read_small_file("/proc/self/stat", buf, sizeof(buf)) > 0, "read /proc/self/stat");
	char *p = strrchr(buf, ')');
	int tty_nr = 0;
	CHECK(p && sscanf(p + 2, "%*c %*d %*d %*d %d", &tty_nr) == 1, "parse /proc/self/stat");
	return tty_nr;
}

/* Read up to len bytes within 2 s; -1 on timeout. */
static ssize_t read_within(int fd, char *buf, size_t len)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 2000) != 1)
		return -1;
	return read(fd, buf, len);
}

/* Answer on `to` with "" (all good) or a reason, then exit. */
static void answer(int to, const char *fmt, ...)
{
	char buf[200] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (write(to, buf, strlen(buf) + 1) < 0)
		_exit(3);
	_exit(buf[0] ? 1 : 0);
}

static void wait_go(int from)
{
	char x;
	while (read(from, &x, 1) != 1)
		if (errno != EINTR)
			_exit(3);
}

static int g_tty = -1;
static pid_t l_pid;

static void g_main(int from, int to)
{
	pid_t l = getppid();
	/* The group is made by both sides (whoever is first); L makes it the foreground. */
	setpgid(0, 0);
	g_tty = open("/dev/tty", O_RDWR);
	if (g_tty < 0 || write(to, "r", 1) != 1)
		_exit(3);
	wait_go(from);
	if (my_tty_nr() != tty_nr_of(idx_c))
		answer(to, "G: tty_nr %#x, not pts/%d's %#x", my_tty_nr(), idx_c, tty_nr_of(idx_c));
	struct stat st;
	if (fstat(g_tty, &st) || st.st_rdev != makedev(5, 0))
		answer(to, "G: its /dev/tty fd is not /dev/tty (%s)", strerror(errno));
	pid_t sid = 0;
	if (ioctl(g_tty, TIOCGSID, &sid) || sid != l)
		answer(to, "G: /dev/tty of session %d (%s), not %d", sid, strerror(errno), l);
	if (tcgetpgrp(g_tty) != getpgrp())
		answer(to, "G: foreground group %d, not its own %d", tcgetpgrp(g_tty), getpgrp());
	int again = open("/dev/tty", O_RDWR);
	if (again < 0)
		answer(to, "G: open /dev/tty again: %s", strerror(errno));
	if (write(g_tty, "from G\n", 7) != 7)
		answer(to, "G: write through /dev/tty: %s", strerror(errno));
	answer(to, "");
}

static void l_main(int from, int to)
{
	char path[64];
	if (setsid() < 0)
		_exit(3);
	slave_path(idx_c, path, sizeof(path));
	/* A session leader without a terminal acquires the first one it opens. */
	int s = open(path, O_RDWR);
	if (s < 0)
		_exit(4);
	int to_g, from_g;
	pid_t g = fork_with_pipes(g_main, &to_g, &from_g);
	setpgid(g, g);
	char x;
	if (read(from_g, &x, 1) != 1)
		_exit(5);
	if (tcsetpgrp(s, g))
		_exit(6);
	close(s);
	if (write(to, "r", 1) != 1)
		_exit(3);
	wait_go(from);
	if (write(to_g, "g", 1) != 1)
		answer(to, "L: tell G: %s", strerror(errno));
	char why[200] = "";
	for (size_t n = 0; n < sizeof(why);) {
		ssize_t r = read(from_g, why + n, sizeof(why) - n);
		if (r <= 0 || why[n + r - 1] == 0)
			break;
		n += r;
	}
	int st;
	waitpid(g, &st, 0);
	if (why[0])
		answer(to, "%s", why);
	if (my_tty_nr() != tty_nr_of(idx_c))
		answer(to, "L: tty_nr %#x, not pts/%d's %#x", my_tty_nr(), idx_c, tty_nr_of(idx_c));
	int t = open("/dev/tty", O_RDWR);
	if (t < 0)
		answer(to, "L: open /dev/tty: %s", strerror(errno));
	if (tcgetpgrp(t) != g)
		answer(to, "L: foreground group %d, not G's %d", tcgetpgrp(t), g);
	answer(to, "");
}

/* The character devices: path, device, open flags, fd (-1: not open here). */
static struct {
	const char *path;
	unsigned maj, min;
	int flags, fd;
} devs[] = {
	{ "/dev/full", 1, 7, O_RDWR, -1 },
	{ "/dev/random", 1, 8, O_RDONLY | O_NONBLOCK, -1 },
	{ "/dev/urandom", 1, 9, O_RDONLY, -1 },
	{ "/dev/console", 5, 1, O_WRONLY | O_NOCTTY, -1 },
	{ "/dev/tty5", 4, 5, O_RDONLY | O_NOCTTY, -1 },
};
#define NDEVS (sizeof(devs) / sizeof(devs[0]))

static void open_devices(void)
{
	for (size_t i = 0; i < NDEVS; i++) {
		devs[i].fd = open(devs[i].path, devs[i].flags);
		/* The memory devices are everywhere; the consoles only where there are some. */
		CHECK(devs[i].fd >= 0 || devs[i].maj != 1, "open %s: %s", devs[i].path,
		      strerror(errno));
		if (devs[i].fd < 0)
			status_line("INFO %s not checked: %s", devs[i].path, strerror(errno));
	}
}

static void check_devices(void)
{
	for (size_t i = 0; i < NDEVS; i++) {
		if (devs[i].fd < 0)
			continue;
		struct stat st;
		SYS(fstat(devs[i].fd, &st));
		CHECK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(devs[i].maj, devs[i].min),
		      "fd %d is not %s (%u:%u) but %u:%u", devs[i].fd, devs[i].path, devs[i].maj,
		      devs[i].min, major(st.st_rdev), minor(st.st_rdev));
		int fl = SYS(fcntl(devs[i].fd, F_GETFL));
		int want = devs[i].flags & (O_ACCMODE | O_NONBLOCK);
		CHECK((fl & (O_ACCMODE | O_NONBLOCK)) == want, "%s: flags %#x, want %#x",
		      devs[i].path, fl, want);
	}
	char buf[16];
	errno = 0;
	CHECK(write(devs[0].fd, "x", 1) < 0 && errno == ENOSPC, "/dev/full is not full (%s)",
	      strerror(errno));
	CHECK(read(devs[0].fd, buf, sizeof(buf)) == sizeof(buf) && !buf[0],
	      "/dev/full does not read zeros");
	CHECK(read(devs[2].fd, buf, sizeof(buf)) == sizeof(buf), "read /dev/urandom: %s",
	      strerror(errno));
	CHECK(read(devs[1].fd, buf, sizeof(buf)) > 0, "read /dev/random: %s", strerror(errno));
}

static void expect_read(int fd, const char *want, size_t len, const char *what)
{
	char buf[256];
	ssize_t n = read_within(fd, buf, sizeof(buf));
	CHECK(n == (ssize_t)len && !memcmp(buf, want, len), "%s: read %zd bytes \"%.*s\", want \"%s\"",
	      what, n, n > 0 ? (int)n : 0, buf, want);
}

int main(void)
{
	install_term_handler();
	char path[64];

	m_a = open_master(&idx_a);
	slave_path(idx_a, path, sizeof(path));
	int s = SYS(open(path, O_RDWR | O_NOCTTY));
	SYS(dup2(s, SLAVE_A));
	close(s);
	struct termios t;
	SYS(tcgetattr(SLAVE_A, &t));
	t.c_lflag &= ~(ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE);
	t.c_iflag &= ~IUTF8;
	t.c_cc[VINTR] = 0x07;
	cfsetispeed(&t, B9600);
	cfsetospeed(&t, B9600);
	SYS(tcsetattr(SLAVE_A, TCSANOW, &t));
	SYS(tcgetattr(SLAVE_A, &set_a));
	SYS(ioctl(SLAVE_A, TIOCSWINSZ, &win_a));
	SYS(ioctl(SLAVE_A, TIOCEXCL));
	int one = 1;
	SYS(ioctl(m_a, TIOCPKT, &one));
	const char in[] = "line one\neofline\004line two\npartial";
	CHECK(write(m_a, in, sizeof(in) - 1) == sizeof(in) - 1, "write the master: %s",
	      strerror(errno));
	CHECK(write(SLAVE_A, "output\n", 7) == 7, "write the slave: %s", strerror(errno));

	m_b = open_master(&idx_b);
	SYS(ioctl(m_b, TIOCSPTLCK, &one));

	m_d = open_master(&idx_d);
	slave_path(idx_d, path, sizeof(path));
	s_d = SYS(open(path, O_RDWR | O_NOCTTY));
	SYS(tcgetattr(s_d, &t));
	cfmakeraw(&t);
	SYS(tcsetattr(s_d, TCSANOW, &t));
	unsigned char d[D_IN];
	for (int i = 0; i < D_IN; i++)
		d[i] = d_byte(i, 0);
	CHECK(write(m_d, d, D_IN) == D_IN, "write D's master: %s", strerror(errno));
	for (int i = 0; i < D_OUT; i++)
		d[i] = d_byte(i, 1);
	CHECK(write(s_d, d, D_OUT) == D_OUT, "write D's slave: %s", strerror(errno));

	open_devices();
	m_c = open_master(&idx_c);
	int to_l, from_l;
	l_pid = fork_with_pipes(l_main, &to_l, &from_l);
	char x;
	CHECK(read(from_l, &x, 1) == 1, "L and G did not get ready");
	/* The kernel moves written data into the queues asynchronously. */
	sleep_ms(50);

	ready();
	wait_term();

	/* Pair A. */
	int n = -1;
	CHECK(!ioctl(m_a, TIOCGPTN, &n) && n == idx_a, "A: index %d, was %d", n, idx_a);
	struct termios now;
	SYS(tcgetattr(SLAVE_A, &now));
	CHECK(now.c_iflag == set_a.c_iflag && now.c_oflag == set_a.c_oflag &&
		      now.c_cflag == set_a.c_cflag && now.c_lflag == set_a.c_lflag &&
		      !memcmp(now.c_cc, set_a.c_cc, NCCS) && cfgetospeed(&now) == B9600,
	      "A: settings iflag %#x oflag %#x cflag %#x lflag %#x VINTR %#x, were %#x %#x %#x %#x %#x",
	      now.c_iflag, now.c_oflag, now.c_cflag, now.c_lflag, now.c_cc[VINTR], set_a.c_iflag,
	      set_a.c_oflag, set_a.c_cflag, set_a.c_lflag, set_a.c_cc[VINTR]);
	struct winsize w;
	for (int i = 0; i < 2; i++) {
		SYS(ioctl(i ? m_a : SLAVE_A, TIOCGWINSZ, &w));
		CHECK(!memcmp(&w, &win_a, sizeof(w)), "A: window %dx%d (%dx%d) on the %s",
		      w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel, i ? "master" : "slave");
	}
	int v = -1;
	CHECK(!ioctl(m_a, TIOCGPKT, &v) && v == 1, "A: packet mode %d", v);
	v = -1;
	CHECK(!ioctl(SLAVE_A, TIOCGEXCL, &v) && v == 1, "A: exclusive mode %d", v);
	expect_read(m_a, "\0output\r\n", 9, "A's master");
	expect_read(SLAVE_A, "line one\n", 9, "A's slave, line 1");
	expect_read(SLAVE_A, "eofline", 7, "A's slave, line 2");
	expect_read(SLAVE_A, "line two\n", 9, "A's slave, line 3");
	int fl = SYS(fcntl(SLAVE_A, F_GETFL));
	SYS(fcntl(SLAVE_A, F_SETFL, fl | O_NONBLOCK));
	char buf[256];
	ssize_t got = read(SLAVE_A, buf, sizeof(buf));
	CHECK(got < 0 && errno == EAGAIN, "A's slave: the partial line read as complete (%zd)", got);
	SYS(fcntl(SLAVE_A, F_SETFL, fl));
	CHECK(write(m_a, "\n", 1) == 1, "write the master: %s", strerror(errno));
	expect_read(SLAVE_A, "partial\n", 8, "A's slave, the partial line");

	/* Pair B. */
	n = -1;
	CHECK(!ioctl(m_b, TIOCGPTN, &n) && n == idx_b, "B: index %d, was %d", n, idx_b);
	v = -1;
	CHECK(!ioctl(m_b, TIOCGPTLCK, &v) && v == 1, "B: lock %d", v);
	slave_path(idx_b, path, sizeof(path));
	int sb = open(path, O_RDWR | O_NOCTTY);
	CHECK(sb < 0 && errno == EIO, "B: its locked slave %s opened (%s)", path,
	      sb < 0 ? strerror(errno) : "no error");

	/* Pair D. */
	expect_d(s_d, D_IN, 0, "D's slave");
	expect_d(m_d, D_OUT, 1, "D's master");

	/* Pair C and session L. */
	n = -1;
	CHECK(!ioctl(m_c, TIOCGPTN, &n) && n == idx_c, "C: index %d, was %d", n, idx_c);
	pid_t sid = 0, fg = 0;
	CHECK(!ioctl(m_c, TIOCGSID, &sid) && sid == l_pid, "C: terminal of session %d (%s), not %d",
	      sid, strerror(errno), l_pid);
	SYS(ioctl(m_c, TIOCGPGRP, &fg));
	CHECK(fg != l_pid && fg > 0, "C: foreground group %d, L's own or none", fg);
	CHECK(write(to_l, "g", 1) == 1, "tell L: %s", strerror(errno));
	char why[200] = "";
	got = read_within(from_l, why, sizeof(why) - 1);
	CHECK(got > 0, "no answer from L");
	why[got] = 0;
	CHECK(!why[0], "%s", why);
	int st;
	CHECK(waitpid(l_pid, &st, 0) == l_pid && WIFEXITED(st) && !WEXITSTATUS(st),
	      "L: status %#x", st);
	expect_read(m_c, "from G\r\n", 8, "C's master");
	check_devices();
	return pass();
}
