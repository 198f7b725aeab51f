"""The first program inside a sandbox (standard library only: sandbox.py passes this file's text to `python -c`).

It finishes the isolation the namespace tool started, then runs the model's code in a child and reports
how that child ended on a pipe only this program holds (signals and CPU time are not visible from outside):
1. unshare mode only: bind the scratch folder writable, remount every other mount read-only, and check it;
2. fork; in the child: resource limits, drop every capability, no new privileges, a seccomp filter that
   refuses creating processes (fork, vfork, clone without CLONE_THREAD; threads still work), ptrace and
   the mount/namespace calls, then exec Python on the code;
3. wait, and write one JSON line {"exit": code or -signal, "cpu": seconds} to the status pipe.
"""

import ctypes
import json
import os
import platform
import re
import resource
import struct
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
_MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21, "strictatime": 1 << 24}
PR_SET_SECCOMP, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 22, 24, 38, 47
SECCOMP_MODE_FILTER = 2
CLONE_THREAD = 0x10000
EPERM, ENOSYS = 1, 38

# Syscall numbers of what the filter refuses. clone3 answers ENOSYS, so the C library falls back to clone,
# whose flags the filter can read (threads pass, new processes do not).
_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DENY = {
    "x86_64": {"fork": 57, "vfork": 58, "ptrace": 101, "pivot_root": 155, "chroot": 161, "mount": 165,
               "umount2": 166, "unshare": 272, "setns": 308},
    "aarch64": {"umount2": 39, "mount": 40, "pivot_root": 41, "chroot": 51, "unshare": 97, "ptrace": 117,
                "setns": 268},
}
_DENY_ALL = {"open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
             "mount_setattr": 442}
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = 435

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def seccomp_program(machine: str) -> bytes:
    """The BPF program (struct sock_filter[]) for this machine; KeyError for machines without a table."""
    arch, clone = _ARCH[machine], _CLONE[machine]
    deny = sorted({**_DENY[machine], **_DENY_ALL}.values())
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, JMP|JSET|K, RET|K
    allow, eperm, enosys, kill = 0x7FFF0000, 0x00050000 | EPERM, 0x00050000 | ENOSYS, 0x80000000
    prog = [(ld, 0, 0, 4), (jeq, 0, "kill", arch), (ld, 0, 0, 0)]  # seccomp_data: nr at 0, arch at 4
    if machine == "x86_64":
        prog.append((jge, "eperm", 0, 0x40000000))  # the x32 numbering of the same calls
    prog += [(jeq, "clone", 0, clone), (jeq, "enosys", 0, _CLONE3)]
    prog += [(jeq, "eperm", 0, nr) for nr in deny]
    labels = {}
    prog += [(ret, 0, 0, allow)]
    labels["clone"] = len(prog)
    prog += [(ld, 0, 0, 16), (jset, "allow", "eperm", CLONE_THREAD)]  # low half of args[0]: the flags
    for name, k in (("allow", allow), ("eperm", eperm), ("enosys", enosys), ("kill", kill)):
        labels[name] = len(prog)
        prog.append((ret, 0, 0, k))
    out = b""
    for i, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        out += struct.pack("=HBBI", code, jt, jf, k)
    return out


def _mounts() -> list[tuple[str, list[str]]]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            out.append((target, fields[5].split(",")))
    return out


def lock_filesystem(scratch: str) -> None:
    """unshare mode: everything read-only except `scratch` (run as root of the new user namespace)."""
    _check(_libc.mount(scratch.encode(), scratch.encode(), None, MS_BIND, None), f"bind {scratch}")
    for target, options in _mounts():
        if target == scratch:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in options:
            flags |= _MOUNT_FLAGS.get(option, 0)  # locked flags (nosuid, nodev...) must be kept
        _check(_libc.mount(None, target.encode(), None, flags, None), f"remount {target} read-only")
    top = dict(_mounts())  # a later line for the same folder is mounted over the earlier one
    writable = [t for t, options in top.items() if t != scratch and "ro" not in options]
    if writable:
        raise OSError(f"still writable: {writable[:3]}")


def _child(cfg: dict, program: bytes) -> None:
    limits = cfg["limits"]
    cpu = max(1, int(limits["cpu_seconds"] + 0.999))
    for kind, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                        (resource.RLIMIT_AS, (limits["memory_bytes"],) * 2),
                        (resource.RLIMIT_FSIZE, (limits["output_bytes"],) * 2),
                        (resource.RLIMIT_NOFILE, (limits["open_files"],) * 2),
                        (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(kind, value)
    for cap in range(64):  # empty bounding set: the exec below leaves no capability, even to uid 0
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    _libc.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    buf = ctypes.create_string_buffer(program)

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Prog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")
    os.execve(cfg["python"], [cfg["python"], "-I", "main.py"], cfg["env"])


def main() -> int:
    cfg = json.loads(sys.argv[1])
    status = cfg["status_fd"]
    os.set_inheritable(status, False)  # the model's code never sees the status pipe
    try:
        if cfg["lock_filesystem"]:
            lock_filesystem(cfg["scratch"])
        os.chdir(cfg["scratch"])
        program = seccomp_program(platform.machine())
    except Exception as exc:  # noqa: BLE001 - any failure here means: not isolated, do not run
        os.write(status, (json.dumps({"setup_error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
        return 1
    pid = os.fork()
    if pid == 0:
        try:
            _child(cfg, program)
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"sandbox setup failed: {type(exc).__name__}: {exc}\n".encode())
        os._exit(125)
    _, wait_status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    os.write(status, (json.dumps({"exit": code, "cpu": usage.ru_utime + usage.ru_stime}) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
