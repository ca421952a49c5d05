"""
The seccomp filter of every run: a deny-list compiled once at start-up with libseccomp
(through PyPI's C{pyseccomp}, a ctypes binding of the system's C{libseccomp.so.2}) and
handed to bubblewrap (C{--seccomp}), which applies it last, after building the run's
namespaces.

A refused call fails with EPERM rather than killing the program, so each interpreter
reports it as an error the user can read (C{PermissionError: [Errno 1] Operation not
permitted}).  System calls of another architecture (the 32-bit ABI through C{int 0x80}) are
not in the filter's architecture and kill the process: libseccomp's default for a foreign
architecture.
"""

from __future__ import annotations

import errno
import tempfile

#: Calls no user program needs, each a piece of kernel surface: debugging other
#: processes, namespaces and mounts (escapes), keyrings, BPF, performance counters,
#: userfaultfd (exploit primitive), modules, kexec, reboot, swap, accounting, raw I/O ports,
#: io_uring (its own path around this filter), file handles (open_by_handle_at escapes).
DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "iopl",
    "ioperm",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "fsopen",
    "fsmount",
    "fsconfig",
    "move_mount",
    "open_tree",
)

#: The one socket family a run may create (socketpair stays usable; the run's network
#: namespace has no route anywhere, and no host socket file is in its view).
AF_UNIX = 1

#: Namespace flags of clone(): a new namespace is the same surface as unshare().
CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)


class SeccompUnavailable(Exception):
    """libseccomp (or its Python binding) is not there; the text says why."""


def compile_filter() -> bytes:
    """The run's filter as a BPF program for this machine's architecture."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as error:  # OSError: libseccomp.so.2 is missing
        raise SeccompUnavailable(f"libseccomp is not available: {error}") from None
    refuse = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        try:
            rules.add_rule(refuse, name)
        except (RuntimeError, ValueError, OSError):
            pass  # a call this kernel or architecture does not have cannot be made either
    rules.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.NE, AF_UNIX))
    for flag in CLONE_NAMESPACE_FLAGS:
        rules.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory, where a filter cannot look: refused with ENOSYS,
    # C libraries fall back to clone(), whose flags the rule above checks.
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as program:  # libseccomp writes to a file descriptor
        rules.export_bpf(program)
        program.seek(0)
        return program.read()
