"""Escape attempts against the code sandbox, in each isolation mode: every one must come back as a tool error
(and leave no trace on the host) while this test process goes on."""

import glob
import os
import socket
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from rlpractice.errors import UserError
from rlpractice.tools import ToolRunner, python_tool
from rlpractice.tools.sandbox import Sandbox, SandboxLimits

ROOT = Path(__file__).resolve().parents[1]
LIMITS = SandboxLimits(cpu_seconds=1, wall_seconds=2, memory_mb=256, output_bytes=10_000)


@pytest.fixture(scope="module", params=["bwrap", "unshare"])
def box(request) -> Sandbox:
    return Sandbox(request.param, LIMITS)


def run(box: Sandbox, code: str):
    return box.run(textwrap.dedent(code))


def test_plain_code_runs_and_can_use_its_scratch_folder(box):
    r = run(box, """
        with open("notes.txt", "w") as f:
            f.write("kept")
        print(open("notes.txt").read(), 6 * 7)
    """)
    assert (r.error, r.stdout) == (None, "kept 42\n")


@pytest.mark.parametrize("host", ["127.0.0.1", "1.1.1.1"])
def test_no_network(box, host):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1] if host == "127.0.0.1" else 53
    r = run(box, f"""
        import socket
        socket.create_connection(("{host}", {port}), timeout=2).sendall(b"escaped")
    """)
    assert r.error is not None and ("Errno" in r.error or "timed out" in r.error)
    with pytest.raises(socket.timeout):
        server.accept()  # nothing reached the host's loopback
    server.close()


@pytest.mark.parametrize("where", ["/tmp", str(ROOT), os.path.expanduser("~")])
def test_cannot_write_outside_the_scratch_folder(box, where):
    target = Path(where, f"sandbox-escape-{uuid.uuid4().hex}")
    r = run(box, f"open({str(target)!r}, 'w').write('escaped')")
    assert r.error is not None and ("Errno" in r.error)
    assert not target.exists()


def test_cannot_read_the_trainers_environment(box, monkeypatch):
    monkeypatch.setenv("RLPRACTICE_TEST_SECRET", "hunter2-secret")
    r = run(box, """
        import glob, os
        found = [v for v in os.environ.values() if "hunter2" in v]
        for path in glob.glob("/proc/*/environ"):
            try:
                found += ["proc"] if b"hunter2" in open(path, "rb").read() else []
            except OSError:
                pass
        if not found:
            raise SystemExit("secret not found")
        print("ESCAPED", found)
    """)
    assert r.error == "secret not found" and "hunter2" not in r.stdout + r.stderr


def test_fork_bomb(box):
    r = run(box, """
        import os
        while True:
            os.fork()
    """)
    assert r.error is not None and "Operation not permitted" in r.error and not r.timed_out  # refused, not waited out


def test_memory_bomb(box):
    r = run(box, """
        hog = []
        while True:
            hog.append(bytearray(50 * 1024 * 1024))
    """)
    assert r.error == "MemoryError"


def test_infinite_sleep_is_killed_at_the_wall_time(box):
    r = run(box, "import time\nprint('asleep', flush=True)\ntime.sleep(60)\nprint('woke')")
    # the wall limit fired, and the program was killed in its sleep: had the sandbox waited for it to end,
    # its output would hold 'woke' (and timed_out would be False)
    assert r.timed_out and r.error == f"timeout: the code ran longer than {LIMITS.wall_seconds:g} s"
    assert r.stdout == "asleep\n"


def test_cpu_bound_loop_is_stopped(box):
    r = run(box, "while True:\n    pass")  # never ends by itself: that this returns at all is a limit's doing
    # which limit says the reason: the wall clock wins when other jobs share the cores
    assert r.error == f"CPU time limit of {LIMITS.cpu_seconds:g} s exceeded" or (
        r.timed_out and r.error == f"timeout: the code ran longer than {LIMITS.wall_seconds:g} s"), r.error


def test_huge_output_is_capped(box):
    r = run(box, "while True:\n    print('x' * 1000)")
    assert r.error == f"output limit of {LIMITS.output_bytes} bytes exceeded"
    assert len(r.stdout) <= LIMITS.output_bytes


