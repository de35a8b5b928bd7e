"""sshqlab.memory: process trees, the server/session split, and the
per-session arithmetic of `interop/run bench-idle`, on fake and real /proc."""

import os
import subprocess
import sys

import pytest

from sshqlab import memory


def write_proc(root, pid, ppid, comm, rss=0, pss=0):
    d = root / str(pid)
    d.mkdir()
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0 0 0\n")
    (d / "comm").write_text(comm + "\n")
    (d / "smaps_rollup").write_text(
        f"00400000-7ffc0000 ---p 00000000 00:00 0 [rollup]\nRss: {rss} kB\nPss: {pss} kB\n"
        "Pss_Anon: 0 kB\nShared_Clean: 0 kB\n")
    (d / "status").write_text(f"Name:\t{comm}\nThreads:\t3\nVmRSS:\t{rss} kB\n")


@pytest.fixture
def fake_proc(tmp_path):
    # sshd listener 100 with two connections (monitor + user child + shell),
    # a stranger 900, and a comm holding a ')' and spaces.
    write_proc(tmp_path, 1, 0, "init", 100, 100)
    write_proc(tmp_path, 100, 1, "sshd", 8000, 3000)
    for conn, base in ((200, 0), (300, 10)):
        write_proc(tmp_path, conn, 100, "sshd", 7000, 1000 + base)
        write_proc(tmp_path, conn + 1, conn, "sshd", 6000, 900 + base)
        write_proc(tmp_path, conn + 2, conn + 1, "sh", 1000, 200 + base)
    write_proc(tmp_path, 900, 1, "weird) name", 50, 50)
    (tmp_path / "meminfo").write_text("MemTotal: 100 kB\nMemAvailable:   4242 kB\n")
    (tmp_path / "self").mkdir()  # not a pid: skipped
    return tmp_path


def test_process_table_reads_parents_and_names(fake_proc):
    table = memory.process_table(fake_proc)
    assert table[201] == (200, "sshd")
    assert table[900] == (1, "weird) name")
    assert "self" not in table and len(table) == 9


def test_tree_holds_root_and_all_descendants_only(fake_proc):
    table = memory.process_table(fake_proc)
    assert sorted(memory.tree(100, table)) == [100, 200, 201, 202, 300, 301, 302]
    assert memory.tree(202, table) == [202]


def test_split_tree_puts_the_servers_processes_apart_from_the_sessions(fake_proc):
    server, sessions = memory.split_tree(100, memory.process_table(fake_proc), "sshd")
    assert sorted(server) == [100, 200, 201, 300, 301]
    assert sorted(sessions) == [202, 302]


def test_server_memory_sums_rss_and_pss_per_class(fake_proc):
    mem = memory.server_memory(100, "sshd", fake_proc)
    assert mem["server"] == {"procs": 5, "rss_kib": 8000 + 2 * 13000, "pss_kib": 3000 + 1900 + 1920}
    assert mem["sessions"] == {"procs": 2, "rss_kib": 2000, "pss_kib": 410}
    assert mem["root_threads"] == 3


def test_gone_processes_count_nothing(fake_proc):
    assert memory.sum_memory([12345], fake_proc) == {"procs": 0, "rss_kib": 0, "pss_kib": 0}
    assert memory.status_fields(12345, fake_proc) == {}
    assert memory.command_name(12345, fake_proc) is None
    assert memory.command_name(900, fake_proc) == "weird) name"


def test_per_session_is_the_growth_divided_by_the_sessions():
    assert memory.per_session_kib(1000, 65000, 1000) == 64.0
    assert memory.per_session_kib(1000, 900, 10) == -10.0  # memory given back is reported, not hidden
    assert memory.per_session_kib(1000, 2000, 0) is None
    assert memory.per_session_kib(None, 2000, 5) is None


def test_mem_available(fake_proc):
    assert memory.mem_available_kib(fake_proc) == 4242
    assert memory.mem_available_kib(fake_proc / "self") is None


def test_real_tree_sees_a_child_and_its_memory():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        table = memory.process_table()
        assert child.pid in memory.tree(os.getpid(), table)
        server, sessions = memory.split_tree(os.getpid(), table, "no-such-server")
        assert server == [os.getpid()] and child.pid in sessions
        mem = memory.rollup_kib(child.pid)
        assert mem["rss"] > 0 and 0 < mem["pss"] <= mem["rss"]
    finally:
        child.kill()
        child.wait()
