"""
The processor's sandbox, seen from the server: run uids, start-up checks, and how the
launcher (C{gameproto/processor/launcher/}) is invoked.

- L{RunLimits} and L{Limit} (from L{gameproto.processor.limits}): every limit of a run,
  and which one stopped it.
- L{SandboxConfig}: where runs live, which uids they get, which interpreters, root or not.
- L{start_sandbox}: the start-up checks (the isolated sandbox's parts, see
  L{gameproto.processor.isolation}; the run directory 0711; leftovers of the run uids this
  server can claim killed; each language's interpreter run once through the launcher as a
  run uid) giving a L{Sandbox} that knows which languages are on.

Run uids come from a L{gameproto.processor.uids.UidPool}: one uid per concurrent run,
claimed host-wide (RLIMIT_NPROC and C{kill(-1)} go by uid, so a shared uid would let one
run reach another).  Where the isolated sandbox cannot be had (no root, no bubblewrap, no
cgroup, no libseccomp), the processor stays off unless the configuration allows the weak
sandbox (see the launcher's docstring), which the server then logs as such.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameproto.processor.isolation import RUN_DIRECTORY, Isolation, IsolationUnavailable, find_isolation
from gameproto.processor.languages import LANGUAGES, PROBE_TOKEN, Language
from gameproto.processor.launcher.launch_request import Request
from gameproto.processor.launchers import Launchers
from gameproto.processor.limits import RunLimits, positive
from gameproto.processor.launcher.procfs import live_processes_of
from gameproto.processor.uids import LOCK_DIRECTORY, UidPool

#: The launcher program (a directory with its C{__main__.py}), run with the server's Python.
LAUNCHER_PATH = Path(__file__).resolve().with_name("launcher")


_log = Logger(namespace="gameproto.processor.sandbox")


def parse_uid_range(text: str) -> range:
    """C{"60000-60063"} (inclusive) -> C{range(60000, 60064)}; for C{--processor-uids}."""
    first, dash, last = text.partition("-")
    try:
        start = int(first)
        stop = int(last) if dash else start
    except ValueError:
        raise ValueError(f"not a uid range: {text!r} (expected FIRST-LAST)") from None
    if not 0 < start <= stop:
        raise ValueError(f"not a uid range: {text!r}")
    return range(start, stop + 1)


def _uid_range(value: Iterable[int]) -> range:
    uids = value if isinstance(value, range) else range(0)
    if not uids or uids.step != 1 or uids.start <= 0:
        raise ValueError(f"run uids must be a non-empty range of positive uids: {value!r}")
    return uids


@attrs.frozen
class SandboxConfig:
    """
    How runs are sandboxed.

    @ivar run_base: the directory of run directories (C{--processor-dir}); mode 0711, never
        under the server's working directory.
    @ivar uids: the run uid pool (C{--processor-uids}); also each run's gid.
    @ivar interpreters: interpreter paths by language (C{--processor-<language>}),
        overriding L{Language.default_interpreter}.
    @ivar privileged: run as root: a uid per run.  Without root the program keeps the
        server's uid (the weak sandbox without root, see the launcher).
    @ivar namespaces: the weak sandbox's network and mount namespaces (root only).
    @ivar allow_weak: where the isolated sandbox cannot be had, run programs in the weak
        one (C{--processor-allow-weak-sandbox}) instead of keeping the processor off.
    @ivar bwrap: bubblewrap's path (default: found on C{PATH}).
    @ivar uid_locks: the host-wide directory of run uid locks.
    @ivar launcher_python: the Python running the launcher (the server's own).
    @ivar nice: the program's nice value.
    @ivar poll_interval: how often the launcher looks at the run's cgroup (or counts its
        tasks, in the weak sandbox).
    """

    run_base: str = "/tmp/gameproto-runs"
    uids: range = attrs.field(default=range(60000, 60064), converter=_uid_range)
    interpreters: Mapping[str, str] = attrs.field(factory=dict)
    privileged: bool = attrs.field(factory=lambda: os.geteuid() == 0)
    namespaces: bool = attrs.field()
    allow_weak: bool = False
    bwrap: str | None = None
    uid_locks: str = LOCK_DIRECTORY
    launcher_python: str = sys.executable
    nice: int = 19
    poll_interval: float = attrs.field(default=0.05, validator=positive)

    @namespaces.default
    def _namespaces_when_root(self) -> bool:
        return self.privileged


class SandboxError(Exception):
    """The sandbox cannot work as configured (bad run directory...)."""


def prepare_run_base(path: str) -> str:
    """
    Create the directory of run directories, or check it: a real directory (no symlink),
    owned by the server's uid, writable by nobody else (another user could otherwise plant
    entries the launcher would trust), mode 0711 so run uids reach their own directory but
    cannot list the others.  Return its absolute path.
    """
    path = os.path.abspath(path)
    if os.path.realpath(path) != path:
        raise SandboxError(f"{path}: the processor directory must not be behind a symlink")
    try:
        os.mkdir(path, 0o711)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path):
        raise SandboxError(f"{path}: not a directory")
    if info.st_uid != os.geteuid():
        raise SandboxError(f"{path}: owned by uid {info.st_uid}, not by the server")
    os.chmod(path, 0o711)
    if os.path.commonpath([path, os.getcwd()]) == os.getcwd():
        _log.warn(
            "processor directory {path} is under the working directory {cwd}",
            path=path,
            cwd=os.getcwd(),
        )
    return path


def sweep_uid(uid: int, timeout: float = 1.0) -> bool:
    """
    Kill every process of C{uid} from the server itself (root): for a launcher that did not
    finish, or leftovers of a previous server.  True when nothing of C{uid} is left alive
    (zombies of processes reparented to PID 1 may linger a moment; they are dead).
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = live_processes_of(uid)
        if not alive:
            return True
        if time.monotonic() >= deadline:
            return False
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.002)  # a bounded wait for SIGKILL to land, off any event path


