"""The private PostgreSQL server the fault tests restart at will (it lives in sdfarm/, shared with the benchmarks)."""

from sdfarm.postgres_server import PostgresServer, postgres_bin_dir

__all__ = ["PostgresServer", "postgres_bin_dir"]
