"""Executors: who runs a grid's pending cells once the runner has prepared and checked them.

``local`` crafts and evaluates in this process, one adversarial set at a time; ``ray``
submits the same jobs as tasks to a Ray cluster (:mod:`.ray_cluster`). Either hands every
saved set and finished cell to the runner's recorder, the only writer of the results store.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not imported at run time: the CLI reads this module for its --help, which stays light
    from ..store import ResultStore
    from ..workspace import Workspace

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class RayOptions:
    """How the ``ray`` executor uses its cluster."""

    address: str | None = None  # an existing cluster ("auto", "ray://host:10001", "host:6379"); None: start one here
    max_retries: int = 3  # times Ray runs a task again after its worker died
    gpus_per_task: float | None = None  # None: 1 when the suite's device is cuda, else 0
    task_memory_gb: float = 2.0  # memory Ray reserves for each task (its scheduling only: Ray does not cap it)


@dataclass
class GridWork:
    """What an executor runs: the pending cells grouped by adversarial set, and what crafting them needs."""

    groups: list[list]  # the cells still to do, one list per adversarial set, in grid order
    workspace: Workspace  # the driver's models, defenses and test points
    store: ResultStore  # read for saved adversarial sets; written only through the recorder
    config: object  # the RunConfig, from which a remote worker builds its own workspace
    model_sha256: dict  # model name -> sha256 as the driver resolved it


def create_executor(name: str, ray_options=None):
    """The executor called ``name``; ``ray`` checks at once that Ray can be imported (an ExecutorUnavailableError)."""
    if name == "local":
        from .local import LocalExecutor

        return LocalExecutor()
    if name == "ray":
        from .ray_cluster import RayExecutor

        return RayExecutor(ray_options or RayOptions())
    raise ValueError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
