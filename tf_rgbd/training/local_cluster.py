"""A multi-worker cluster on one machine: N processes of one command, each with the
``TF_CONFIG`` that ``tf.distribute.MultiWorkerMirroredStrategy`` reads, on free 127.0.0.1 ports.

The library side of ``training/launch_local.py``::

    code = launch(["python", "-m", "training.train_recognizer", "--strategy=multi_worker", ...],
                  num_workers=2)

Every worker's output lines are prefixed ``[worker i]`` (stdout and stderr merged, in arrival
order). The first worker that exits non-zero decides the exit status: the others are killed
(their whole process groups, SIGKILL) and :func:`launch` returns that status (128 + signal
number for a worker killed by a signal, as a shell reports it). SIGTERM / SIGINT to the
launcher are forwarded to every worker (so a preempted launcher lets the workers save their
preemption checkpoint) and the launcher then waits for them.

On a real cluster the launcher (Kubernetes, Vertex AI, Slurm) sets ``TF_CONFIG`` itself; see
BUILD.md "Training on several machines". This module only imitates it on loopback.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Mapping, Optional, Sequence

LOOPBACK = "127.0.0.1"


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now.

    The sockets are held open together while choosing (so the ports are distinct) and closed
    before returning; a port could in principle be taken by another process before a worker
    binds it (the worker then fails with "address already in use", and so does the launch).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def cluster_spec(ports: Sequence[int], host: str = LOOPBACK) -> dict:
    """``{"worker": ["host:port", ...]}``: worker 0 is the chief (no separate chief task)."""
    return {"worker": [f"{host}:{port}" for port in ports]}


def tf_config(cluster: Mapping, index: int, task_type: str = "worker") -> str:
    """The ``TF_CONFIG`` JSON text of task ``task_type``/``index`` of ``cluster``."""
    if not 0 <= index < len(cluster.get(task_type, ())):
        raise ValueError(f"no task {task_type}:{index} in cluster {dict(cluster)}")
    return json.dumps({"cluster": dict(cluster), "task": {"type": task_type, "index": index}})


def _exit_status(returncode: int) -> int:
    """A Popen return code as a shell reports it (killed by signal s -> 128 + s)."""
    return 128 - returncode if returncode < 0 else returncode


class LocalCluster:
    """N worker processes of one command with a loopback ``TF_CONFIG`` each.

    Args:
      command: the program and its arguments (run as is by every worker).
      num_workers: processes to start (>= 1).
      env: the workers' environment (default: this process's); ``TF_CONFIG`` is set per worker.
      output: where the prefixed lines go (default ``sys.stdout``).
      cwd: the workers' working directory.
    """

    def __init__(self, command: Sequence[str], num_workers: int,
                 env: Optional[Mapping[str, str]] = None, output: Optional[IO[str]] = None,
                 cwd: Optional[str] = None):
        if not command:
            raise ValueError("no command to run: give it after '--', e.g. launch_local "
                             "--num_workers=2 -- python -m training.train_recognizer ...")
        if num_workers < 1:
            raise ValueError(f"--num_workers must be >= 1, got {num_workers}")
        # "python" means this interpreter (the venv's), whatever PATH holds.
        self.command = [sys.executable if index == 0 and part in ("python", "python3") else part
                        for index, part in enumerate(command)]
        self.num_workers = int(num_workers)
        self.env = dict(os.environ if env is None else env)
        self.output = output or sys.stdout
        self.cwd = cwd
        self.cluster = cluster_spec(free_ports(self.num_workers))
        self.processes: list[subprocess.Popen] = []
        self._pumps: list[threading.Thread] = []
        self._write_lock = threading.Lock()

    def start(self) -> "LocalCluster":
        for index in range(self.num_workers):
            env = dict(self.env, TF_CONFIG=tf_config(self.cluster, index))
            process = subprocess.Popen(
                self.command, env=env, cwd=self.cwd, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, bufsize=1,
                start_new_session=True)  # its own process group: killed as a whole
            self.processes.append(process)
            pump = threading.Thread(target=self._pump, args=(index, process), daemon=True,
                                    name=f"worker-{index}-output")
            pump.start()
            self._pumps.append(pump)
        return self

    def _pump(self, index: int, process: subprocess.Popen) -> None:
        prefix = f"[worker {index}] "
        for line in process.stdout:
            with self._write_lock:
                self.output.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
                self.output.flush()

    def signal_all(self, signal_number: int) -> None:
        """Sends ``signal_number`` to every live worker's process group."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal_number)

    def wait(self, poll_seconds: float = 0.1) -> int:
        """Waits for the workers; returns 0, or the first non-zero exit status (the other
        workers are then killed)."""
        try:
            while True:
                codes = [process.poll() for process in self.processes]
                failed = [(index, code) for index, code in enumerate(codes)
                          if code not in (None, 0)]
                if failed:
                    index, code = failed[0]
                    self._say(f"worker {index} exited with status {_exit_status(code)}; "
                              "stopping the other workers")
                    self.signal_all(signal.SIGKILL)
                    for process in self.processes:
                        process.wait()
                    return _exit_status(code)
                if all(code == 0 for code in codes):
                    return 0
                time.sleep(poll_seconds)
        finally:
            for pump in self._pumps:
                pump.join(timeout=5)

    def _say(self, message: str) -> None:
        with self._write_lock:
            self.output.write(f"[launch_local] {message}\n")
            self.output.flush()


def launch(command: Sequence[str], num_workers: int, env: Optional[Mapping[str, str]] = None,
           output: Optional[IO[str]] = None, cwd: Optional[str] = None) -> int:
    """Runs ``command`` as ``num_workers`` local workers; returns the cluster's exit status.

    SIGTERM / SIGINT received by this process (main thread only) are forwarded to the workers.
    """
    cluster = LocalCluster(command, num_workers, env, output, cwd)
    forwarded = (signal.SIGTERM, signal.SIGINT)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for number in forwarded:
            previous[number] = signal.signal(
                number, lambda signal_number, frame: cluster.signal_all(signal_number))
    try:
        cluster.start()
        cluster._say(f"{num_workers} worker(s) on {', '.join(cluster.cluster['worker'])}: "
                     f"{' '.join(cluster.command)}")
        for index, process in enumerate(cluster.processes):
            cluster._say(f"worker {index} pid {process.pid}")
        return cluster.wait()
    except BaseException:
        cluster.signal_all(signal.SIGKILL)
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
