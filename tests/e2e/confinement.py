"""What a process did, read from `strace -ff -y` logs, against what a systemd unit would let it do.

systemd is not PID 1 on the test machine, so the units' sandbox cannot be switched on there. The
package test runs the units' command lines under strace instead, and checks every system call,
socket family, memory mapping and file write against the unit's settings: a call outside
`SystemCallFilter=` would kill the process under systemd, a write outside `ReadWritePaths=` fail
with EROFS. The allowed sets come from the installed systemd (`systemd-analyze syscall-filter`)."""

import glob
import os
import re
import subprocess

STRACE = ["strace", "-ff", "-qq", "-y", "-s", "4096", "-o"]

LINE = re.compile(r"^(\w+)\((.*)\)\s+=\s+(.*)$")

# System call: (dirfd index or None, path index or None for the fd itself) of each path it writes.
WRITES = {
    "open": [(None, 0)], "creat": [(None, 0)], "openat": [(0, 1)],
    "mkdir": [(None, 0)], "rmdir": [(None, 0)], "unlink": [(None, 0)], "mkdirat": [(0, 1)],
    "unlinkat": [(0, 1)], "chmod": [(None, 0)], "chown": [(None, 0)], "lchown": [(None, 0)],
    "fchmodat": [(0, 1)], "fchownat": [(0, 1)], "truncate": [(None, 0)], "mknod": [(None, 0)],
    "mknodat": [(0, 1)], "rename": [(None, 0), (None, 1)], "link": [(None, 1)],
    "renameat": [(0, 1), (2, 3)], "renameat2": [(0, 1), (2, 3)], "linkat": [(2, 3)],
    "symlink": [(None, 1)], "symlinkat": [(1, 2)], "utimensat": [(0, 1)],
    "fchmod": [(0, None)], "fchown": [(0, None)], "ftruncate": [(0, None)],
    "openat2": [(0, 1)], "fchmodat2": [(0, 1)], "utime": [(None, 0)], "utimes": [(None, 0)],
    "futimesat": [(0, 1)], "setxattr": [(None, 0)], "lsetxattr": [(None, 0)],
    "removexattr": [(None, 0)], "lremovexattr": [(None, 0)], "fsetxattr": [(0, None)],
    "fremovexattr": [(0, None)],
}
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_TMPFILE")


def group(name):
    """The system calls of a systemd syscall group, nested groups expanded."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], check=True,
                         capture_output=True, text=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= group(item) if item.startswith("@") else {item}
    return calls


def split_args(text):
    """The top-level arguments of a call as strace prints them."""
    args, depth, start, quoted, i = [], 0, 0, False, 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        elif c == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
        i += 1
    args.append(text[start:].strip())
    return args


def decorated(arg):
    """The path strace -y prints for a descriptor: `3</var/lib/x>` or `AT_FDCWD</>`."""
    m = re.search(r"<(.*)>$", arg)
    return m.group(1) if m else None


def string(arg):
    """A path argument as strace quotes it, or None for anything else (NULL, a number)."""
    if not arg.startswith('"'):
        return None
    out, i = [], 1
    while i < len(arg) and arg[i] != '"':
        if arg[i] == "\\":
            i += 1
        out.append(arg[i])
        i += 1
    return "".join(out)


class Trace:
    """Everything in the per-process logs `<prefix>.<pid>`."""

    def __init__(self, prefix):
        self.calls = []  # (name, args, result)
        for path in glob.glob(f"{prefix}.*"):
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    m = LINE.match(line.strip())
                    if m:
                        self.calls.append((m.group(1), m.group(2), m.group(3)))
        assert self.calls, f"no trace at {prefix}.*"

    def syscalls(self):
        return {name for name, _, _ in self.calls}

    def socket_families(self):
        return {split_args(args)[0] for name, args, _ in self.calls if name == "socket"}

    def write_and_execute_mappings(self):
        """Calls MemoryDenyWriteExecute= refuses: a mapping both writable and executable, or
        memory made executable after the fact."""
        bad = []
        for name, args, _ in self.calls:
            if name in ("mmap", "mmap2") and "PROT_WRITE" in args and "PROT_EXEC" in args:
                bad.append(f"{name}({args})")
            if name in ("mprotect", "pkey_mprotect") and "PROT_EXEC" in args:
                bad.append(f"{name}({args})")
        return bad

    def written_paths(self):
        """Every path a call tried to create, change or remove (failed attempts included)."""
        paths = set()
        for name, args, _ in self.calls:
            # bind() of a Unix socket creates its file (an abstract one, "@...", has none).
            if name == "bind":
                m = re.search(r'sun_path="([^"@][^"]*)"', args)
                if m:
                    paths.add(os.path.normpath(m.group(1)) if m.group(1).startswith("/") else f"?bind({args})")
                continue
            spec = WRITES.get(name)
            if not spec:
                continue
            parts = split_args(args)
            flags = {"open": 1, "openat": 2, "openat2": 2}.get(name)
            if flags is not None and not any(f in parts[flags] for f in WRITE_FLAGS):
                continue
            for dir_i, path_i in spec:
                if path_i is None or (path_i < len(parts) and parts[path_i] == "NULL"):
                    paths.add(decorated(parts[dir_i if dir_i is not None else 0]) or f"?{args}")
                    continue
                path = string(parts[path_i]) if path_i < len(parts) else None
                if path is None:
                    paths.add(f"?{name}({args})")
                elif path.startswith("/"):
                    paths.add(os.path.normpath(path))
                else:
                    base = decorated(parts[dir_i]) if dir_i is not None else None
                    paths.add(os.path.normpath(os.path.join(base, path)) if base else f"?{name}({args})")
        return paths


def outside(paths, allowed):
    """The paths under none of the allowed directories."""
    return sorted(p for p in paths
                  if not any(p == a or p.startswith(a.rstrip("/") + "/") for a in allowed))