@attrs.define
class Sandbox:
    """
    A checked sandbox: what L{gameproto.processor.runner} needs to start launchers.

    @ivar languages: the languages that are on, by name.
    @ivar disabled: why each other language is off.
    @ivar uid_pool: the run uids, or None without root.
    @ivar isolation: the isolated sandbox's parts, or None in the weak sandbox.
    @ivar weakness: why the sandbox is the weak one (None when isolated).
    """

    config: SandboxConfig
    limits: RunLimits
    languages: Mapping[str, Language] = attrs.field(factory=lambda: dict(LANGUAGES))
    disabled: Mapping[str, str] = attrs.field(factory=dict)
    uid_pool: UidPool | None = attrs.field()
    isolation: Isolation | None = None
    weakness: str | None = None

    @uid_pool.default
    def _pool_when_root(self) -> UidPool | None:
        return UidPool(self.config.uids, self.config.uid_locks) if self.config.privileged else None

    def interpreter(self, language: Language) -> str:
        return self.config.interpreters.get(language.name, language.default_interpreter)

    def launcher_argv(self) -> list[str]:
        # -I: no PYTHON* variables, no user site, no current directory on sys.path; -S:
        # the launcher needs the standard library only (and its own directory).
        argv = [self.config.launcher_python, "-I", "-S", str(LAUNCHER_PATH)]
        if self.isolation is not None:
            # Where runs' cgroups go: a launcher enters one while it waits for its run.
            argv.append(json.dumps(self.isolation.cgroups.launcher_spec()))
        return argv

    def launcher_env(self) -> dict[str, str]:
        # spawnProcess passes os.environ unless told otherwise: the launcher (and so the
        # program) must not see the server's secrets.
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

    def launchers(self, reactor: IReactorProcess, spares: int = 0) -> Launchers:
        """Starts this sandbox's launchers on C{reactor}, C{spares} of them ahead of time."""
        return Launchers(reactor, self.launcher_argv(), self.launcher_env(), spares)

    def lock_fd(self, uid: int | None) -> int | None:
        """The claimed lock of run uid C{uid}, which its launcher holds too."""
        if uid is None or self.uid_pool is None:
            return None
        return self.uid_pool.lock_fd(uid)

    def new_run_name(self, uid: int | None) -> str:
        """A fresh name for a run: its cgroup's, or its run directory's on the host."""
        prefix = str(uid) if uid is not None else "run"
        return f"{prefix}-{secrets.token_hex(8)}"

    def run_dir(self, name: str) -> str:
        """Where the run's files are, as the program sees them."""
        if self.isolation is not None:
            return RUN_DIRECTORY
        return os.path.join(self.config.run_base, name)

    def launch_request(self, language: Language, code: str, name: str, uid: int | None) -> bytes:
        """What the launcher reads on fd 0: a JSON line, then the user's file."""
        limits = self.limits
        run_dir = self.run_dir(name)
        argv = language.command(self.interpreter(language), run_dir, limits.memory)
        isolation = self.isolation
        if isolation is not None:
            if uid is None:
                raise SandboxError("the isolated sandbox needs a run uid")
            argv = isolation.command(
                language.name,
                argv,
                uid,
                language.file_name,
                language.sdk_file_name,
                limits.run_dir_size,
            )
        request: Request = {
            "argv": argv,
            "env": language.environment(run_dir),
            "isolated": isolation is not None,
            "cgroup": isolation.cgroups.spec(name) if isolation else None,  # type: ignore[typeddict-item]
            "seccomp": base64.b64encode(isolation.seccomp).decode() if isolation else None,
            "run_dir": run_dir,
            "file_name": language.file_name,
            "sdk_source": str(language.sdk_source),
            "sdk_file_name": language.sdk_file_name,
            "uid": uid,
            "gid": uid,
            "namespaces": self.config.namespaces,
            "dir_size": limits.run_dir_size,
            "cpu_time": limits.cpu_time,
            "memory": limits.memory,
            "processes": limits.processes,
            "file_size": limits.file_size,
            "open_files": limits.open_files,
            "nice": self.config.nice,
            "kill_grace": limits.kill_grace,
            "poll_interval": self.config.poll_interval,
            "parent_pid": os.getpid(),
        }
        return json.dumps(request).encode() + b"\n" + language.prepare_code(code)

    def sweep(self, uid: int | None) -> bool:
        """
        Kill whatever of C{uid} is left, and remove its runs' cgroups (root only; a no-op
        without a run uid).  Only for a uid this server holds.
        """
        if uid is None or not self.config.privileged:
            return True
        clean = sweep_uid(uid)
        if self.isolation is not None:
            self.isolation.cgroups.remove_leftovers(f"{uid}-")
        if not clean:
            _log.error("processes of run uid {uid} survive SIGKILL", uid=uid)
        return clean


