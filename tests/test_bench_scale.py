"""The scale-out benchmark (benchmarks/bench_scale.py): its counters against known traffic
(a byte-counting relay in front of an echo server, SQLAlchemy's statement events on a known
number of statements, the gRPC server's calls against a known number of storage calls), and a
smoke run of ``--quick`` that prints both tables. No timing is asserted."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from benchmarks.bench_scale import PG_BIN, CountingPool, Relay, Statements

ROOT = Path(__file__).resolve().parents[1]


def _echo_server() -> int:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return int(server.getsockname()[1])


def _recv(sock: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        got += sock.recv(n - len(got))
    return got


def test_relay_counts_bytes_and_round_trips():
    relay = Relay(_echo_server())
    messages = [b"x" * 10, b"hello" * 300, b"y"]
    with socket.create_connection(("127.0.0.1", relay.port)) as client:
        for m in messages:
            client.sendall(m)
            assert _recv(client, len(m)) == m.upper()
    total = sum(map(len, messages))
    assert (relay.up, relay.down, relay.trips) == (total, total, len(messages))
    relay.reset()
    assert (relay.up, relay.down, relay.trips) == (0, 0, 0)
    relay.close()


def test_statement_events_count_every_statement(tmp_path):
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    sql = Statements(engine)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE t (x INTEGER)"))
        for i in range(7):
            conn.execute(sqlalchemy.text("INSERT INTO t VALUES (:x)"), {"x": i})
    assert (sql.statements, sql.commits) == (8, 1)
    sent = len(b"CREATE TABLE t (x INTEGER)") + len(repr(()).encode())
    sent += sum(len(b"INSERT INTO t VALUES (?)") + len(repr((i,)).encode()) for i in range(7))
    assert sql.bytes == sent


def test_counting_pool_counts_the_calls_a_proxy_serves():
    pytest.importorskip("grpc", reason="grpcio not installed (pip install 'optimkit[ray]')")
    from optuna.storages import GrpcStorageProxy, InMemoryStorage, run_grpc_proxy_server

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    pool = CountingPool()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threading.Thread(
        target=run_grpc_proxy_server,
        args=(InMemoryStorage(),),
        daemon=True,
        kwargs={"host": "127.0.0.1", "port": port, "thread_pool": pool},
    ).start()
    client = GrpcStorageProxy(host="127.0.0.1", port=port)
    client.wait_server_ready(timeout=60)
    start = pool.calls
    study_id = client.create_new_study([optuna.study.StudyDirection.MINIMIZE], "c")
    for i in range(5):
        client.set_study_system_attr(study_id, f"k{i}", i)
    assert client.get_study_system_attrs(study_id) == {f"k{i}": i for i in range(5)}
    assert pool.calls - start == 7
    client.close()


@pytest.mark.slow
def test_quick_run_prints_both_tables():
    cmd = [sys.executable, "-m", "benchmarks", "scale", "--quick"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "trials per second" in out and "vs 1 worker" in out
    assert "storage cost per trial" in out
    rows = ["SQLite", "journal file"] + (["PostgreSQL", "via gRPC"] if PG_BIN else [])
    for row in rows:
        assert row in out
