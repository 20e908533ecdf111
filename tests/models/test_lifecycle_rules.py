"""The lifecycle module is the only place that writes an image's status or publishes work.

Checked over the source tree with Python's own parser, so a new module that assigns a status
or publishes to the render queues behind the lifecycle's back fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "worker", "models", "sdfarm", "bench")
LIFECYCLE = REPO / "models" / "lifecycle.py"
STATUS_NAMES = {"queued", "running", "succeeded", "failed", "canceled"}
# The transport under the lifecycle: the only module besides it that may send a render message.
QUEUE_TRANSPORT = REPO / "models" / "queue.py"


def _sources() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))]


def _is_status_value(node: ast.AST) -> bool:
    """`ImageStatus.X` or a literal status name."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ImageStatus":
        return True
    return isinstance(node, ast.Constant) and node.value in STATUS_NAMES


def _is_row_status(target: ast.AST) -> bool:
    """`x.status` for any `x` but `self`."""
    if not (isinstance(target, ast.Attribute) and target.attr == "status"):
        return False
    return not (isinstance(target.value, ast.Name) and target.value.id == "self")


def status_writes(tree: ast.AST) -> list[int]:
    """Line numbers where a status is assigned: `x.status = ...`, `status=ImageStatus.X` keywords,
    `{"status": ...}` in a values dict, or `Image.status: ...` keys."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            # `self.status` belongs to some other class (an error, a worker's stats), never to a row.
            if any(_is_row_status(t) for t in targets):
                lines.append(node.lineno)
        elif isinstance(node, ast.keyword) and node.arg == "status" and _is_status_value(node.value):
            lines.append(node.value.lineno)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                is_status_key = (isinstance(key, ast.Constant) and key.value == "status") or (
                    isinstance(key, ast.Attribute) and key.attr == "status"
                )
                if is_status_key and _is_status_value(value):
                    lines.append(key.lineno)
    return lines


def queue_publishes(tree: ast.AST) -> list[int]:
    """Line numbers that send render messages: `.publish(...)`, `.publish_for_items(...)`, `.send_task(...)`."""
    names = {"publish", "publish_for_items", "send_task"}
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names
    ]


def test_only_the_lifecycle_writes_an_image_status():
    offenders = {
        str(path.relative_to(REPO)): lines
        for path in _sources()
        if path != LIFECYCLE and (lines := status_writes(ast.parse(path.read_text(), str(path))))
    }
    assert offenders == {}, f"status written outside models/lifecycle.py: {offenders}"


def test_only_the_lifecycle_publishes_work():
    allowed = {LIFECYCLE, QUEUE_TRANSPORT}
    offenders = {
        str(path.relative_to(REPO)): lines
        for path in _sources()
        if path not in allowed and (lines := queue_publishes(ast.parse(path.read_text(), str(path))))
    }
    assert offenders == {}, f"render messages published outside models/lifecycle.py: {offenders}"


def test_the_checks_find_what_they_look_for():
    """The detectors themselves can fail: each form of a status write and a publish is caught."""
    code = """
image.status = ImageStatus.FAILED
update(Image).values(status=ImageStatus.QUEUED)
update(Image).values({"status": "canceled"})
update(Image).values({Image.status: ImageStatus.RUNNING})
queue.publish("tiny")
app.send_task("x")
"""
    tree = ast.parse(code)
    assert status_writes(tree) == [2, 3, 4, 5]
    assert queue_publishes(tree) == [6, 7]
    assert status_writes(ast.parse("render(status=404)\nflask.Response(status=200)\nself.status = 404")) == []
