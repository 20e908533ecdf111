"""The `sdfarm` command: thin wiring from the command line to the farm's parts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from models.settings import Settings
from sdfarm.cli_client import export_command, status, submit
from sdfarm.cli_models import model, models_group

# Never reach a model hub; keep library chatter (progress bars, advisory warnings) out of farm logs.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}.items():
    os.environ.setdefault(_name, _value)


def _settings(**overrides) -> Settings:
    values = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**values)


def _logging() -> None:
    from models.logging_config import configure_logging

    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """sdfarm: a render farm for Stable Diffusion. Configuration comes from SDFARM_* variables (see README)."""


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Database, objects, Redis data.")
@click.option("--gpus", default=None, help="all, none or 0,2,3 (default: all GPUs if any, else none).")
@click.option("--cpu-workers", type=int, default=1, show_default=True, help="CPU workers when --gpus none.")
def up(host, port, data_dir, gpus, cpu_workers) -> None:
    """Run the whole farm here: private Redis, SQLite, migrations, the API and workers."""
    from sdfarm.local_farm import run_local_farm
    from worker.devices import list_gpus

    _logging()
    settings = _settings(host=host, port=port, data_dir=data_dir)
    _refuse_public_without_auth(settings)
    gpus = gpus or ("all" if list_gpus() else "none")
    sys.exit(run_local_farm(settings, gpus, cpu_workers))


@main.command()
@click.option("--host", default=None, help="Address to listen on (SDFARM_HOST).")
@click.option("--port", type=int, default=None, help="Port (SDFARM_PORT).")
@click.option("--processes", type=int, default=2, show_default=True, help="gunicorn worker processes.")
def api(host, port, processes) -> None:
    """Serve the HTTP API and the gallery with gunicorn."""
    from sdfarm.http_server import serve

    settings = _settings(host=host, port=port)
    _refuse_public_without_auth(settings)
    _check_store(settings)
    serve(settings, processes=processes)


def _check_store(settings: Settings) -> None:
    """Fail at start, saying what to fix, when the image store cannot be read and written."""
    from models.image_store import StoreUnavailableError, open_image_store

    try:
        open_image_store(settings).check()
    except StoreUnavailableError as error:
        raise click.ClickException(str(error)) from None


def _refuse_public_without_auth(settings: Settings) -> None:
    if not settings.auth_required() and settings.auth == "off":
        from models.settings import is_loopback

        if not is_loopback(settings.host):
            raise click.UsageError(
                f"refusing to serve on {settings.host} with SDFARM_AUTH=off: anyone on the network could use the farm. "
                "Turn auth on (create a key with `sdfarm keys create NAME`) or bind to 127.0.0.1."
            )


@main.command()
@click.option(
    "--gpus", default="none", show_default=True, help="all, none, or a list such as 0,2,3: one worker per GPU."
)
@click.option("--cpu-workers", type=int, default=1, show_default=True, help="How many CPU workers with --gpus none.")
@click.option("--model", default=None, help="Model to serve (default: SDFARM_MODEL or the built-in default).")
@click.option("--max-batch", type=int, default=None, help="Images per pipeline call (SDFARM_MAX_BATCH).")
@click.option(
    "--host-name", default=None, help="This machine's name in worker names (SDFARM_HOST_NAME; default its host name)."
)
def worker(gpus, cpu_workers, model, max_batch, host_name) -> None:
    """Start GPU (or CPU) workers for one model, restart them if they die, stop them on SIGTERM."""
    from models.catalog import ModelCatalog, UnknownModelError
    from worker.devices import list_gpus, parse_gpu_selection
    from worker.supervisor import Supervisor, plan_workers

    _logging()
    settings = _settings(max_batch=max_batch, host_name=host_name)
    catalog = ModelCatalog(settings.resolved_models_dir, settings.model)
    try:
        entry = catalog.get(model)
    except UnknownModelError as error:
        raise click.ClickException(
            f"unknown model {error.args[0]!r}: not a model name in {settings.resolved_models_dir} "
            "nor an existing path. "
            f"Known models: {', '.join(sorted(catalog.entries()))}"
        ) from None
    from worker.preflight import check_model
    from worker.runner import ModelLoadError

    try:
        check_model(entry)
    except ModelLoadError as error:
        raise click.ClickException(str(error)) from None
    try:
        selected = parse_gpu_selection(gpus, list_gpus())
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    tag_model = entry.name != catalog.default_name
    workers = plan_workers(entry.name, selected, cpu_workers, settings.max_batch, settings, tag_model)
    _join_farm(settings, [w.name for w in workers])
    sys.exit(Supervisor(settings, workers).run())


def _join_farm(settings: Settings, names: list[str]) -> None:
    """Fail at start, with what to fix, if the object store or the workers' names cannot be used."""
    from sqlalchemy.exc import SQLAlchemyError

    from models.image_store import StoreUnavailableError, open_image_store
    from models.urls import mask_url
    from worker.joining import NameInUseError, check_names_free, log_farm_urls

    store = open_image_store(settings)
    log_farm_urls(settings, store)
    try:
        store.check()
        check_names_free(_sessions(settings), names, settings.worker_offline_seconds)
    except (StoreUnavailableError, NameInUseError) as error:
        raise click.ClickException(str(error)) from None
    except SQLAlchemyError as error:
        raise click.ClickException(
            f"SDFARM_DATABASE_URL: cannot reach the database at {mask_url(settings.resolved_database_url)}: "
            f"{str(error).splitlines()[0]}"
        ) from None


