"""The client commands: `sdfarm submit`, `sdfarm status` and `sdfarm export`, spoken over HTTP to a farm."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from models.settings import Settings

URL_HELP = "Farm URL (default: SDFARM_URL, else the farm `sdfarm up` started in the data dir, else port 8000)."


@click.command()
@click.argument("prompts_file", type=click.File("r"))
@click.option("--num-images", type=int, default=1, show_default=True, help="Images per prompt.")
@click.option("--negative-prompt", default=None)
@click.option("--steps", type=int, default=None)
@click.option("--guidance-scale", type=float, default=None)
@click.option("--width", type=int, default=None)
@click.option("--height", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--sampler", "scheduler", default=None, help="e.g. 'DPM++ 2M Karras' or euler_a.")
@click.option("--model", default=None)
@click.option("--priority", type=int, default=None, help="0..9, higher first.")
@click.option("--wait", is_flag=True, help="Show a progress bar until the job ends.")
@click.option("--url", default=None, help=URL_HELP)
def submit(prompts_file, wait, url, **params) -> None:
    """Submit PROMPTS_FILE as one bulk job: one prompt a line ('-' for stdin); blank lines and lines
    starting with '#' (comments) are skipped."""
    prompts = [line.strip() for line in prompts_file if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise click.UsageError("the prompts file has no prompts (one per line)")
    job = {"prompts": prompts, **{key: value for key, value in params.items() if value is not None}}
    client = _client(url)
    accepted = client.submit(job)
    queued = _count(accepted["total"], "image")
    click.echo(f"job {accepted['id']}: {queued} queued ({client.url}/api/v1/jobs/{accepted['id']})")
    if wait:
        finished = client.wait(accepted["id"])
        _print_outcome(client, finished)
        sys.exit(0 if finished["status"] == "succeeded" else 1)


@click.command()
@click.argument("job_id", type=int)
@click.option("--url", default=None, help=URL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def status(job_id, url, as_json) -> None:
    """Show a job's status and where its images are."""
    client = _client(url)
    job = client.job(job_id)
    if as_json:
        click.echo(json.dumps(job, indent=2))
        return
    _print_outcome(client, job)


def _client(url: str | None):
    """The farm client, after saying on stderr which farm it talks to and why that one."""
    from sdfarm.client import FarmClient

    client = FarmClient.from_env(url, Settings().data_dir)
    click.echo(f"farm: {client.url} ({client.source})", err=True)
    return client


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


@click.command("export")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["imagefolder", "webdataset", "zip"]),
    default="imagefolder",
    show_default=True,
    help="imagefolder: a zip with metadata.jsonl for Hugging Face datasets; webdataset: tar shards; zip: PNGs.",
)
@click.option("--query", "-q", "q", default=None, help="Prompt search, as in the gallery (every word must match).")
@click.option("--job", "job_id", type=int, default=None, help="Only this job's images.")
@click.option("--ids", default=None, help="Only these image ids, comma-separated.")
@click.option("--model", default=None, help="Only images of this model.")
@click.option("--size", default=None, help="Only images of this size, WIDTHxHEIGHT.")
@click.option("--seed", type=int, default=None)
@click.option("--rating", type=click.IntRange(-1, 1), default=None, help="1 starred, 0 unrated, -1 rejected.")
@click.option("--board", "board_id", type=int, default=None, help="Only the images on this board.")
@click.option("--all", "everything", is_flag=True, help="Every image you can see (when nothing else is given).")
@click.option("--shard-size", type=int, default=None, help="webdataset: images per tar shard (default 1000).")
@click.option("--url", default=None, help=URL_HELP)
def export_command(out, export_format, ids, everything, url, **selection) -> None:
    """Export succeeded images as a dataset into the folder OUT: submit, wait with progress, download."""
    body = {"format": export_format, **{key: value for key, value in selection.items() if value is not None}}
    if ids:
        try:
            body["image_ids"] = [int(part) for part in ids.split(",") if part.strip()]
        except ValueError:
            raise click.BadParameter(
                "a comma-separated list of image ids, such as 12,13,40", param_hint="--ids"
            ) from None
    if everything:
        body["all"] = True
    client = _client(url)
    export = client.submit_export(body)
    click.echo(f"export {export['id']} queued ({client.url}{export['url']})")
    export = client.wait_export(export["id"])
    if export["status"] != "succeeded":
        raise click.ClickException(f"export {export['id']} failed: {export['error']}")
    out.mkdir(parents=True, exist_ok=True)
    for item in export["files"]:
        target = out / item["name"]
        client.download(item["url"], target)
        click.echo(f"{target}  ({_count(item['images'], 'image')}, {item['bytes']:,} bytes)")
    click.echo(f"export {export['id']}: {_count(export['images'], 'image')} in {_count(len(export['files']), 'file')}")


def _print_outcome(client, job: dict) -> None:
    click.echo(
        f"job {job['id']}: {job['status']}, {job['succeeded']}/{job['total']} succeeded, {job['failed']} failed, "
        f"{job['progress'] * 100:.0f}%"
    )
    for image in job.get("images") or []:
        where = client.url + image["url"] if image["url"] else image["status"]
        error = f"  ({image['error']})" if image["error"] and image["status"] == "failed" else ""
        click.echo(f"  #{image['index']:<4} seed {image['seed']:<11} {where}{error}")
