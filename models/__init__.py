"""The data model shared by the API and the workers: tables, the job specification, the database session."""

from models.api_key import ApiKey
from models.base import Base
from models.export import Export
from models.idempotency import IdempotencyKey
from models.image import Image, ImageStatus
from models.job import Job
from models.key_options import KeyOptions
from models.webhook import WebhookAttempt, WebhookDelivery
from models.worker_record import WorkerRecord

__all__ = [
    "ApiKey",
    "Base",
    "Export",
    "IdempotencyKey",
    "Image",
    "ImageStatus",
    "Job",
    "KeyOptions",
    "WebhookAttempt",
    "WebhookDelivery",
    "WorkerRecord",
]
