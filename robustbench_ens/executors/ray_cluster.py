"""The Ray executor: crafting jobs and evaluation cells as Ray tasks; the driver streams results into the store.

Each adversarial set still to craft is one crafting task; each pending cell is one
evaluation task that takes its crafting task's result (an ObjectRef) as an argument, so
Ray starts it only once the set is saved, and a set is crafted once however many cells
read it. The driver waits on all tasks (``ray.wait``) and records each saved set and each
finished cell in the SQLite store the moment it arrives, as the local executor does; it
is the store's only writer, so a driver killed and started again resumes from the store.

What travels where, and why (cheapest first):

* Adversarial sets go through the shared run folder (``--out``), not the object store:
  the crafting task writes ``<out>/adv/<adv_key>.safetensors`` atomically (it must be
  saved anyway, for resume) and returns only its small ``adv_sets`` record; an
  evaluation task reads the file. The object store would hold a second copy.
* Models and data are loaded by each worker from the same files as the driver (``--data``,
  ``--models``, the zoo's ``--cache``), through the project's checked loading path
  (safetensors + sha256, no pickle), and checked against the driver's sha256s. They are
  megabytes and load in about a second, while shipping ``nn.Module`` objects would
  pickle them. A CPU worker process keeps its workspace for the next task of the same
  run; a GPU task gets a fresh process (Ray's default ``max_calls=1`` for GPU tasks,
  which frees the GPU's memory), so it loads its workspace again.
* The object store carries only the run's description (suite and paths, put once), each
  crafting task's record and each cell's metrics: a few kilobytes per task.

Faults: a task whose worker dies (killed, out of memory, node lost) is retried by Ray up to
``max_retries`` times; an exception in the job is not retried (it would fail again) but
recorded, as in the local executor. A task that fails for good fails its cell (and a
crafting task every cell of its set) with the reason, and the grid goes on.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from ..environment import select_device, tune_cpu_allocator
from ..leaderboard.format import fmt_eps
from ..metrics import perturbation_norms
from ..suite import CLEAN
from ..workspace import Cell, Workspace, describe_error, failed, open_workspace
from . import RayOptions

INSTALL_HINT = 'pip install -e ".[ray]"'


class ExecutorUnavailableError(RuntimeError):
    """An executor was asked for whose engine is not installed; the message says how to install it."""


@dataclass(frozen=True)
class RemoteRun:
    """What a worker needs to build the run's workspace: the configuration (paths, suite) and the device kind."""

    token: str  # one per driver run: a worker's cached workspace serves only its own run
    config: object  # the RunConfig
    device: str  # "cuda" (the GPU Ray gave the task) or "cpu"
    model_sha256: dict  # model name -> sha256 as the driver resolved it


class RayExecutor:
    def __init__(self, options: RayOptions):
        self.options = options
        self.ray = import_ray()

    def run(self, work, recorder) -> None:
        ray = self.ray
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.options.address)
        try:
            self._run(work, recorder)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, work, recorder) -> None:
        ray = self.ray
        device = work.workspace.device
        run = ray.put(RemoteRun(uuid.uuid4().hex, replace(work.config, progress=False), device.type,
                                work.model_sha256))
        gpus = self.options.gpus_per_task if self.options.gpus_per_task is not None else float(device.type == "cuda")
        resources = {"num_cpus": 1, "num_gpus": gpus, "max_retries": self.options.max_retries}
        if self.options.task_memory_gb > 0:
            resources["memory"] = int(self.options.task_memory_gb * 2 ** 30)
        craft_task, evaluate_task = ray.remote(**resources)(craft_job), ray.remote(**resources)(evaluate_job)

        crafting, evaluating = set(), {}  # the crafting tasks' ObjectRefs; evaluation ObjectRef -> its cell
        crafted = {}  # adv_key -> its crafting task's ObjectRef: a cascade's next stage waits for it
        for group in work.groups:
            first = group[0]
            adv_set = None if first.attack == CLEAN else work.store.saved_adv_set(first.adv_key)
            if first.attack != CLEAN and adv_set is None:
                adv_set = craft_task.options(name=f"craft {first.attack} eps={fmt_eps(first.eps)}").remote(
                    run, first, crafted.get(first.after))
                crafting.add(adv_set)
                crafted[first.adv_key] = adv_set
            for cell in group:
                task = evaluate_task.options(name=f"evaluate {cell.attack} eps={fmt_eps(cell.eps)} on {cell.defense}")
                evaluating[task.remote(run, cell, adv_set)] = cell

        while crafting or evaluating:
            (ref,), _ = ray.wait([*crafting, *evaluating], num_returns=1)
            if ref in crafting:
                crafting.remove(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError:
                    continue  # failed for good: each of its cells says why
                if "error" not in record:
                    recorder.saved_set(record)
            else:
                try:
                    record, adv_set = ray.get(ref)
                except ray.exceptions.RayError as error:
                    record, adv_set = self._failure(error), None
                recorder.finished_cell(evaluating.pop(ref), record, adv_set)

    def _failure(self, error) -> dict:
        """The failed record of a cell whose task (or its crafting task) failed for good, with the reason."""
        exceptions = self.ray.exceptions
        cause = error.cause if isinstance(error, exceptions.RayTaskError) else error  # a crafting task's, passed on
        if not isinstance(cause, exceptions.RayError):  # the job raised outside its own error handling
            return failed(f"task raised {describe_error(cause)}")
        return failed(f"Ray task failed for good: {type(cause).__name__}: {str(cause).strip().splitlines()[0]}")


def import_ray():
    """The ``ray`` module, or an ExecutorUnavailableError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailableError(f"--executor ray needs Ray, an optional extra: {INSTALL_HINT}") from None
    return ray


def craft_job(run: RemoteRun, cell: Cell, before: dict | None = None) -> dict:
    """Ray task: crafts and saves the set of ``cell``; its ``adv_sets`` record, or ``{"error": why}``. ``before``:
    for a cascaded cell whose previous stage was crafted in this run, that stage's record (Ray runs this task once
    it is there)."""
    if before and "error" in before:
        return {"error": f"the cascade's stage before it failed: {before['error']}"}
    try:
        _, record = _workspace(run).craft_set(cell)
    except Exception as error:  # as in the local executor: a failed crafting fails its cells, the grid goes on
        return {"error": describe_error(error)}
    return record


def evaluate_job(run: RemoteRun, cell: Cell, adv_set: dict | None) -> tuple[dict, dict | None]:
    """Ray task: the record of ``cell`` and its set's record (None when there is none). ``adv_set``: None for the
    clean row, else the set's record (its crafting task's result, which Ray waits for), or ``{"error": why}`` if
    crafting failed."""
    craft_error = adv_set.get("error") if adv_set else None
    workspace = _workspace(run)
    x_adv = None if craft_error else workspace.adversarial_images(cell, adv_set)
    norms = perturbation_norms(workspace.images, x_adv) if x_adv is not None else {}
    return workspace.evaluate(cell, x_adv, norms, craft_error), None if craft_error else adv_set


_workspaces: dict[str, Workspace] = {}  # this worker process's workspace, by run token (one at a time)


def _workspace(run: RemoteRun) -> Workspace:
    """The run's workspace in this worker process, built on its first task and kept for the next ones."""
    if run.token not in _workspaces:
        _workspaces.clear()
        tune_cpu_allocator()  # as run_all.py does in the driver
        _workspaces[run.token], _, _ = open_workspace(run.config, select_device(run.device), run.model_sha256)
    return _workspaces[run.token]
