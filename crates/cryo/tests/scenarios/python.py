"""python: a CPython interpreter with a big heap and an open, growing log file.

Builds a deterministic dict of 1e6 entries and hashes it before READY; opens
CRYO_SCENARIO_TMP/python.log for appending and writes a numbered line every 10 ms until SIGTERM.
After SIGTERM: the dict hashes the same, the log holds exactly the lines 0..n-1 in order (no
gap, no duplicate, n = lines written by this process) and the file offset is at its end.
Status protocol as in scenario.h (CRYO_SCENARIO_STATUS, lines READY / PASS / FAIL reason).
"""
import hashlib
import os
import signal
import sys
import time

got_term = False


def on_term(signum, frame):
    global got_term
    got_term = True


def status(line):
    path = os.environ.get("CRYO_SCENARIO_STATUS")
    if path is None:
        print(line, flush=True)
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def fail(reason):
    status("FAIL " + reason)
    sys.exit(1)


def dict_hash(d):
    h = hashlib.sha256()
    h.update(repr(len(d)).encode())
    for k, v in d.items():
        h.update(b"%d:%s;" % (k, v.encode()))
    return h.hexdigest()


def main():
    signal.signal(signal.SIGTERM, on_term)
    d = {i: "v%08x" % ((i * 2654435761) & 0xFFFFFFFF) for i in range(1_000_000)}
    before = dict_hash(d)

    tmp = os.environ.get("CRYO_SCENARIO_TMP", "/tmp")
    log_path = os.path.join(tmp, "python.log")
    log = open(log_path, "a")
    n = 0
    status("READY")
    while not got_term:
        log.write("%d\n" % n)
        log.flush()
        n += 1
        time.sleep(0.01)

    after = dict_hash(d)
    if after != before:
        fail("dict hash %s, expected %s" % (after, before))
    with open(log_path) as f:
        lines = f.read().split("\n")
    if lines[-1] != "":
        fail("log does not end with a newline")
    lines = lines[:-1]
    for i, line in enumerate(lines):
        if line != str(i):
            fail("log line %d is %r" % (i, line))
    if len(lines) != n:
        fail("log has %d lines, this process wrote %d" % (len(lines), n))
    pos = log.tell()
    size = os.fstat(log.fileno()).st_size
    if pos != size:
        fail("log offset %d, file size %d" % (pos, size))
    status("PASS")


main()
