"""Memory of processes and process trees, from /proc (Linux).

RSS counts every page a process maps, shared or not; PSS (smaps_rollup)
divides each shared page among the processes that map it, so a sum of PSS
over a thousand forks of one sshd is not inflated as a sum of RSS is. A
server's memory is split into the server's own processes (those whose
command name is the server's: sshqd's one process, or sshd's listener and
its per-connection privilege-separation processes) and the sessions'
processes (the shells, and whatever they run).
"""

from pathlib import Path

PROC = Path("/proc")


def _read(path):
    try:
        return Path(path).read_text()
    except OSError:  # the process is gone, or not ours to read
        return ""


def status_fields(pid, proc=PROC):
    """/proc/PID/status as {field: first value} ({} if the process is gone);
    memory fields are in KiB."""
    fields = {}
    for line in _read(proc / str(pid) / "status").splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if parts:
            fields[name] = parts[0]
    return fields


def rollup_kib(pid, proc=PROC):
    """{'rss': KiB, 'pss': KiB} of a process from smaps_rollup (zeros if gone)."""
    out = {"rss": 0, "pss": 0}
    for line in _read(proc / str(pid) / "smaps_rollup").splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if name in ("Rss", "Pss") and parts and parts[0].isdigit():
            out[name.lower()] = int(parts[0])
    return out


def process_table(proc=PROC):
    """{pid: (ppid, comm)} of every process now."""
    table = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read(entry / "stat")
        # comm is in parentheses and may itself hold spaces or ')'.
        head, sep, tail = stat.rpartition(")")
        fields = tail.split()
        if not sep or len(fields) < 2 or not fields[1].lstrip("-").isdigit():
            continue
        comm = head.partition("(")[2]
        table[int(entry.name)] = (int(fields[1]), comm)
    return table


def command_name(pid, proc=PROC):
    """The command name (comm) of a running process, or None."""
    name = _read(proc / str(pid) / "comm")
    return name.rstrip("\n") if name else None


def tree(root, table):
    """`root` and every process below it in `table` ({pid: (ppid, comm)})."""
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo, seen = [], [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def split_tree(root, table, server_comm):
    """The processes of `root`'s tree, as (server pids, session pids): server
    pids are `root` and every process below it whose command name is
    `server_comm`; the rest are the sessions' processes."""
    server, sessions = [], []
    for pid in tree(root, table):
        comm = table.get(pid, (0, ""))[1]
        (server if pid == root or comm == server_comm else sessions).append(pid)
    return server, sessions


def sum_memory(pids, proc=PROC):
    """{'procs', 'rss_kib', 'pss_kib'} summed over `pids` (gone ones count 0)."""
    total = {"procs": 0, "rss_kib": 0, "pss_kib": 0}
    for pid in pids:
        mem = rollup_kib(pid, proc)
        if mem["rss"] == 0 and mem["pss"] == 0:
            continue
        total["procs"] += 1
        total["rss_kib"] += mem["rss"]
        total["pss_kib"] += mem["pss"]
    return total


def server_memory(root, server_comm, proc=PROC):
    """A server's tree now: {'server': sum_memory(...), 'sessions': sum_memory(...)},
    plus the root process's thread count."""
    server, sessions = split_tree(root, process_table(proc), server_comm)
    threads = status_fields(root, proc).get("Threads", "0")
    return {"server": sum_memory(server, proc), "sessions": sum_memory(sessions, proc),
            "root_threads": int(threads) if threads.isdigit() else 0}


def per_session_kib(before_kib, after_kib, sessions):
    """(after - before) / sessions, or None without sessions: the memory each
    of `sessions` added."""
    if not sessions or before_kib is None or after_kib is None:
        return None
    return (after_kib - before_kib) / sessions


def mem_available_kib(proc=PROC):
    """MemAvailable of /proc/meminfo in KiB (None if unknown)."""
    for line in _read(proc / "meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) > 1 and parts[1].isdigit():
                return int(parts[1])
    return None
