"""A small HTTP client over a unix socket, and a fixture-friendly hearth API process."""
import http.client
import json
import os
import socket
import subprocess
import time

from conftest import HEARTH


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Api:
    """One hearth process serving its API on a socket in `tmp`; `prefix` runs it through
    another command (e.g. ip netns exec NS)."""

    def __init__(self, tmp, *args, prefix=(), env=None):
        self.sock = str(tmp / "api.sock")
        # hearth writes through these; the test reads the files by path. Seeking these
        # objects would move hearth's own write offset (one open file description), so
        # output written meanwhile would land over earlier output.
        self.out_path, self.err_path = tmp / "stdout", tmp / "stderr"
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([*map(str, prefix), str(HEARTH), "--api-sock", self.sock,
                                      *map(str, args)],
                                     stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=self.err,
                                     env=None if env is None else {**os.environ, **env})
        deadline = time.monotonic() + 10
        while not self._accepting():
            assert self.proc.poll() is None, self.stderr()
            assert time.monotonic() < deadline, "API socket never accepted"
            time.sleep(0.005)

    def _accepting(self):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def request(self, method, path, body=None, raw=None, timeout=10):
        c = UnixHTTPConnection(self.sock, timeout=timeout)
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        return r.status, (json.loads(text) if text else None)

    def get(self, path):
        return self.request("GET", path)

    def put(self, path, body):
        return self.request("PUT", path, body)

    def patch(self, path, body):
        return self.request("PATCH", path, body)

    def stdout(self):
        return self.out_path.read_bytes().decode(errors="replace")

    def stderr(self):
        return self.err_path.read_bytes().decode(errors="replace")

    def wait_stdout(self, needle, timeout=20):
        deadline = time.monotonic() + timeout
        while needle not in self.stdout():
            assert time.monotonic() < deadline, f"{needle!r} not in {self.stdout()!r}"
            time.sleep(0.02)

    def wait_state(self, state, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            _, info = self.get("/")
            if info["state"] == state:
                return info
            assert time.monotonic() < deadline, info
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        self.err.close()
        return self.proc.returncode