@main.command()
def reaper() -> None:
    """Run only the reaper loop (requeue expired leases, re-publish lost messages)."""
    from worker.supervisor import Supervisor

    _logging()
    sys.exit(Supervisor(_settings(), []).run())


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision) -> None:
    """Create or update the schema (SDFARM_DATABASE_URL, default SQLite in the data dir)."""
    from models.urls import mask_url
    from sdfarm.migrate import upgrade

    settings = _settings()
    upgrade(settings.resolved_database_url, revision)
    click.echo(f"database at revision {revision}: {mask_url(settings.resolved_database_url)}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision) -> None:
    """Take the schema back to REVISION (`base` removes every table)."""
    from sdfarm.migrate import downgrade

    downgrade(_settings().resolved_database_url, revision)


@main.group()
def keys() -> None:
    """API keys (stored hashed; the secret is printed once)."""


@keys.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May see and cancel every tenant's jobs.")
def keys_create(name, admin) -> None:
    """Create an API key called NAME and print its secret."""
    from api.auth import create_key

    with _sessions()() as session:
        key, secret = create_key(session, name, admin)
    click.echo(
        f"created key {key.name} (id {key.id}{', admin' if admin else ''}). Its secret, shown only now:\n{secret}"
    )


@keys.command("list")
def keys_list() -> None:
    """List keys (names and prefixes only; secrets are not stored)."""
    from sqlalchemy import select

    from models.api_key import ApiKey

    with _sessions()() as session:
        for key in session.scalars(select(ApiKey).order_by(ApiKey.id)):
            flags = ", ".join(f for f, on in (("admin", key.is_admin), ("revoked", key.revoked)) if on)
            click.echo(f"{key.id:>4}  {key.name}  {key.prefix}...  {flags}")


@keys.command("revoke")
@click.argument("name")
def keys_revoke(name) -> None:
    """Revoke the key called NAME; requests with it get 401 from now on."""
    from sqlalchemy import update

    from models.api_key import ApiKey

    with _sessions()() as session:
        changed = session.execute(update(ApiKey).where(ApiKey.name == name).values(revoked=True)).rowcount
        session.commit()
    if not changed:
        raise click.ClickException(f"no key called {name!r}")
    click.echo(f"revoked {name}")


@main.group()
def webhooks() -> None:
    """Signed webhooks (see the README)."""


@webhooks.command("secret")
def webhooks_secret() -> None:
    """Print a new Standard Webhooks secret (whsec_...) for SDFARM_WEBHOOK_SECRET."""
    from models.webhook_secret import new_secret

    click.echo(new_secret())


def _sessions(settings: Settings | None = None):
    from models.db import make_engine, make_session_factory

    return make_session_factory(make_engine((settings or _settings()).resolved_database_url))


@main.command()
@click.argument("parts", nargs=-1, type=click.Choice(["farm", "control-plane", "adherence", "gpu", "gpu-farm"]))
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench-results/latest.json"), show_default=True)
@click.option(
    "--database-url", default=None, help="PostgreSQL server for the control plane (a scratch database is made on it)."
)
@click.option("--quick", is_flag=True, help="Smaller runs, for a smoke test.")
@click.option(
    "--central", is_flag=True, help="control-plane: central CPU per image under a fleet of simulated GPUs instead."
)
@click.option(
    "--simulated-gpus", default="10,100,1000", show_default=True, help="--central: fleet sizes, comma-separated."
)
@click.option("--seconds", type=float, default=20.0, show_default=True, help="--central: measured seconds per size.")
@click.option("--pollers", type=int, default=0, help="--central: also measure status polls with this many clients.")
@click.option("--batch", type=int, default=8, show_default=True, help="gpu-farm: images per pipeline call.")
@click.option("--steps", type=int, default=None, help="gpu-farm: denoising steps (default 30 on CUDA, 10 on CPU).")
@click.option("--images", type=int, default=None, help="gpu-farm: images per side and round (default 4 batches).")
@click.option("--rounds", type=int, default=3, show_default=True, help="gpu-farm: interleaved rounds.")
@click.option("--tune", default="auto", show_default=True, help="gpu-farm: the farm worker's SDFARM_TUNE.")
def bench(
    parts, out, database_url, quick, central, simulated_gpus, seconds, pollers, batch, steps, images, rounds, tune
) -> None:
    """Measure farm overhead, control plane and prompt adherence (default: all three); `gpu` on a CUDA machine.

    `gpu-farm`: the plain diffusers loop, DiffusersRunner alone and the whole farm, interleaved, plus the
    worker's cold start; SD 1.5's architecture on CUDA, the tiny model on the CPU.
    """
    if central:
        from bench.suite import run_central

        try:
            counts = [int(value) for value in simulated_gpus.split(",") if value.strip()]
        except ValueError:
            raise click.BadParameter("a comma-separated list of whole numbers", param_hint="--simulated-gpus") from None
        if not counts or min(counts) < 1:
            raise click.BadParameter("at least one fleet size, each 1 or more", param_hint="--simulated-gpus")
        run_central(out, counts, seconds, pollers)
        return
    if "gpu-farm" in parts:
        from bench.gpu_farm import main as gpu_farm

        gpu_farm(out, batch=batch, steps=steps, images=images, rounds=rounds, tune=tune, restart=not quick)
        return
    if "gpu" in parts:
        import runpy

        sys.argv = ["bench.gpu_throughput", "--out", str(out)]
        runpy.run_module("bench.gpu_throughput", run_name="__main__")
        return
    from bench.suite import run_suite

    run_suite(list(parts) or ["farm", "control-plane", "adherence"], out, database_url, quick)


for _command in (submit, status, export_command, model, models_group):
    main.add_command(_command)

if __name__ == "__main__":
    main()
