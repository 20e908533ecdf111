"""The API's handles on the farm (database, store, queue, catalog), made once per app."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.job_status import StatusCache
from models.catalog import ModelCatalog
from models.db import make_engine, make_session_factory
from models.image_store import ImageStore, open_image_store
from models.queue import RenderQueue, make_celery
from models.settings import Settings


@dataclass
class Farm:
    """Everything a request handler needs, passed in rather than reached for globally."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ImageStore
    queue: RenderQueue
    catalog: ModelCatalog
    status_cache: StatusCache = field(default_factory=lambda: StatusCache(0))

    @classmethod
    def from_settings(cls, settings: Settings) -> Farm:
        """Create engines and clients lazily (nothing connects until first used)."""
        engine = make_engine(settings.resolved_database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            store=open_image_store(settings),
            queue=RenderQueue(make_celery(settings), settings.redis_url),
            catalog=ModelCatalog(settings.resolved_models_dir, settings.model),
            status_cache=StatusCache(settings.status_cache_seconds),
        )


def farm() -> Farm:
    """The current app's Farm."""
    return current_app.extensions["sdfarm"]


def db() -> Session:
    """The request's database session, closed when the request ends."""
    if "db" not in g:
        g.db = farm().sessions()
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    """Teardown: release the request's session."""
    session = g.pop("db", None)
    if session is not None:
        session.close()
