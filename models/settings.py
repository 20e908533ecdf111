"""The one typed settings object, read from `SDFARM_*` environment variables at startup."""

from __future__ import annotations

import ipaddress
import re
import socket
from functools import cached_property
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Settings that take one of a few words: each word allowed, in the order the error message lists them.
CHOICES = {
    "auth": ("auto", "on", "off"),
    "overlap": ("auto", "true", "false"),
    "nsfw_display": ("blur", "hide", "show"),
    "log_format": ("plain", "json"),
}


class Settings(BaseSettings):
    """Configuration shared by the API, the workers and the CLI; see the README's table."""

    model_config = SettingsConfigDict(env_prefix="SDFARM_", extra="ignore")

    data_dir: Path = Field(default=Path("./data"), description="Where the SQLite file, objects and built models live.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in the data dir.")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker.")
    object_dir: Path | None = Field(default=None, description="Image store root; default <data_dir>/objects.")
    model: str | None = Field(default=None, description="Default model: a name in the models dir or a path.")
    models_dir: Path | None = Field(default=None, description="Folder of diffusers folders and .safetensors files.")
    lora_dir: Path | None = Field(default=None, description="LoRA .safetensors files; default <data_dir>/loras.")
    nsfw_display: str = Field(default="blur", description="How the gallery shows flagged images: blur, hide or show.")
    max_batch: int = Field(default=4, ge=1, le=64, description="Most images in one pipeline call.")
    max_images_per_job: int = Field(default=10_000, ge=1, description="Cap on images in one job.")
    max_prompt_chars: int = Field(default=2_000, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    lease_seconds: float = Field(default=30.0, gt=0, description="How long a claimed batch is held without renewal.")
    max_attempts: int = Field(default=3, ge=1, description="Tries per image before it is failed.")
    batch_soft_time_limit: float = Field(default=600.0, gt=0)
    batch_hard_time_limit: float = Field(default=660.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0, description="How often a worker writes its row.")
    worker_offline_seconds: float = Field(
        default=20.0, gt=0, description="A worker silent this long is shown offline (several missed heartbeats)."
    )
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N.")
    compile: bool = Field(default=False, description="torch.compile the UNet (CUDA; warm-up at load, cached on disk).")
    runner: str = Field(default="diffusers", description="diffusers, or module:callable (tests, benchmarks).")
    cpu_threads: int = Field(default=0, ge=0, description="Torch threads per CPU worker; 0 means all cores.")
    auth: str = Field(default="auto", description="auto (on unless bound to loopback), on or off.")
    gallery_public: bool = Field(
        default=False, description="With auth on, let anyone browse the gallery read-only (no submit or cancel)."
    )
    rate_limit_per_minute: int = Field(default=600, ge=0, description="Requests per minute per API key; 0: no limit.")
    auth_failures_per_minute: int = Field(
        default=30, ge=0, description="401 answers per minute per client address before it gets 429; 0: no limit."
    )
    max_queued_per_key: int = Field(default=100_000, ge=1, description="Images one key may have waiting at once.")
    a1111_api: bool = Field(default=True, description="Serve the AUTOMATIC1111-compatible API under /sdapi/v1/.")
    a1111_timeout_seconds: float = Field(
        default=600.0, gt=0, description="How long an A1111 txt2img/img2img request waits for its job."
    )
    webhook_secret: str | None = Field(
        default=None, description="Farm-wide Standard Webhooks secret (whsec_...), for keys without their own."
    )
    webhook_allow_private: bool = Field(
        default=False, description="Let webhooks reach loopback and private addresses (closed networks only)."
    )
    webhook_max_attempts: int = Field(default=10, ge=1, le=50, description="Attempts per webhook delivery.")
    webhook_retry_base_seconds: float = Field(
        default=5.0, gt=0, description="First retry delay; each next one is 3x longer, up to 8 hours."
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60, description="Connect and read timeout.")
    metrics_token: str | None = Field(
        default=None, description="If set, /metrics answers only `Authorization: Bearer <token>`; else it is open."
    )
    delete_grace_seconds: float = Field(
        default=86_400.0, ge=0, description="How long a deleted image can be restored before its files are removed."
    )
    status_cache_seconds: float = Field(
        default=1.0, ge=0, le=60, description="How old a polled job status may be (per API process); 0: always fresh."
    )
    events_max_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="Longest a job's event stream stays open; clients reconnect."
    )
    events_streams_per_process: int = Field(
        default=4, ge=0, le=64, description="Event streams one API process serves at once (each holds a thread)."
    )
    log_format: str = Field(default="plain", description="plain or json (one JSON object per line).")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    allowed_hosts: str = Field(
        default="",
        description="With auth off, Host names the API answers besides loopback ones: comma-separated; "
        "`.example.com` also covers its subdomains, `*` any name (turns the DNS-rebinding guard off).",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    overlap: str = Field(
        default="auto",
        description="Work beside the render (saving the last batch, claiming the next): true, false, or auto "
        "(on a GPU, which would otherwise wait for it; not on the CPU, where it takes the renderer's own cores).",
    )
    tune: str = Field(
        default="auto",
        description="Warm-up tuning of how a GPU worker runs: auto (every candidate on CUDA, none on the CPU), off, "
        "or a comma list of eager, channels_last, fused_qkv, compile, compile_channels_last, compile_fused_qkv, "
        "cuda_graphs.",
    )
    object_store: str | None = Field(
        default=None, description="Image store: s3://bucket/prefix, file:///path or a path; default the object dir."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 API endpoint for a store other than AWS (MinIO, Ceph RGW, R2...)."
    )
    object_redirects: bool = Field(
        default=False, description="Serve image files by short-lived presigned redirects to the store (S3 only)."
    )
    object_redirect_seconds: int = Field(default=300, ge=10, le=86_400, description="Lifetime of a presigned URL.")
    host_name: str | None = Field(
        default=None, max_length=64, description="This machine's name in worker names; default its host name."
    )

    @field_validator(*CHOICES)
    @classmethod
    def _known_choice(cls, value: str, info: ValidationInfo) -> str:
        allowed = CHOICES[info.field_name]
        if value not in allowed:
            raise ValueError(f"SDFARM_{info.field_name.upper()} must be {', '.join(allowed[:-1])} or {allowed[-1]}")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_form(cls, value: str | None) -> str | None:
        if value is not None and value != "":
            from models.webhook_secret import check_secret

            check_secret(value, "SDFARM_WEBHOOK_SECRET")
        return value or None

    @field_validator("object_store")
    @classmethod
    def _known_object_store(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme = value.partition("://")[0] if "://" in value else ""
        if scheme not in {"", "file", "s3"}:
            raise ValueError("SDFARM_OBJECT_STORE must be s3://bucket/prefix, file:///path or a directory path")
        if scheme == "s3":
            from models.s3_store import parse_s3_url

            parse_s3_url(value)
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint_or_none(cls, value: str | None) -> str | None:
        # Compose files pass an unset variable as "", which means AWS itself.
        return value or None

    @field_validator("host_name")
    @classmethod
    def _plain_host_name(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError("SDFARM_HOST_NAME may hold only letters, digits, '.', '_' and '-'")
        return value or None

    @cached_property
    def resolved_host_name(self) -> str:
        """The name this machine's workers carry after the '@' (unique per host, see `sdfarm worker`)."""
        return self.host_name or socket.gethostname()

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sdfarm.db').resolve()}"

    @cached_property
    def resolved_object_dir(self) -> Path:
        """Root of the image store when it is a directory (`SDFARM_OBJECT_STORE` path or file://)."""
        if self.object_store and not self.object_store.startswith("s3://"):
            return Path(self.object_store.removeprefix("file://")).resolve()
        return (self.object_dir or self.data_dir / "objects").resolve()

    @cached_property
    def resolved_models_dir(self) -> Path:
        """Where named models are looked up."""
        return (self.models_dir or self.data_dir / "models").resolve()

    @cached_property
    def resolved_lora_dir(self) -> Path:
        """Where LoRA adapters are looked up by name."""
        return (self.lora_dir or self.data_dir / "loras").resolve()

    def allowed_host_list(self) -> list[str]:
        """SDFARM_ALLOWED_HOSTS as lower-case names, without ports or final dots."""
        return [name.strip().lower().rstrip(".") for name in self.allowed_hosts.split(",") if name.strip()]

    def auth_required(self) -> bool:
        """Whether API keys are enforced: always unless turned off or auto on a loopback bind."""
        if self.auth == "on":
            return True
        if self.auth == "off":
            return False
        return not is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, the only binds where auth may be off."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
