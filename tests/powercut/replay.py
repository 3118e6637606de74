"""replay.py: what a power cut may leave on disk, from a pclog.c log.

Given a snapshot of DATA taken before the run (snapshot()) and the log that
pclog.so wrote during it (read_log()), Model replays the log one record at a
time and keeps, for every file and folder, two states: the one the running
programs see, and the one that is durable. cuts() yields, at chosen points,
the durable state written out as a folder tree: what the machine may show
after a power cut just before record k.

The model of the file system is strict POSIX, the worst case it allows:
  - a file's bytes (and size) become durable only when fsync/fdatasync of
    that file returns; every write not yet covered by one is lost, whatever
    its order (no ext4 data=ordered help);
  - a name (create, link, rename, unlink, mkdir, rmdir) becomes durable only
    when fsync of the folder that holds it returns; a rename between two
    folders is durable in each folder when that folder is fsynced (so the
    worst case may lose the file if only the source folder was fsynced);
    while both halves are unsynced they survive or not together, as a
    rename is atomic on every journalling file system;
  - durability is per inode: a file fsynced under one name is durable under
    every name that is itself durable (hard links share it).
What it cannot see or does not model:
  - writes through mmap (SQLite's -shm; never durable, SQLite rebuilds it);
    writes glibc makes internally without its PLT (stdio), and syscalls made
    without libc's wrappers other than syscall(SYS_openat2);
  - metadata: mtime/atime (so the internal date kept in a message file's
    mtime is not checked), modes, owners, xattrs; a lost file is given mode
    0600 (folders 0700) and `mailroom serve` chowns the store at start;
  - which unsynced changes survive is not enumerated: write_durable() drops
    all of them (the worst case for lost data), or with rng keeps a random
    subset (each unsynced write, truncation and name change independently,
    in their order: a hole where an earlier extending write was lost, one of
    two renames, a name without its data); other subsets are not tried;
  - ordering inside one write, sector tearing, lying disks (a flush that
    does not reach the medium), errors reported by a later fsync;
  - a write by one process and an fsync of the same file by another that
    overlap in time are ordered by when each call returned.

Usage as a program: replay.py dump LOG   (prints the records, for debugging)
"""

import os
import struct
import sys

# see pclog.c: struct rec
REC = struct.Struct("<IHHHHIQQQQQqQII")
OPS = {1: "write", 2: "trunc", 3: "fsync", 4: "create", 5: "mkdir", 6: "link", 7: "rename",
       8: "unlink", 9: "rmdir", 10: "extend"}
RENAME_EXCHANGE = 2


class Rec:
    __slots__ = ("op", "pid", "seq", "ns", "ino", "dino1", "dino2", "off", "dlen", "flags",
                 "name1", "name2", "path", "data")

    def __repr__(self):
        s = f"#{self.seq} t={self.ns} pid={self.pid} {self.op} ino={self.ino}"
        if self.name1 is not None:
            s += f" {self.dino1}/{self.name1}"
        if self.name2 is not None:
            s += f" -> {self.dino2}/{self.name2}"
        if self.op in ("write", "trunc", "extend"):
            s += f" off={self.off} len={self.dlen}"
        if self.path:
            s += f" [{self.path}]"
        return s


def read_log(path):
    """The records of a log, in sequence order."""
    with open(path, "rb") as f:
        raw = f.read()
    out = []
    pos = 0
    while pos + REC.size <= len(raw):
        (ln, op, n1, n2, plen, pid, seq, ns, ino, dino1, dino2, off, dlen, flags,
         _pad) = REC.unpack_from(raw, pos)
        if ln < REC.size or pos + ln > len(raw):
            raise ValueError(f"{path}: broken record at byte {pos}")
        r = Rec()
        r.op, r.pid, r.seq, r.ns, r.ino = OPS.get(op, f"op{op}"), pid, seq, ns, ino
        r.dino1, r.dino2, r.off, r.dlen, r.flags = dino1, dino2, off, dlen, flags
        p = pos + REC.size
        r.name1 = raw[p:p + n1].decode("utf-8", "surrogateescape") if n1 else None
        p += n1
        r.name2 = raw[p:p + n2].decode("utf-8", "surrogateescape") if n2 else None
        p += n2
        r.path = raw[p:p + plen].decode("utf-8", "surrogateescape")
        p += plen
        r.data = raw[p:pos + ln] if r.op == "write" else b""
        out.append(r)
        pos += ln
    if pos != len(raw):
        raise ValueError(f"{path}: {len(raw) - pos} bytes of a broken record at the end")
    out.sort(key=lambda r: r.seq)
    return out


class Obj:
    """A file (kind "f") or folder ("d"): what programs see, what is durable."""
    __slots__ = ("kind", "data", "durable", "entries", "dentries", "mode", "pending")

    def __init__(self, kind, content=b"", entries=None, mode=None):
        self.kind = kind
        self.data = bytearray(content)
        self.durable = bytes(content)
        self.entries = dict(entries or {})
        self.dentries = dict(self.entries)
        self.mode = mode if mode is not None else (0o700 if kind == "d" else 0o600)
        # changes since the last fsync, in order: files ("w", off, bytes) /
        # ("t", size) / ("x", size); folders (name, Obj or None)
        self.pending = []


def snapshot(root):
    """The tree under root as it is now (quiescent): {"root": ino, "objs":
    {ino: (kind, mode, content, {name: ino})}}. Inode numbers tie it to the
    log, which names objects by inode."""
    objs = {}

    def walk(path):
        st = os.lstat(path)
        if st.st_ino in objs:
            return st.st_ino
        if os.path.isdir(path) and not os.path.islink(path):
            ents = {}
            objs[st.st_ino] = ("d", st.st_mode & 0o7777, b"", ents)
            for name in sorted(os.listdir(path)):
                ents[name] = walk(os.path.join(path, name))
        elif os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                objs[st.st_ino] = ("f", st.st_mode & 0o7777, f.read(), {})
        else:
            raise ValueError(f"{path}: neither a file nor a folder")
        return st.st_ino

    return {"root": walk(str(root)), "objs": objs}


