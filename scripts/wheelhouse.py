"""`make wheelhouse`: the wheels an offline CUDA machine needs to run sdfarm beside its own torch.

Downloads (with the package index, here) binary wheels of sdfarm's dependencies for another
machine's Python and platform, leaves out torch and what that machine already has, and refuses a
folder over the size limit. sdfarm itself runs from the checkout that travels with the folder:
`scripts/gpu-check.sh` installs `--print-requirements` from the folder there with
`pip install --no-index --find-links wheelhouse`.

    python scripts/wheelhouse.py --out wheelhouse --python-version 3.12
    python scripts/wheelhouse.py --print-requirements
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# What the lent GPU machine's Python already holds (/work/.library/device/KINDS.md): its CUDA torch first,
# and the large libraries the farm shares with it. Kept out so the folder stays small and the machine's
# builds (CUDA torch's numpy, its transformers) are the ones used.
MACHINE_HAS = (
    "torch transformers numpy pillow safetensors accelerate peft pytest scipy"
    # transformers' own hub client (diffusers accepts the machine's version) and its download accelerator.
    " huggingface-hub hf-xet"
)
# Test-only packages the GPU checks need beyond pytest.
TEST_EXTRAS = ["pytest-timeout>=2.3"]


def canonical(name: str) -> str:
    """A distribution name as wheel files and PEP 503 write it (lower case, runs of -_. as one -)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(skip: set[str]) -> list[str]:
    """sdfarm's runtime dependencies from pyproject.toml, less the skipped names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = []
    for requirement in [*project["dependencies"], *TEST_EXTRAS]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
        if canonical(name) not in skip:
            wanted.append(requirement)
    return wanted


def wheel_name(path: Path) -> str:
    """The distribution a wheel file holds."""
    return canonical(path.name.split("-")[0])


def build(out: Path, python_version: str, platforms: list[str], skip: set[str], max_mb: float) -> list[Path]:
    """Fill `out` with the wheels; returns them. Raises SystemExit when pip fails or the folder is too big.

    Dependencies are followed here, level by level, with `pip download --no-deps`: pip's own resolver
    would follow the skipped packages' dependencies too (torch's CUDA libraries are gigabytes).
    """
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    target = ["--python-version", python_version, "--implementation", "cp", "--only-binary=:all:", "--no-deps"]
    for platform in platforms:
        target += ["--platform", platform]
    markers = _marker_environment(python_version)
    wanted: dict[str, SpecifierSet] = {}
    extras: dict[str, set[str]] = {}
    level = [(Requirement(text), "") for text in requirements(skip)]
    while level:
        fresh = []
        for requirement, extra in level:
            name = canonical(requirement.name)
            if name in skip or (requirement.marker and not requirement.marker.evaluate({**markers, "extra": extra})):
                continue
            new_extras = set(requirement.extras) - extras.get(name, set())
            if name not in wanted or new_extras:
                fresh.append(name)
            wanted[name] = wanted.get(name, SpecifierSet()) & requirement.specifier
            extras[name] = extras.get(name, set()) | set(requirement.extras)
        if not fresh:
            break
        _download(out, target, sorted({f"{name}{wanted[name]}" for name in fresh}))
        level = [
            (dependency, extra)
            for name in dict.fromkeys(fresh)
            for dependency in _dependencies(out, name)
            for extra in ["", *sorted(extras[name])]
        ]
    for name, specifier in wanted.items():
        version = _downloaded_version(out, name)
        if version is None or (specifier and version not in specifier):
            raise SystemExit(f"{name} {version} does not satisfy {specifier}: run again or pin it in pyproject.toml")
    wheels = sorted(out.glob("*.whl"))
    size_mb = sum(wheel.stat().st_size for wheel in wheels) / 1e6
    print(f"{len(wheels)} wheels, {size_mb:.1f} MB in {out}")
    if size_mb > max_mb:
        biggest = sorted(wheels, key=lambda wheel: wheel.stat().st_size, reverse=True)[:5]
        raise SystemExit(
            f"the wheelhouse is {size_mb:.1f} MB, over {max_mb} MB; biggest: {', '.join(w.name for w in biggest)}"
        )
    return wheels


def _download(out: Path, target: list[str], names: list[str]) -> None:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(out), *target, *names]
    # A machine-wide pip constraints file (a local cap on torch, say) is about this machine, not the target.
    result = subprocess.run(command, env={**os.environ, "PIP_CONSTRAINT": ""}, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pip download failed for {names} (does this machine reach the package index?)")


def _wheel_of(out: Path, name: str) -> Path | None:
    return next((wheel for wheel in out.glob("*.whl") if wheel_name(wheel) == name), None)


def _downloaded_version(out: Path, name: str):
    wheel = _wheel_of(out, name)
    return None if wheel is None else Version(wheel.name.split("-")[1])


def _dependencies(out: Path, name: str) -> list[Requirement]:
    """The Requires-Dist lines of a downloaded wheel (extras' lines drop out at marker evaluation)."""
    wheel = _wheel_of(out, name)
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(item for item in archive.namelist() if item.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    lines = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    return [Requirement(line) for line in lines]


def _marker_environment(python_version: str) -> dict[str, str]:
    """Environment markers of the target: CPython `python_version` on Linux x86-64."""
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "implementation_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "platform_release": "",
        "platform_version": "",
    }


def main() -> None:
    """Parse the arguments and build the folder."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--platform", action="append", default=None, help="repeatable (default manylinux x86_64)")
    parser.add_argument("--skip", default=MACHINE_HAS, help="space-separated names the target machine already has")
    parser.add_argument("--max-mb", type=float, default=60.0)
    parser.add_argument("--print-requirements", action="store_true", help="print what to install from the folder")
    args = parser.parse_args()
    skip = {canonical(name) for name in args.skip.split()}
    if args.print_requirements:
        print("\n".join(requirements(skip)))
        return
    platforms = args.platform or [
        "manylinux2014_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux_2_28_x86_64",
        "manylinux_2_34_x86_64",
    ]
    build(args.out, args.python_version, platforms, skip, args.max_mb)


if __name__ == "__main__":
    main()
