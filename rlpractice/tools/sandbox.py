"""Run untrusted Python (the model's code) in a sandbox: a fresh process per call, never the trainer's.

Modes (`Sandbox(mode=...)`):
  bwrap    bubblewrap (Debian package `bubblewrap`). New user, PID, network, IPC, UTS and mount
           namespaces; the filesystem is an empty read-only root with only the system folders (/usr, /lib...)
           and the Python installation bound read-only, plus the call's scratch folder, writable, as /scratch.
           The code cannot see the project, $HOME, /tmp or other processes; the network namespace has only
           its own loopback.
  unshare  util-linux `unshare`, for hosts without bubblewrap. New user, PID, network and mount namespaces;
           every mount is remounted read-only except the scratch folder. Weaker than bwrap: the code can
           *read* every file the trainer's user can read (it still cannot write, see other processes, or
           reach the network).
  auto     bwrap when it works here, else unshare.
In every mode: an environment with nothing from the trainer's (PATH, HOME and a few thread settings), one
process (a seccomp filter refuses fork, vfork and clone without CLONE_THREAD, as well as ptrace and the
mount/namespace calls), no capabilities, and per-call limits (SandboxLimits): CPU seconds, memory (address
space), output bytes (stdout, stderr and any file written), open files, and wall time, enforced from outside
by killing the sandbox's process group. The scratch folder is deleted after the call.

When the chosen mode cannot be set up, Sandbox() raises UserError (one line) rather than run anything
unsandboxed. Needs Linux on x86_64 or aarch64 (the seccomp filter's syscall tables).
"""

from __future__ import annotations

import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rlpractice.errors import UserError
from rlpractice.tools.sandbox_boot import _ARCH
from rlpractice.tools.syntax import ToolError, one_line

MODES = ("auto", "bwrap", "unshare")
_BOOT = (Path(__file__).parent / "sandbox_boot.py").read_text()
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")  # besides /usr: folders or links into it


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: float = 5.0
    wall_seconds: float = 10.0
    memory_mb: int = 1024  # address space: numpy and sympy imports fit, a memory bomb gets MemoryError
    output_bytes: int = 256_000  # stdout and stderr each, and any file the code writes
    open_files: int = 64


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str
    error: str | None  # None: the code ran and exited 0; else one short line saying what went wrong
    timed_out: bool
    cpu_seconds: float
    wall_seconds: float