class Model:
    def __init__(self, snap):
        self.cur = {}  # inode number -> Obj it names now
        for ino, (kind, mode, content, _ents) in snap["objs"].items():
            self.cur[ino] = Obj(kind, content, mode=mode)
        for ino, (kind, _mode, _content, ents) in snap["objs"].items():
            if kind == "d":
                o = self.cur[ino]
                o.entries = {n: self.cur[i] for n, i in ents.items()}
                o.dentries = dict(o.entries)
        self.root = self.cur[snap["root"]]
        self.unknown = []  # records that name something the model does not know

    def _obj(self, ino, kind, rec):
        o = self.cur.get(ino)
        if o is None:
            self.unknown.append(rec)
            o = self.cur[ino] = Obj(kind)
        return o

    def apply(self, r):
        op = r.op
        if op == "write":
            o = self._obj(r.ino, "f", r)
            end = r.off + len(r.data)
            if len(o.data) < r.off:
                o.data.extend(b"\0" * (r.off - len(o.data)))
            o.data[r.off:end] = r.data
            o.pending.append(("w", r.off, r.data))
        elif op == "trunc":
            o = self._obj(r.ino, "f", r)
            _resize(o.data, r.dlen)
            o.pending.append(("t", r.dlen))
        elif op == "extend":
            o = self._obj(r.ino, "f", r)
            if len(o.data) < r.dlen:
                o.data.extend(b"\0" * (r.dlen - len(o.data)))
                o.pending.append(("x", r.dlen))
        elif op == "fsync":
            o = self._obj(r.ino, "d" if r.flags & 1 else "f", r)
            if o.kind == "d":
                o.dentries = dict(o.entries)
            else:
                o.durable = bytes(o.data)
            o.pending = []
        elif op in ("create", "mkdir"):
            o = self.cur[r.ino] = Obj("f" if op == "create" else "d")
            _set(self._obj(r.dino1, "d", r), r.name1, o)
        elif op == "link":
            src = self._obj(r.dino1, "d", r).entries.get(r.name1) or self._obj(r.ino, "f", r)
            _set(self._obj(r.dino2, "d", r), r.name2, src)
        elif op == "rename":
            d1, d2 = self._obj(r.dino1, "d", r), self._obj(r.dino2, "d", r)
            if r.flags & RENAME_EXCHANGE:
                o1, o2 = d1.entries.get(r.name1), d2.entries.get(r.name2)
                _set(d1, r.name1, o2, r.seq)
                _set(d2, r.name2, o1, r.seq)
            else:
                o = d1.entries.get(r.name1) or self._obj(r.ino, "f", r)
                _set(d1, r.name1, None, r.seq)
                _set(d2, r.name2, o, r.seq)
        elif op in ("unlink", "rmdir"):
            _set(self._obj(r.dino1, "d", r), r.name1, None)
        else:
            self.unknown.append(r)

    def write_durable(self, dest, rng=None):
        """Write the durable state out as a folder tree at dest (must not
        exist). With rng (a random.Random), each unsynced change survives
        or not at random; without, none does."""
        first_path = {}
        seen_dirs = set()

        groups = {}

        def keep(group=None):
            if rng is None:
                return False
            if group is None:
                return rng.random() < 0.5
            if group not in groups:
                groups[group] = rng.random() < 0.5
            return groups[group]

        def entries(o):
            ents = dict(o.dentries)
            for name, child, group in o.pending:
                if keep(group):
                    ents[name] = child
            return ents

        def content(o):
            data = bytearray(o.durable)
            for p in o.pending:
                if not keep():
                    continue
                if p[0] == "w":
                    if len(data) < p[1]:
                        data.extend(b"\0" * (p[1] - len(data)))
                    data[p[1]:p[1] + len(p[2])] = p[2]
                elif p[0] == "t":
                    _resize(data, p[1])
                elif len(data) < p[1]:
                    data.extend(b"\0" * (p[1] - len(data)))
            return bytes(data)

        def out(o, path):
            if o.kind == "d":
                if id(o) in seen_dirs:  # a folder kept under two names: once
                    return
                seen_dirs.add(id(o))
                os.mkdir(path, o.mode | 0o700)
                for name, child in sorted(entries(o).items()):
                    if child is not None:
                        out(child, os.path.join(path, name))
                os.chmod(path, o.mode)
            elif id(o) in first_path:
                os.link(first_path[id(o)], path)
            else:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, o.mode)
                with os.fdopen(fd, "wb") as f:
                    f.write(content(o))
                first_path[id(o)] = path

        out(self.root, str(dest))

    def visible(self, path_parts):
        """The bytes a running program sees now at root/path_parts (for tests)."""
        o = self.root
        for p in path_parts:
            o = o.entries[p]
        return bytes(o.data)


def _resize(data, size):
    if len(data) > size:
        del data[size:]
    else:
        data.extend(b"\0" * (size - len(data)))


def _set(d, name, obj, group=None):
    """Folder d's entry name now names obj (None: removed). The two halves of
    a rename share a group: kept or lost together while both are unsynced."""
    if obj is None:
        d.entries.pop(name, None)
    else:
        d.entries[name] = obj
    d.pending.append((name, obj, group))


def main(argv):
    if len(argv) == 3 and argv[1] == "dump":
        for r in read_log(argv[2]):
            print(r)
        return 0
    print(__doc__.split("Usage as a program:")[1].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
