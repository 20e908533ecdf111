"""A real S3 endpoint for tests: moto's standalone server in a subprocess, used only over HTTP.

Nothing in sdfarm knows it is moto: the farm gets an endpoint URL, a bucket and credentials in
the standard AWS variables, exactly as it would for MinIO. `StoreProxy` sits between the farm
and the server so a test can take the store off the network and bring it back without losing
its objects (restarting moto would empty it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

ACCESS_KEY, SECRET_KEY, REGION = "sdfarm-test", "sdfarm-test-secret", "us-east-1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class S3Server:
    """moto_server on a free port; `auth_after` turns on IAM credential checks after that many calls."""

    def __init__(self, log_path: Path, auth_after: int | None = None):
        self.port = free_port()
        self.log_path = log_path
        self.auth_after = auth_after
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The endpoint URL (SDFARM_S3_ENDPOINT_URL)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        """Start the server and wait until it answers."""
        env = {**os.environ}
        if self.auth_after is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self.auth_after)
        self._log = self.log_path.open("ab")
        moto = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        _wait_for_port(self.port, 30)
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self._log.close()


def client(endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
    """A boto3 S3 client for the test's own checks (listing, creating buckets)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def aws_env(access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> dict[str, str]:
    """The standard AWS variables a farm process reads its credentials from."""
    return {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key, "AWS_DEFAULT_REGION": REGION}


def bucket_keys(s3, bucket: str, prefix: str = "") -> set[str]:
    """Every key in the bucket under prefix."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {entry["Key"] for page in pages for entry in page.get("Contents", [])}


class StoreProxy:
    """A TCP forwarder to the S3 server that a test can take down (connections refused) and bring up."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The endpoint URL the farm uses."""
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> StoreProxy:
        """Listen and forward."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self) -> None:
        """Stop listening and cut every open connection, as a store that went off the network."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for connection in self._connections:
                _close(connection)
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _close(downstream)
                continue
            with self._lock:
                self._connections += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        _close(sink)
        _close(source)


def _close(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.close()