class Sandbox:
    """`Sandbox(mode, limits)(code)` -> stdout, or ToolError; `run(code)` -> RunResult. Thread-safe."""

    def __init__(self, mode: str = "auto", limits: SandboxLimits = SandboxLimits(), python: str = sys.executable):
        if mode not in MODES:
            raise UserError(f"sandbox mode {mode!r} is not one of {MODES}")
        if platform.system() != "Linux" or platform.machine() not in _ARCH:
            raise UserError(f"the code sandbox needs Linux on {' or '.join(_ARCH)}, not "
                            f"{platform.system()} {platform.machine()}")
        self.limits, self.python = limits, python
        reasons = []
        for candidate in (("bwrap", "unshare") if mode == "auto" else (mode,)):
            self.mode = candidate
            reason = self._probe()
            if reason is None:
                return
            reasons.append(f"{candidate}: {reason}")
        hint = "install bubblewrap (apt-get install bubblewrap, or bash scripts/setup.sh as root)"
        raise UserError(f"sandbox mode {mode!r} cannot isolate code on this machine ({'; '.join(reasons)}); {hint}")

    def _probe(self) -> str | None:
        """Why this mode does not work here, or None when a test program runs correctly."""
        tool = "bwrap" if self.mode == "bwrap" else "unshare"
        if shutil.which(tool) is None:
            return f"the {tool!r} command is not installed"
        result = self.run("print(6 * 7)")
        if result.error is not None or result.stdout.strip() != "42":
            return result.error or f"unexpected output {result.stdout[:80]!r}"
        return None

    def __call__(self, code: str) -> str:
        """The tool function: the code's output, or ToolError with what it printed and why it failed."""
        result = self.run(code)
        if result.error is not None:
            raise ToolError(result.error, output=result.stdout, timeout=result.timed_out)
        return "\n".join(part for part in (result.stdout, result.stderr) if part)  # stderr: warnings

    # -------------------------------------------------------------- one call

    def _command(self, box: Path, inside: str) -> list[str]:
        if self.mode == "unshare":
            return ["unshare", "--user", "--map-root-user", "--pid", "--net", "--mount", "--ipc", "--uts",
                    "--fork", "--kill-child", "--mount-proc"]
        cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
               "--ro-bind", "/usr", "/usr"]
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                cmd += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                cmd += ["--ro-bind", path, path]
        for path in _python_dirs(self.python):
            cmd += ["--ro-bind", path, path]
        return cmd + ["--proc", "/proc", "--dev", "/dev", "--bind", str(box), inside, "--remount-ro", "/",
                      "--chdir", inside]

    def run(self, code: str) -> RunResult:
        lim = self.limits
        with tempfile.TemporaryDirectory(prefix="rlpractice-sandbox-", ignore_cleanup_errors=True) as tmp:
            box = Path(tmp, "box")
            box.mkdir()
            (box / "main.py").write_text(code, encoding="utf-8")
            inside = "/scratch" if self.mode == "bwrap" else str(box)
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": inside, "TMPDIR": inside, "LANG": "C.UTF-8",
                   "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
                   **{k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
            read_fd, write_fd = os.pipe()
            cfg = {"status_fd": write_fd, "scratch": inside, "lock_filesystem": self.mode == "unshare",
                   "python": self.python, "env": env,
                   "limits": {"cpu_seconds": lim.cpu_seconds, "memory_bytes": lim.memory_mb << 20,
                              "output_bytes": lim.output_bytes, "open_files": lim.open_files}}
            cmd = self._command(box, inside) + [self.python, "-I", "-S", "-c", _BOOT, json.dumps(cfg)]
            start = time.monotonic()
            try:
                with open(Path(tmp, "stdout"), "wb") as out, open(Path(tmp, "stderr"), "wb") as err:
                    # env: the namespace tool's own environment is readable inside (/proc/1/environ)
                    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                            cwd=tmp, pass_fds=(write_fd,), start_new_session=True)
            except OSError:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
            timed_out = False
            try:
                proc.wait(timeout=lim.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # the namespace tool; its children die with it
                proc.wait()
            wall = time.monotonic() - start
            status = _read_status(read_fd)
            stdout = _read(Path(tmp, "stdout"), lim.output_bytes)
            stderr = _read(Path(tmp, "stderr"), lim.output_bytes)
        timeout = f"timeout: the code ran longer than {lim.wall_seconds:g} s"
        error = timeout if timed_out else self._error(status, stderr)
        return RunResult(stdout, stderr, error, timed_out, float(status.get("cpu", 0.0)), wall)

    def _error(self, status: dict, stderr: str) -> str | None:
        if "setup_error" in status:
            return f"sandbox setup failed: {status['setup_error']}"
        if "exit" not in status:
            return f"the sandbox did not start: {one_line(stderr) if stderr.strip() else 'no status'}"
        code = status["exit"]
        if code == 0:
            return None
        if code == 125 and "sandbox setup failed" in stderr:
            return one_line(stderr)
        if code < 0:
            sig = -code
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and status.get("cpu", 0) >= self.limits.cpu_seconds):
                return f"CPU time limit of {self.limits.cpu_seconds:g} s exceeded"
            if sig == signal.SIGXFSZ:
                return f"output limit of {self.limits.output_bytes} bytes exceeded"
            return f"killed by {signal.Signals(sig).name}"
        if "[Errno 27] File too large" in stderr:  # Python ignores SIGXFSZ: the write fails with EFBIG instead
            return f"output limit of {self.limits.output_bytes} bytes exceeded"
        return one_line(stderr) if stderr.strip() else f"exit status {code}"


def _python_dirs(python: str) -> list[str]:
    """The folders outside /usr that Python needs (a venv, a pyenv or uv install), outermost only."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(python)}
    paths |= {os.path.realpath(p) for p in paths} | {os.path.dirname(os.path.realpath(python))}
    paths = sorted(p for p in paths if p != "/usr" and not p.startswith("/usr/"))
    return [p for p in paths if not any(p.startswith(q.rstrip("/") + "/") for q in paths if q != p)]


def _read(path: Path, limit: int) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


def _read_status(fd: int) -> dict:
    """The bootstrap's JSON line; {} when the sandbox was killed or never started."""
    data = b""
    try:
        while select.select([fd], [], [], 2.0)[0]:  # the write end closes when the sandbox's last process ends
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    try:
        return json.loads(data.decode().splitlines()[0]) if data.strip() else {}
    except (ValueError, IndexError):
        return {}
