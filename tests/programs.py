"""Client programs (``python main.py -c NAME ...``) as subprocesses whose output a test follows."""

import signal
import subprocess
import sys
import threading
import time

from procs import REPO


class Program:
    """``python main.py -c ARGS`` with stdin and stdout piped; stdout lines collected in ``lines``,
    stderr kept apart (a clean program writes nothing there)."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        # Started as a shell starts a foreground program, Ctrl-C (SIGINT) at its default: a test
        # run started in the background (`make test &`: SIGINT ignored, which children inherit)
        # can still interrupt it.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "main.py", "-c", *args], cwd=REPO, env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, into), daemon=True)
                         for stream, into in ((self.process.stdout, self.lines), (self.process.stderr, self.errors))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, text: str, after: int = 0, timeout: float = 10.0) -> str:
        """The first line from index ``after`` on that contains ``text``."""
        return self.wait_until(lambda lines: next((line for line in lines[after:] if text in line), None),
                               f"a line with {text!r}", timeout)

    def wait_until(self, found, what: str, timeout: float = 10.0):
        """Poll ``found(lines)`` until it returns something other than None; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = found(list(self.lines))
            if result is not None:
                return result
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {what}; exit {self.process.poll()}; stdout {self.lines}; stderr {self.errors}")

    def interrupt(self, timeout: float = 10.0) -> int:
        """Ctrl-C (SIGINT); the exit status."""
        self.process.send_signal(signal.SIGINT)
        return self.finish(timeout)

    def finish(self, timeout: float = 20.0) -> int:
        """Close stdin, wait for the exit; its status."""
        if not self.process.stdin.closed:
            self.process.stdin.close()
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.finish()
