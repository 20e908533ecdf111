"""Serve the Flask app with gunicorn (threads, so slow clients do not block each other)."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from models.logging_config import gunicorn_logconfig
from models.settings import Settings


class _GunicornApp(BaseApplication):
    def __init__(self, settings: Settings, options: dict):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from api import create_app

        return create_app(self.settings)


def serve(settings: Settings, processes: int = 2, threads: int = 8) -> None:
    """Run the API until interrupted."""
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": processes,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        # gunicorn's own lines (start-up, workers, access log) in the farm's format, plain or JSON.
        "logconfig_dict": gunicorn_logconfig(settings.log_format, settings.log_level),
        # The app is built in each worker process after the fork: no shared sockets.
        "preload_app": False,
    }
    _GunicornApp(settings, options).run()
