"""A reply Redis sent but the caller never got: the job it stored exists once, whether the
caller was told (a second send went through) or not (``RedisUnavailable``)."""

import select
import socket
import threading

import pytest

from django_jobs import JobPriority, RedisUnavailable
from tests.census import assert_census
from tests.testapp import jobs


class LossyProxy:
    """A TCP proxy to a private redis-server's unix socket that, while armed, lets the request
    of an ``EVALSHA`` through and then drops the connection when Redis's reply comes back:
    the script ran, its caller never hears so."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.losses_left = 0
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
            if b"EVALSHA" in request and self.losses_left > 0:
                self.losses_left -= 1
                return True
            return False

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(self.upstream)
        losing = False
        with client, upstream:
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

    def close(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def proxy(private_redis, configure):
    """This test process talks to its private Redis through a :class:`LossyProxy`, whose
    scripts are loaded (a first EVALSHA answers NOSCRIPT, which must not be lost)."""
    lossy = LossyProxy(str(private_redis.socket))
    configure(REDIS_URL=lossy.url, REDIS_SOCKET_TIMEOUT=2)
    yield lossy
    lossy.close()


def test_a_lost_enqueue_reply_stores_the_job_once(proxy, queue, private_redis):
    warm_up = jobs.add.delay(0, 0)
    proxy.losses_left = 1

    handle = jobs.add.delay(1, 2)

    assert proxy.lost == 1
    assert handle.refresh().job.args == [1, 2]
    assert_census(
        queue,
        private_redis.client(),
        {warm_up.id: "queue:default:normal", handle.id: "queue:default:normal"},
    )


def test_a_lost_enqueue_reply_stores_a_delayed_job_once(proxy, queue, private_redis):
    jobs.add.delay(0, 0)
    proxy.losses_left = 1

    handle = jobs.add.using(delay=60).delay(1, 2)

    assert proxy.lost == 1
    assert private_redis.client().zrange(queue.keys.scheduled, 0, -1) == [handle.id]


def test_lost_replies_to_every_send_raise_but_store_the_job_once(proxy, queue, private_redis):
    warm_up = jobs.add.delay(0, 0)
    proxy.losses_left = 100
    client = private_redis.client()

    with pytest.raises(RedisUnavailable):
        queue.enqueue("tests.testapp.jobs.add", [1, 2])

    assert proxy.lost >= 2  # sent at least twice, by redis-py's retries and ours
    normal = queue.keys.queue("default", JobPriority.NORMAL)
    stored = set(client.lrange(normal, 0, -1)) - {warm_up.id}
    assert len(stored) == 1
    (job_id,) = stored
    assert_census(
        queue, client, {warm_up.id: "queue:default:normal", job_id: "queue:default:normal"}
    )
