"""
The launcher's reach when it stops a run in the weak sandbox without a run uid: its own
descendants, never the other processes of its uid (the server's).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from gameproto.processor import sandbox
from tests.processor_support import require_root, run_uids


class NoProgramYetTests(SynchronousTestCase):
    def test_stopping_a_run_whose_program_never_started(self) -> None:
        """
        A run whose program was never forked (child -1) is stopped: a process of the same
        uid that is not the launcher's descendant lives on.
        """
        require_root()  # to give both processes a uid of their own
        uid = run_uids()[-1]
        victim = os.fork()
        if victim == 0:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            time.sleep(30)
            os._exit(0)
        self.addCleanup(self._reap, victim)
        launcher = os.fork()
        if launcher == 0:
            code = 1
            try:
                # Imported while still root: the checkout may be unreadable to the uid.
                sys.path.insert(0, str(sandbox.LAUNCHER_PATH))
                from run_processes import RunProcesses  # the launcher's own module

                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                RunProcesses(None, None, None).signal(signal.SIGKILL, -1)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(launcher, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(os.waitpid(victim, os.WNOHANG), (0, 0), "the other process was killed")

    def _reap(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ChildProcessError, ProcessLookupError):
            pass


class SweepAtTheProcessCapTests(SynchronousTestCase):
    def test_no_helper_when_the_run_is_at_its_cap(self) -> None:
        """
        A launcher waiting inside its run's cgroup cannot fork while the run sits at its
        process cap (EAGAIN): the run uid's helper is skipped for this round of the sweep,
        not a crash that would leave the run's processes behind unreported.
        """
        sys.path.insert(0, str(sandbox.LAUNCHER_PATH))
        self.addCleanup(sys.path.remove, str(sandbox.LAUNCHER_PATH))
        from run_processes import RunProcesses  # the launcher's own module

        def refused() -> int:
            raise BlockingIOError(11, "Resource temporarily unavailable")

        self.patch(os, "fork", refused)
        uid = run_uids()[-1]
        self.assertIsNone(RunProcesses(uid, uid, None).as_run_uid_kill_all(signal.SIGKILL))
