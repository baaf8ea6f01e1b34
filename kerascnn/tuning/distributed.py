"""The distributed search's plumbing: roles, the chief's gRPC server, the workers' client.

With `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`
set, the same search runs on several machines with keras-tuner's own gRPC
oracle: `distributed_role` reads the variables, the "chief" serves the oracle
(`serve_oracle`, after `check_port_free`) and workers run trials through
`WorkerClient`, which sends a heartbeat while they train. A worker silent for
`worker_timeout` seconds is given up for lost and its trial goes to the next
free worker, so the search still finishes.

A worker first joins (`ChiefLink.join`): it waits for the chief, however
late the chief starts, and the chief checks that the worker works in its
folder and on the same search (`tuning.project.check_worker`), or refuses it.
From then on a chief that does not answer for `worker_timeout` seconds is
lost: the worker stops, in the middle of a trial too.
"""

import errno
import json
import os
import socket
import threading
import time
from concurrent import futures

import grpc
from keras_tuner.engine.trial import TrialStatus

from kerascnn import compat
from kerascnn.tuning.config import SearchFailed, TuningError

CHIEF_WAIT = 3600  # seconds a worker waits for a chief that is not up yet: keras-tuner's own (its client's TIMEOUT)
# The chief's check of a worker that joins, a gRPC method beside the oracle's service.
JOIN_SERVICE, JOIN_METHOD = "kerascnn.tuning.Search", "Join"


def target(address):
    """"ip:port" of `address`, (ip, port); an IPv6 address in brackets."""
    ip, port = address
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class ChiefLost(BaseException):
    """Raised into the thread running a worker's search when its heartbeat finds the chief lost: a
    `BaseException`, so that keras-tuner does not take it for the trial's own failure and go on."""


class ChiefLink:
    """A worker's line to the chief: it joins, then each call to the chief has the worker's deadline.

    Once joined, a call is asked again while the chief does not answer, until
    `worker_timeout` seconds have passed since the chief last answered (a
    sixth of it at least); then the chief is lost: the call raises
    `SearchFailed` with `lost`, the message `tune.py` exits with, and if the
    heartbeat found it, the search's own thread is stopped (`ChiefLost`).

    Args:
        address: (ip, port) of the chief.
        worker_timeout: float, seconds (`--worker-timeout`).
    """

    def __init__(self, address, worker_timeout):
        self.target, self.timeout = target(address), worker_timeout
        self.last_answer = None  # time.monotonic() of the chief's last answer
        self.lost = None  # why this worker gave the chief up, once it has
        self.thread = threading.get_ident()  # the thread that runs the search
        self._losing = threading.Lock()

    def join(self, request):
        """Waits for the chief (up to `CHIEF_WAIT` seconds), then sends it `request()` to be checked.

        Returns:
            None when the chief takes this worker, else its refusal, in words.
        """
        with grpc.insecure_channel(self.target) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=CHIEF_WAIT)
            except grpc.FutureTimeoutError:
                raise SearchFailed(f"No chief answered at {self.target} in {CHIEF_WAIT // 60} minutes; start the "
                                   f"chief (KERASTUNER_TUNER_ID=chief), then this worker again.") from None
            self.last_answer = time.monotonic()
            join = channel.unary_unary(f"/{JOIN_SERVICE}/{JOIN_METHOD}")  # bytes in, bytes out
            try:
                reply = self.call(join, json.dumps(request()).encode())
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                raise TuningError(f"The chief at {self.target} does not check its workers: it is an older tune.py. "
                                  f"Run the same tune.py on every machine. Received: KERASTUNER_ORACLE_PORT="
                                  f"{self.target.rsplit(':', 1)[1]}") from None
        return json.loads(reply)["refused"]

    def call(self, method, request, **kwargs):
        """`method(request, **kwargs)` on the chief within the worker's deadline; raises `SearchFailed` when the
        chief is lost (see the class)."""
        give_up = max(self.last_answer + self.timeout, time.monotonic() + self.timeout / 6)
        while True:
            kwargs.update(timeout=max(give_up - time.monotonic(), 0.1), wait_for_ready=True)
            try:
                response = method(request, **kwargs)
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                    raise
                if time.monotonic() < give_up:  # refused at once (the connection broke): ask again
                    time.sleep(min(1.0, give_up - time.monotonic()))
                    continue
                if self._lose() and threading.get_ident() != self.thread:  # the heartbeat found it first
                    compat.raise_in_thread(self.thread, ChiefLost)
                raise SearchFailed(self.lost) from None
            self.last_answer = time.monotonic()
            return response

    def _lose(self):
        """Gives the chief up; True for the first caller (`lost` is then its message)."""
        with self._losing:
            if self.lost is not None:
                return False
            silent = time.monotonic() - self.last_answer
            self.lost = (
                f"This worker lost the chief at {self.target}: no answer for {silent:.0f} s (--worker-timeout "
                f"{self.timeout:g}). Start the chief again with the same command, then this worker: the search "
                f"resumes, and the trial this worker was running is run again."
            )
            return True


