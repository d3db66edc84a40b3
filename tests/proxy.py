"""A TCP proxy in front of a private redis-server that loses chosen replies."""

import contextlib
import select
import socket
import threading

from django_jobs.store.scripts import SCRIPTS


class LossyProxy:
    """A TCP proxy to a private redis-server's unix socket that, while armed, lets the request
    of a script call (``FCALL`` or ``EVALSHA``) through and then drops the connection when
    Redis's reply comes back: the script ran, its caller never hears so.

    ``losses_left`` arms it; ``only`` (script names) limits the losses to those scripts.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.losses_left = 0
        self.only: tuple[bytes, ...] = ()
        self.lost = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._pipe, args=(client,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _lose_this_reply(self, request: bytes) -> bool:
        with self.lock:
            if (
                (b"FCALL" in request or b"EVALSHA" in request)
                and self.losses_left > 0
                and (not self.only or any(sha in request for sha in self.only))
            ):
                self.losses_left -= 1
                return True
            return False

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX)
        try:
            upstream.connect(self.upstream)
        except OSError:  # Redis is down: so is the connection, as it would be without a proxy
            client.close()
            upstream.close()
            return
        losing = False
        # A side that closes with data unread resets the connection: the pipe ends as on a close.
        with client, upstream, contextlib.suppress(ConnectionResetError, BrokenPipeError):
            while not self.stopped.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                if client in ready:
                    request = client.recv(65536)
                    if not request:
                        return
                    losing = losing or self._lose_this_reply(request)
                    upstream.sendall(request)
                if upstream in ready:
                    reply = upstream.recv(65536)
                    if not reply:
                        return
                    if losing:
                        with self.lock:
                            self.lost += 1
                        return  # both connections close: the reply is lost
                    client.sendall(reply)

    def lose(self, count: int, *scripts: str) -> None:
        """Lose the replies of the next ``count`` calls of ``scripts`` (default: any script)."""
        with self.lock:
            # A script goes by its function's name, or by its SHA1 as a script.
            self.only = tuple(
                f"{name}\r\n".encode()
                for script in scripts
                for name in (SCRIPTS[script].function, SCRIPTS[script].sha)
            )
            self.losses_left = count

    def close(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.listener.close()