# ---------------------------------------------------------------------------
# start-up checks


class _Probe(ProcessProtocol):
    """Runs a language's probe program through the launcher; fires with an error or None."""

    def __init__(self, clock: IReactorTime, timeout: float) -> None:
        self.done: Deferred[str | None] = Deferred()
        self._stdout = b""
        self._stderr = b""
        self._status = b""
        self._timer: IDelayedCall = clock.callLater(timeout, self._timed_out)

    def _timed_out(self) -> None:
        try:
            self.transport.signalProcess("TERM")  # type: ignore[union-attr]
        except ProcessExitedAlready:
            pass

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1:
            self._stdout = (self._stdout + data)[-4096:]
        elif childFD == 2:
            self._stderr = (self._stderr + data)[-4096:]
        elif childFD == 5:
            self._status += data

    def processEnded(self, reason: Failure) -> None:
        if self._timer.active():
            self._timer.cancel()
        events = [json.loads(line) for line in self._status.splitlines() if line.strip()]
        error = next((e["message"] for e in events if e.get("event") == "error"), None)
        exit_event = next((e for e in events if e.get("event") == "exit"), None)
        if error is None and exit_event is None:
            error = "the launcher did not report (timed out or crashed)"
        elif error is None and PROBE_TOKEN.encode() not in self._stdout:
            stderr = self._stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
            error = f"probe failed ({exit_event}): {' '.join(stderr)}"
        self.done.callback(error)


