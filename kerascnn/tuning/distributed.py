"""The distributed search's plumbing: roles, the chief's gRPC server, the workers' client.

With `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`
set, the same search runs on several machines with keras-tuner's own gRPC
oracle: `distributed_role` reads the variables, the "chief" serves the oracle
(`serve_oracle`, after `check_port_free`) and workers run trials through
`WorkerClient`, which sends a heartbeat while they train. A worker silent for
`worker_timeout` seconds is given up for lost and its trial goes to the next
free worker, so the search still finishes.
"""

import errno
import os
import socket
import threading
import time
from concurrent import futures

import grpc
from keras_tuner.engine.trial import TrialStatus

from kerascnn import compat
from kerascnn.tuning.config import TuningError


class WorkerClient(compat.oracle_client_class()):
    """keras-tuner's gRPC client, plus a heartbeat during trials and a pause when told to wait.

    Args:
        client: the `OracleClient` keras-tuner gave the worker's tuner (it
            reads KERASTUNER_* to reach the chief).
        heartbeat: float, seconds between the heartbeats sent while a trial runs.
    """

    def __init__(self, client, heartbeat):
        super().__init__(compat.local_oracle(client))
        self.heartbeat = heartbeat
        self._stop_beat = threading.Event()

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
                except grpc.RpcError:
                    pass  # the chief may be restarting; the next beat tries again

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


def serve_oracle(oracle, ip, port, worker_timeout=60.0, poll=0.5):
    """Serves `oracle` to the workers over keras-tuner's gRPC service until the search ends.

    Unlike keras-tuner's own server loop this one refuses a port already in
    use (gRPC would otherwise share it through SO_REUSEPORT), gives the
    trials of silent workers to others, and returns as soon as every worker
    has been told to stop.

    The service has no authentication or encryption: bind it to loopback or
    a private cluster network, never to an address reachable from the internet.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    servicer = compat.add_oracle_servicer(oracle, server)
    address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
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