class WorkerClient(compat.oracle_client_class()):
    """keras-tuner's gRPC client, plus the worker's deadlines, a heartbeat during trials and a pause when told
    to wait.

    Every call goes through `link` (`ChiefLink.call`). The heartbeat, which
    runs while a trial trains, stops the trial when it finds the chief lost:
    `ChiefLost` is raised in the search's thread, which `tuning.search`
    turns into the `SearchFailed` of `link.lost`.

    Args:
        client: the `OracleClient` keras-tuner gave the worker's tuner (it
            reads KERASTUNER_* to reach the chief).
        link: the worker's `ChiefLink`, joined.
    """

    def __init__(self, client, link):
        super().__init__(compat.local_oracle(client))
        self.link = link
        self.heartbeat = link.timeout / 6
        self._stop_beat = threading.Event()
        compat.route_client_calls(self, link.call)

    def create_trial(self, tuner_id):
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.IDLE:
            time.sleep(1.0)  # keras-tuner's loop asks again at once
        elif trial.status == TrialStatus.RUNNING:
            self._beat(trial.trial_id)
        return trial

    def end_trial(self, trial):
        self._stop_beat.set()
        super().end_trial(trial)

    def _beat(self, trial_id):
        self._stop_beat.set()
        stop = self._stop_beat = threading.Event()

        def beat():
            while not stop.wait(self.heartbeat):
                try:
                    self.get_trial(trial_id)  # the chief notes who asked
                except SearchFailed:  # the chief is lost, and the search stopped (`ChiefLink.call`)
                    return
                except grpc.RpcError:
                    pass  # an error of the chief's; the next beat tries again

        threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True).start()


def distributed_role(environ=None):
    """(role, (ip, port)) from keras-tuner's variables; (None, None) on one machine.

    The role is "chief" when `KERASTUNER_TUNER_ID` contains "chief" (keras-tuner's
    own rule) and "worker" otherwise.

    Raises:
        TuningError: the variables are incomplete or the port is not a port.
    """
    env = os.environ if environ is None else environ
    ip = env.get("KERASTUNER_ORACLE_IP")
    if not ip:
        return None, None
    for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if not env.get(name):
            raise TuningError(
                f"KERASTUNER_ORACLE_IP is set, so this is a distributed search, but {name} is not; "
                f"set all three (see docs/TUNING.md). Received: KERASTUNER_ORACLE_IP={ip!r}, {name}={env.get(name)!r}"
            )
    text = env["KERASTUNER_ORACLE_PORT"]
    port = int(text) if text.isdigit() else 0
    if not 1 <= port <= 65535:
        raise TuningError(
            f"`KERASTUNER_ORACLE_PORT` must be a port number 1-65535. Received: KERASTUNER_ORACLE_PORT={text!r}"
        )
    return ("chief" if "chief" in env["KERASTUNER_TUNER_ID"] else "worker"), (ip, port)


def check_port_free(ip, port):
    """Raises `TuningError` unless the chief can listen on `ip:port`."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise TuningError(
                    f"Port {port} on {ip} is already in use, so the chief cannot serve the oracle there; "
                    f"stop what holds it or choose another port. Received: KERASTUNER_ORACLE_PORT={port}"
                ) from None
            raise TuningError(
                f"The chief cannot listen on {ip}:{port} ({e.strerror}); KERASTUNER_ORACLE_IP must be an "
                f"address of this machine. Received: KERASTUNER_ORACLE_IP={ip!r}"
            ) from None


def serve_oracle(oracle, ip, port, worker_timeout=60.0, poll=0.5, check_worker=None):
    """Serves `oracle` to the workers over keras-tuner's gRPC service until the search ends.

    Unlike keras-tuner's own server loop this one refuses a port already in
    use (gRPC would otherwise share it through SO_REUSEPORT), checks each
    worker that joins (`check_worker(request)`: None, or why it is refused),
    gives the trials of silent workers to others, and returns as soon as
    every worker has been told to stop.

    The service has no authentication or encryption: bind it to loopback or
    a private cluster network, never to an address reachable from the internet.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    servicer = compat.add_oracle_servicer(oracle, server)
    if check_worker is not None:
        server.add_generic_rpc_handlers((_join_service(check_worker),))
    address = target((ip, port))
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        check_port_free(ip, port)  # says why, if it can
        raise TuningError(f"The chief cannot listen on {address}. Received: KERASTUNER_ORACLE_PORT={port}")
    server.start()
    print(f"Chief: serving the oracle on {address}; waiting for workers.", flush=True)
    try:
        while not (servicer.stop_triggered and oracle.finished()):
            time.sleep(poll)
            oracle.reap_lost_workers(worker_timeout)
    finally:
        server.stop(grace=2).wait()


def _join_service(check_worker):
    """The chief's Join method (gRPC's generic handler: JSON bytes in and out)."""

    def join(request, context):
        request = json.loads(request)
        refusal = check_worker(request)
        if refusal is not None:
            print(f"Refused worker {request.get('tuner_id')}: {refusal}", flush=True)
        return json.dumps({"refused": refusal}).encode()

    return grpc.method_handlers_generic_handler(JOIN_SERVICE, {JOIN_METHOD: grpc.unary_unary_rpc_method_handler(join)})
