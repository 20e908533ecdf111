"""Fault injection helpers: restart Redis empty (farm processes come from `sdfarm.farm_processes`)."""

from __future__ import annotations

from sdfarm.redis_server import RedisServer


def restart_redis(server: RedisServer) -> RedisServer:
    """Kill Redis outright and start an empty one on the same port: every queued message is gone."""
    server.kill()
    return RedisServer(server.directory, port=server.port).start()