def test_os_system_subprocess_and_ctypes(box):
    target = f"/tmp/sandbox-escape-{uuid.uuid4().hex}"
    attempts = {
        "os.system": f"""
            import os
            status = os.system("echo escaped > {target}")
            if status != 0:
                raise SystemExit(f"os.system failed: {{status}}")
        """,
        "subprocess": f"""
            import subprocess
            subprocess.run(["sh", "-c", "echo escaped > {target}"], check=True)
        """,
        "ctypes": """
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            results = {
                "fork": libc.fork(),
                "remount / writable": libc.mount(b"none", b"/", None, 32, None),  # MS_REMOUNT
                "new user namespace": libc.unshare(0x10000000),  # CLONE_NEWUSER
            }
            if all(r == -1 for r in results.values()):
                raise SystemExit(f"all refused: {results}")
            print("ESCAPED", results)
        """,
    }
    for name, code in attempts.items():
        r = run(box, code)
        assert r.error is not None and "ESCAPED" not in r.stdout, name
    assert not os.path.exists(target)


def test_scratch_folder_is_deleted(box):
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "rlpractice-sandbox-*")))
    r = run(box, "open('big.bin', 'wb').write(b'0' * 5000)")
    assert r.error is None
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "rlpractice-sandbox-*"))) <= before


def test_bwrap_hides_the_project_and_home():
    r = Sandbox("bwrap", LIMITS).run(f"print(open({str(ROOT / 'pyproject.toml')!r}).read())")
    assert r.error is not None and "No such file" in r.error


def test_many_calls_at_once_all_run_at_the_same_time():
    """Each of 8 calls' programs marks its scratch folder 'started', then waits for a 'go' there, which this test
    writes only once it sees all 8 marks at the same moment: calls run one after another (or a few at a time)
    never get there, and print 'alone' when the generous wait below runs out (the clock only bounds how long a
    failure takes: a pass does not depend on how fast this machine is)."""
    give_up = time.time() + 60  # a wait only a failure reaches, however slowly this machine starts sandboxes
    python_tool.configure("auto", replace(LIMITS, wall_seconds=90))  # the wall limit: beyond give_up
    runner = ToolRunner(["python"])
    tag = uuid.uuid4().hex  # marks only this test's sandboxes
    code = textwrap.dedent(f"""\
        import os, time
        open("started-{tag}", "w").close()
        while not os.path.exists("go") and time.time() < {give_up}:
            time.sleep(0.02)
        print("together" if os.path.exists("go") else "alone")""")
    marks = os.path.join(tempfile.gettempdir(), "rlpractice-sandbox-*", "box", f"started-{tag}")

    def go_when_all_have_started() -> None:
        while time.time() < give_up:
            started = glob.glob(marks)
            if len(started) == 8:
                for mark in started:
                    Path(mark).with_name("go").touch()
                return
            time.sleep(0.02)

    releaser = threading.Thread(target=go_when_all_have_started, daemon=True)
    releaser.start()
    try:
        results = runner.run([runner.parse(f"```python\n{code}\n```\n```output")] * 8)
    finally:
        runner.close()
        python_tool.configure("auto", LIMITS)
    releaser.join()
    assert [r.text for r in results] == ["\ntogether\n```\n"] * 8


def test_tool_error_text_for_the_model():
    python_tool.configure("auto", LIMITS)
    runner = ToolRunner(["python"])
    [r] = runner.run([runner.parse("```python\nprint('start')\nimport os\nos.fork()\n```\n```output")])
    runner.close()
    assert r.text == "\nstart\nerror: PermissionError: [Errno 1] Operation not permitted\n```\n"


def test_unavailable_isolation_refuses_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither bwrap nor unshare can be found
    for mode in ("bwrap", "unshare", "auto"):
        with pytest.raises(UserError) as info:
            Sandbox(mode, LIMITS)
        assert "\n" not in str(info.value) and "not installed" in str(info.value)
    with pytest.raises(UserError, match="not one of"):
        Sandbox("none", LIMITS)