def check_languages(
    reactor: IReactorProcess, clock: IReactorTime, sandbox: Sandbox, timeout: float = 15.0
) -> Deferred[dict[str, str | None]]:
    """
    Run each language's probe program through the launcher, as a run uid, with the run
    limits: the whole path a user's program takes.  Fires with an error text (or None) per
    language.
    """
    results: dict[str, str | None] = {}
    pending: list[Deferred[None]] = []
    launchers = sandbox.launchers(reactor)
    for name, language in sandbox.languages.items():
        interpreter = sandbox.interpreter(language)
        if not os.access(interpreter, os.X_OK):
            results[name] = f"{interpreter} is not installed"
            continue
        uid = sandbox.uid_pool.acquire() if sandbox.uid_pool is not None else None
        if sandbox.uid_pool is not None and uid is None:
            results[name] = "no free run uid (every one is held by another process)"
            continue
        probe = _Probe(clock, timeout)
        try:
            request = sandbox.launch_request(
                language, language.probe_code, sandbox.new_run_name(uid), uid
            )
            transport = launchers.start(probe, sandbox.lock_fd(uid))
        except Exception as error:
            probe.done.callback(f"cannot spawn the launcher: {error}")
        else:
            transport.writeToChild(0, request)
            transport.closeChildFD(0)

        def record(error: str | None, name: str = name, uid: int | None = uid) -> None:
            results[name] = error
            if uid is not None and sandbox.uid_pool is not None:
                sandbox.sweep(uid)
                sandbox.uid_pool.release(uid)

        pending.append(probe.done.addCallback(record))
    return gatherResults(pending).addCallback(lambda _: results)


def start_sandbox(
    reactor: IReactorProcess,
    clock: IReactorTime,
    config: SandboxConfig,
    limits: RunLimits,
    languages: Mapping[str, Language] = LANGUAGES,
) -> Deferred[Sandbox]:
    """
    The start-up checks: the isolated sandbox's parts (or, where one is missing and the
    configuration allows it, the weak sandbox, logged as such; otherwise L{SandboxError}),
    the run directory (created or checked, 0711), leftovers of every run uid no other
    process holds killed (a previous server may have died mid-run; another live server's
    runs are never touched), then each language probed through the launcher.  Fires with
    a L{Sandbox} whose C{languages} are those that work; each one that does not is logged
    with the reason.
    """
    if config.privileged and os.geteuid() != 0:
        raise SandboxError("the privileged processor sandbox needs root")
    isolation, weakness = _find_isolation(config, limits)
    base = prepare_run_base(config.run_base)
    config = attrs.evolve(config, run_base=base)
    sandbox = Sandbox(
        config=config,
        limits=limits,
        languages=dict(languages),
        isolation=isolation,
        weakness=weakness,
    )
    if sandbox.uid_pool is not None:
        _sweep_leftovers(sandbox, sandbox.uid_pool)

    def decide(results: dict[str, str | None]) -> Sandbox:
        enabled = {name: languages[name] for name, error in results.items() if error is None}
        disabled = {name: error for name, error in results.items() if error is not None}
        for name, language in enabled.items():
            _log.info(
                "processor language {language} is on ({interpreter})",
                language=name,
                interpreter=sandbox.interpreter(language),
            )
        for name, reason in disabled.items():
            _log.warn("processor language {language} is off: {reason}", language=name, reason=reason)
        return attrs.evolve(sandbox, languages=enabled, disabled=disabled, uid_pool=sandbox.uid_pool)

    return check_languages(reactor, clock, sandbox).addCallback(decide)


def _find_isolation(config: SandboxConfig, limits: RunLimits) -> tuple[Isolation | None, str | None]:
    """The isolated sandbox, or why not (allowed only with C{allow_weak})."""
    try:
        if not config.privileged:
            raise IsolationUnavailable("the server does not run as root")
        isolation = find_isolation(limits.memory, config.bwrap)
    except IsolationUnavailable as error:
        if not config.allow_weak:
            raise SandboxError(
                f"the isolated sandbox cannot run here: {error} "
                "(--processor-allow-weak-sandbox runs programs without it)"
            ) from None
        _log.warn(
            "processor: WEAK SANDBOX ({reason}): user programs run without a filesystem of "
            "their own, cgroups or seccomp{detail}",
            reason=str(error),
            detail="" if config.privileged else ", with the server's own uid",
        )
        return None, str(error)
    _log.info("processor: isolated sandbox ({isolation})", isolation=isolation.describe())
    return isolation, None


def _sweep_leftovers(sandbox: Sandbox, pool: UidPool) -> None:
    """
    Kill what is left of each run uid that no live process holds; remove the cgroups of
    launchers that died waiting for a run.
    """
    if sandbox.isolation is not None:
        sandbox.isolation.cgroups.remove_abandoned_launchers()
    for uid in pool.claim_each_free():
        if live_processes_of(uid):
            _log.warn("killing leftover processes of run uid {uid}", uid=uid)
        sandbox.sweep(uid)
        pool.release(uid)
