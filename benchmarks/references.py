"""Our ensemble attacks side by side with the reference implementations, in one run on one machine.

For each budget eps, on the same surrogates, images, batch and threads:

- CWA:    ``attacks.CWA`` (defaults; and configured like the official code) against the official
          ``MI_CommonWeakness`` (huanranchen/AdversarialAttacks, attacks/AdversarialInput/CommonWeakness.py);
- AdaEA:  ``attacks.AdaEA`` (defaults; and configured like the official code) against the official
          ``AdaEA_MIFGSM`` (CHENBIN99/AdaEA, attack/AdaEA_MIFGSM.py), run with its run script's settings;
- MI-FGSM: ``attacks.Ens(fusion="logits")`` against ``torchattacks.MIFGSM`` on a module that averages
          the surrogates' logits.

Reported per attack run: wall time (after one warm-up run at the same batch), images/s, the time
ratio ours / reference, and how the adversarial images differ from the reference's (max |diff|,
fraction of pixel values that differ by more than 1e-6, mean |diff|), plus the robust accuracy of
held-out targets (models not among the surrogates) on every set of images.

The reference code is never part of this repository: pass the folders of your own copies
(``--cwa-code``, ``--adaea-code``; a git checkout of each repository, or just the folder holding its
``attacks/`` resp. ``attack/`` package). The script imports only the modules it needs, under private
module names (the official CWA package is called ``attacks``, like ours), stubs the one plotting
import they pull in, and changes nothing in their files. In-memory adjustments, all documented in
the output JSON:

- the official CWA's ``model_distribute`` (spreads models over ``torch.cuda.device_count()`` GPUs;
  divides by zero without one) is replaced by one that puts every surrogate on ``--device`` — what
  it does on a one-GPU machine;
- the official CWA overwrites the tensor it is given (``x -= ...`` in its first step), so it gets a
  copy; the official AdaEA draws its start noise from torch's global RNG, which is seeded with
  ``--seed`` before each of its runs;
- *diagnostic* runs (at the first eps only; ``--no-diagnostics`` leaves them out) explain the
  differences. Of the official AdaEA: without its start noise (``0.001 * randn`` replaced by zeros),
  and also with the DRF averaged over all model pairs (our fix of its pair-averaging bug). Of ours
  (subclasses defined here, nothing patched in ``attacks/``): the MI momentum normalised by the plain
  mean |grad| (ours clamps that mean at 1e-12, which changes images whose gradient is that small),
  and for AdaEA also the DRF cosines taken between unit-normalised gradients as the official code does
  (``F.cosine_similarity`` on raw gradients clamps their norms at 1e-8, so tiny gradients give a
  similarity of ~0). They are labelled as such and are never the reference.

Examples::

    # CPU (defaults: n=32, batch 32, eps 8/255, 10 steps, 1 thread; ~8 min on a slow shared 2-core VM)
    python benchmarks/references.py --cwa-code /work/refs/cwa --adaea-code /work/refs/adaea

    # GPU (n=512, batch 512, 3 timed repeats; writes benchmarks/results/references_cuda.json)
    RBE_CWA_CODE=/path/to/AdversarialAttacks RBE_ADAEA_CODE=/path/to/AdaEA \\
        python benchmarks/references.py --device cuda
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from attacks import CWA, AdaEA, Ens  # noqa: E402
from robustbench_ens.data import load_cifar10  # noqa: E402
from robustbench_ens.zoo import load_checkpoint  # noqa: E402

SURROGATES = ("resnet20_a_standard", "resnet32_a_standard", "resnet44_a_standard", "resnet56_a_standard")
TARGETS = ("resnet20_b_baseline_m0", "resnet20_b_dverge_s0")
COMPARISONS = ("cwa", "adaea", "mifgsm")
PIXEL_TOLERANCE = 1e-6


# --- the reference implementations, imported from copies outside the repository -------------------

def _package(name: str, folder: Path) -> types.ModuleType:
    """An empty package module whose submodules load from ``folder`` (its __init__ is not run)."""
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    module.__package__ = name
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__spec__.submodule_search_locations = [str(folder)]
    sys.modules[name] = module
    return module


def _load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _temporary_modules(entries: dict[str, types.ModuleType]):
    """``sys.modules`` entries for the duration of an import, restored afterwards."""
    saved = {name: sys.modules.get(name) for name in entries}
    sys.modules.update(entries)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _find_folder(root: Path, package: str, marker: str) -> Path:
    for candidate in (root / package, root):
        if (candidate / marker).is_file():
            return candidate
    raise SystemExit(f"{root}: no {package}/{marker} there (pass the folder of your copy of the official code)")


def code_version(root: Path) -> str:
    """The commit of a copy of the official code: the first word of its COMMIT file, else the HEAD of a git
    checkout whose top level is ``root`` (never that of a repository the copy merely sits inside)."""
    for path in (root / "COMMIT", root.parent / "COMMIT"):
        if path.is_file():
            return path.read_text().split()[0]
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        lines = top.stdout.split()
        if top.returncode == 0 and len(lines) == 2 and Path(lines[0]).resolve() == root.resolve():
            return lines[1]
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def load_official_cwa(root: Path, device: torch.device):
    """``MI_CommonWeakness`` from huanranchen/AdversarialAttacks, with all models kept on ``device``."""
    folder = _find_folder(root, "attacks", "AdversarialInput/CommonWeakness.py")
    _package("_rbe_ref_cwa", folder)
    _package("_rbe_ref_cwa.AdversarialInput", folder / "AdversarialInput")
    their_utils = _load_file("_rbe_ref_cwa.utils", folder / "utils.py")
    plot_stub = types.ModuleType("utils.plot.CommonFigures")
    plot_stub.matrix_heatmap = None  # imported by AdversarialInput/utils.py, used only in a comment there
    stubs = {"attacks.utils": their_utils,  # CommonWeakness.py does `from attacks.utils import *`
             "utils": types.ModuleType("utils"), "utils.plot": types.ModuleType("utils.plot"),
             "utils.plot.CommonFigures": plot_stub}
    with _temporary_modules(stubs):
        module = importlib.import_module("_rbe_ref_cwa.AdversarialInput.CommonWeakness")

    class OfficialCWA(module.MI_CommonWeakness):
        def model_distribute(self):  # the original divides by torch.cuda.device_count(); one device here
            for model in self.models:
                model.to(device)
                model.device = device

    return OfficialCWA


def load_official_adaea(root: Path):
    """``AdaEA_MIFGSM`` from CHENBIN99/AdaEA, and its module (for the diagnostic patches)."""
    folder = _find_folder(root, "attack", "AdaEA_MIFGSM.py")
    package = _package("_rbe_ref_adaea", folder)
    base = _load_file("_rbe_ref_adaea.AdaEA_Base", folder / "AdaEA_Base.py")
    with _temporary_modules({"attack": package, "attack.AdaEA_Base": base}):  # `from attack.AdaEA_Base import`
        module = _load_file("_rbe_ref_adaea.AdaEA_MIFGSM", folder / "AdaEA_MIFGSM.py")
    return module.AdaEA_MIFGSM, module


class _TorchWithoutNoise:
    """``torch`` as the official AdaEA module sees it, except that ``randn`` gives zeros (diagnostic)."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def randn(*args, **kwargs):
        return torch.zeros(*args, **kwargs)


def drf_all_pairs(self, grads, data_size):
    """The DRF map averaged over every model pair once (what the official ``drf`` means to compute)."""
    b, _, h, w = data_size
    n = len(grads)
    sims = [F.cosine_similarity(F.normalize(grads[i], dim=1), F.normalize(grads[j], dim=1), dim=1, eps=1e-8)
            for i in range(n) for j in range(i + 1, n)]
    return (sum(sims) / len(sims)).view(b, 1, h, w)


def _plain_l1(t: torch.Tensor) -> torch.Tensor:
    return t / torch.mean(torch.abs(t), dim=tuple(range(1, t.dim())), keepdim=True)


class EnsPlainMean(Ens):
    """Diagnostic: ``Ens`` with the momentum normalised by the plain mean |grad| (no 1e-12 clamp)."""

    def accumulate_momentum(self, momentum, grad):
        return momentum * self.decay + _plain_l1(grad)


class AdaEAOfficialArithmetic(AdaEA):
    """Diagnostic: ``AdaEA`` with no 1e-12 clamp in the momentum and the DRF cosines on unit vectors."""

    def accumulate_momentum(self, momentum, grad):
        return momentum * self.decay + _plain_l1(grad)

    def drf_mask(self, model_grads):
        units = [F.normalize(g, dim=1) for g in model_grads]
        n = len(units)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        similarity = sum(F.cosine_similarity(units[i], units[j], dim=1) for i, j in pairs) / len(pairs)
        return (similarity >= self.threshold).to(model_grads[0].dtype).unsqueeze(1)


# --- models, data, machine --------------------------------------------------------------------------

class AverageLogits(nn.Module):
    """The ensemble torchattacks attacks: the mean of the members' logits."""

    def __init__(self, models):
        super().__init__()
        self.members = nn.ModuleList(models)

    def forward(self, x):
        return sum(model(x) for model in self.members) / len(self.members)


class MeanSoftmax(nn.Module):
    """A held-out ensemble target: log of the members' mean softmax (the DVERGE paper's output)."""

    def __init__(self, models):
        super().__init__()
        self.members = nn.ModuleList(models)

    def forward(self, x):
        return torch.log(torch.stack([m(x).softmax(1) for m in self.members]).mean(0))


def load_models(models_dir: Path, names, device) -> list[nn.Module]:
    """Fresh copies (the official CWA sets requires_grad=False on the models it is given)."""
    return [load_checkpoint(models_dir / f"{name}.safetensors", device=device)[0].eval() for name in names]


def load_target(models_dir: Path, name: str, device) -> nn.Module:
    """One model ``name``, or the ensemble of ``name_m0``, ``name_m1``, ... (mean softmax)."""
    if (models_dir / f"{name}.safetensors").is_file():
        return load_models(models_dir, [name], device)[0]
    members = sorted(p.stem for p in models_dir.glob(f"{name}_m*.safetensors"))
    if not members:
        raise SystemExit(f"{models_dir}: no model or ensemble named {name!r}")
    return MeanSoftmax(load_models(models_dir, members, device)).eval()


def _git(arguments) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), *arguments], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(device: torch.device, threads: int) -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"repository_commit": _git(["rev-parse", "HEAD"]),
            "attacks_uncommitted_changes": bool(_git(["status", "--porcelain", "--", "attacks"])),
            "cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "device": str(device)}
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), cudnn_benchmark=torch.backends.cudnn.benchmark)
    try:
        import torchattacks
        info["torchattacks"] = torchattacks.__version__
    except ImportError:
        info["torchattacks"] = None
    return info


# --- running and comparing ---------------------------------------------------------------------------

@dataclass
class Run:
    """One attack implementation in one configuration; ``make(steps)`` builds a callable (x, y) -> x_adv."""

    key: str  # short id, unique within a comparison
    name: str
    implementation: str  # "ours", "official", "torchattacks", "diagnostic (official)", "diagnostic (ours)"
    config: str
    make: object
    before_call: object = None  # e.g. seed the global RNG for the official AdaEA
    seconds: list = field(default_factory=list)
    cpu_seconds: list = field(default_factory=list)
    images: torch.Tensor | None = None


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_attack(run: Run, attack, x: torch.Tensor, y: torch.Tensor, batch: int, device) -> torch.Tensor:
    if run.before_call is not None:
        run.before_call()
    out = []
    for start in range(0, len(x), batch):
        xb, yb = x[start:start + batch], y[start:start + batch]
        out.append(attack(xb.clone(), yb.clone()).detach())  # a copy: the official CWA writes into its input
    _sync(device)
    return torch.cat(out)


def time_runs(runs: list[Run], steps: int, x, y, batch: int, repeats: int, device) -> None:
    """Warm up each run once (1 step on the first batch), then time all runs interleaved, ``repeats`` times."""
    for run in runs:
        run_attack(run, run.make(1), x[:batch], y[:batch], batch, device)
    for _ in range(repeats):
        for run in runs:
            attack = run.make(steps)  # built (models loaded) before the clock starts
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            images = run_attack(run, attack, x, y, batch, device)
            run.seconds.append(time.perf_counter() - start)
            run.cpu_seconds.append(time.process_time() - cpu_start)
            if run.images is None:
                run.images = images
            elif not torch.equal(run.images, images):
                print(f"note: {run.name} [{run.config}] gave different images on a repeat", file=sys.stderr)


def difference(a: torch.Tensor, b: torch.Tensor) -> dict:
    diff = (a - b).abs()
    return {"max_abs": diff.max().item(), "mean_abs": diff.mean().item(),
            "frac_gt_1e-6": (diff > PIXEL_TOLERANCE).float().mean().item(),
            "images_differing": (diff.flatten(1).max(1).values > PIXEL_TOLERANCE).float().mean().item()}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    correct = sum((model(x[s:s + batch]).argmax(1) == y[s:s + batch]).sum().item() for s in range(0, len(x), batch))
    return correct / len(x)


def build_runs(args, eps: float, device, official_cwa, official_adaea, adaea_module,
               diagnostics: bool) -> dict[str, list[Run]]:
    """The runs of each comparison at ``eps``; the first run of each group is the reference."""
    def models():
        return load_models(args.models_dir, args.surrogates, device)

    def seeded():
        torch.manual_seed(args.seed)
        if device.type == "cuda":
            torch.cuda.manual_seed_all(args.seed)

    groups: dict[str, list[Run]] = {}
    if "cwa" in args.compare:
        groups["cwa"] = [
            Run("official", "CWA", "official", "official defaults (MI_CommonWeakness)",
                lambda steps: official_cwa(models(), epsilon=eps, total_step=steps)),
            Run("ours-default", "CWA", "ours", "defaults",
                lambda steps: CWA(models(), eps=eps, steps=steps, seed=args.seed)),
            Run("ours-compatible", "CWA", "ours",
                "official-compatible: reverse_fusion=sum, outer_norm=batch, alpha=16/255/5, "
                "reverse_step_size=16/255/15",
                lambda steps: CWA(models(), eps=eps, steps=steps, alpha=16 / 255 / 5,
                                  reverse_step_size=16 / 255 / 15, inner_step_size=250.0, decay=1.0,
                                  reverse_fusion="sum", outer_norm="batch",
                                  seed=args.seed)),
        ]
    if "adaea" in args.compare:
        adaea_settings = dict(alpha=2 / 255, decay=0.9, beta=10.0, threshold=-0.3)  # the run script's (attack.py)

        def official(steps):
            return official_adaea(models(), eps=eps, alpha=2 / 255, iters=steps, momentum=0.9, threshold=-0.3,
                                  beta=10, device=device)

        def official_no_noise(steps, fixed_drf=False):
            attack = official(steps)
            if fixed_drf:
                attack.drf = types.MethodType(drf_all_pairs, attack)

            def call(x, y):
                adaea_module.torch = _TorchWithoutNoise()
                try:
                    return attack(x, y)
                finally:
                    adaea_module.torch = torch
            return call

        groups["adaea"] = [
            Run("official", "AdaEA", "official",
                "run-script settings (AdaEA_MIFGSM: alpha 2/255, momentum 0.9, beta 10, threshold -0.3)",
                official, before_call=seeded),
            Run("ours-default", "AdaEA", "ours", "defaults",
                lambda steps: AdaEA(models(), eps=eps, steps=steps, seed=args.seed)),
            Run("ours-compatible", "AdaEA", "ours", "official-compatible: agm_granularity=batch",
                lambda steps: AdaEA(models(), eps=eps, steps=steps, agm_granularity="batch", seed=args.seed,
                                    **adaea_settings)),
        ]
        if diagnostics:
            groups["adaea"] += [
                Run("official-no-noise", "AdaEA", "diagnostic (official)",
                    "official without its 0.001*randn start noise", official_no_noise, before_call=seeded),
                Run("official-no-noise-drf-fixed", "AdaEA", "diagnostic (official)",
                    "official without start noise, DRF over all pairs (our fix)",
                    lambda steps: official_no_noise(steps, fixed_drf=True), before_call=seeded),
                Run("ours-compatible-official-arithmetic", "AdaEA", "diagnostic (ours)",
                    "official-compatible, momentum / plain mean|g| (no 1e-12 clamp), DRF cosine of unit vectors",
                    lambda steps: AdaEAOfficialArithmetic(models(), eps=eps, steps=steps, agm_granularity="batch",
                                                          seed=args.seed, **adaea_settings)),
            ]
    if "mifgsm" in args.compare:
        try:
            import torchattacks
        except ImportError:
            print("torchattacks is not installed: the MI-FGSM comparison is left out", file=sys.stderr)
        else:
            alpha = eps / args.steps
            groups["mifgsm"] = [
                Run("torchattacks", "MI-FGSM", "torchattacks",
                    "MIFGSM on the mean of the logits, alpha eps/steps, decay 1",
                    lambda steps: torchattacks.MIFGSM(AverageLogits(models()).eval(), eps=eps, alpha=alpha,
                                                      steps=steps, decay=1.0)),
                Run("ours", "MI-FGSM", "ours", "Ens(fusion=logits), alpha eps/steps, decay 1",
                    lambda steps: Ens(models(), eps=eps, alpha=alpha, steps=steps, decay=1.0, fusion="logits",
                                      seed=args.seed)),
            ]
            if diagnostics:
                groups["mifgsm"].append(
                    Run("ours-plain-mean", "MI-FGSM", "diagnostic (ours)",
                        "Ens, momentum / plain mean|g| (no 1e-12 clamp)",
                        lambda steps: EnsPlainMean(models(), eps=eps, alpha=alpha, steps=steps, decay=1.0,
                                                   fusion="logits", seed=args.seed)))
    return groups


def eps_label(eps: float) -> str:
    return f"{eps * 255:g}/255"


def parse_args(argv=None):
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(
        description="Time our CWA, AdaEA and Ens against the official CWA and AdaEA code and torchattacks' MIFGSM "
                    "on the same surrogates, images, batch and threads, and compare the adversarial images. "
                    "Prints a markdown table and writes JSON.",
        epilog="The official code is imported from your own copies (never from this repository): "
               "git checkouts of github.com/huanranchen/AdversarialAttacks and github.com/CHENBIN99/AdaEA, "
               "or any folder holding their attacks/ resp. attack/ package.")
    parser.add_argument("--cwa-code", type=Path, default=os.environ.get("RBE_CWA_CODE"),
                        help="folder of a copy of huanranchen/AdversarialAttacks (default: $RBE_CWA_CODE)")
    parser.add_argument("--adaea-code", type=Path, default=os.environ.get("RBE_ADAEA_CODE"),
                        help="folder of a copy of CHENBIN99/AdaEA (default: $RBE_ADAEA_CODE)")
    parser.add_argument("--compare", default=",".join(COMPARISONS),
                        help=f"comma-separated subset of {', '.join(COMPARISONS)} (default: all)")
    parser.add_argument("--device", default="cuda" if cuda else "cpu",
                        help="cpu or cuda[:i] (default: cuda where there is one, else cpu)")
    parser.add_argument("--n", type=int, default=None, help="number of test images (default: 512 on cuda, 32 on cpu)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 512 on cuda, 32 on cpu)")
    parser.add_argument("--eps", default=None,
                        help="comma-separated Linf budgets, in units of 1/255 (default: 8,16 on cuda, 8 on cpu)")
    parser.add_argument("--steps", type=int, default=10, help="attack iterations (default 10)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs of each attack after its warm-up; the minimum is reported "
                             "(default: 3 on cuda, 1 on cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: 1 on cpu, where process CPU time then measures the "
                             "work even on a shared machine; torch's choice on cuda)")
    parser.add_argument("--seed", type=int, default=0, help="seed of our attacks and of the global RNG "
                        "before each official AdaEA run (default 0)")
    parser.add_argument("--surrogates", default=",".join(SURROGATES),
                        help=f"comma-separated surrogate models (default: {','.join(SURROGATES)})")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help="comma-separated held-out targets: a model name, or an ensemble prefix NAME "
                             "whose NAME_m*.safetensors members are averaged (mean softmax; default: "
                             f"{','.join(TARGETS)})")
    parser.add_argument("--models-dir", type=Path,
                        default=Path(os.environ.get("RBE_MODELS") or REPO.parent / "shared" / "models"),
                        help="folder of the safetensors checkpoints (default: $RBE_MODELS or ../shared/models)")
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("RBE_DATA") or REPO.parent / "shared" / "data" /
                                     "cifar10_slice.npz"),
                        help="CIFAR-10 data (default: $RBE_DATA or ../shared/data/cifar10_slice.npz)")
    parser.add_argument("--no-diagnostics", dest="diagnostics", action="store_false",
                        help="leave out the diagnostic runs, which run by default (patched official AdaEA; ours "
                             "without its 1e-12 clamp and, for AdaEA, with the official DRF cosine)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON results (default: benchmarks/results/references_<device type>.json)")
    args = parser.parse_args(argv)
    args.device = torch.device(args.device)
    on_gpu = args.device.type == "cuda"
    args.n = args.n or (512 if on_gpu else 32)
    args.batch = args.batch or (512 if on_gpu else 32)
    args.threads = args.threads or (None if on_gpu else 1)
    args.eps = args.eps or ("8,16" if on_gpu else "8")
    args.repeats = args.repeats or (3 if on_gpu else 1)
    args.compare = [c.strip() for c in args.compare.split(",") if c.strip()]
    unknown = set(args.compare) - set(COMPARISONS)
    if unknown:
        parser.error(f"unknown comparison(s) {sorted(unknown)}; choose from {COMPARISONS}")
    args.eps = [float(e) / 255 for e in args.eps.split(",")]
    args.surrogates = [s.strip() for s in args.surrogates.split(",") if s.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.out = args.out or REPO / "benchmarks" / "results" / f"references_{args.device.type}.json"
    for flag, needed in (("--cwa-code", "cwa"), ("--adaea-code", "adaea")):
        if needed in args.compare and getattr(args, flag[2:].replace("-", "_")) is None:
            parser.error(f"{flag} (or ${'RBE_CWA_CODE' if needed == 'cwa' else 'RBE_ADAEA_CODE'}) is needed "
                         f"for the {needed} comparison; or leave it out with --compare")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    info = machine_info(device, threads)
    print(f"# machine: {info['cpu']} ({info['logical_cpus']} logical CPUs, {threads} torch threads)"
          + (f", {info['gpu']}" if device.type == "cuda" else "") + f"; torch {info['torch']}", flush=True)

    official_cwa = official_adaea = adaea_module = None
    references = {}
    if "cwa" in args.compare:
        official_cwa = load_official_cwa(args.cwa_code, device)
        references["cwa"] = {"repository": "huanranchen/AdversarialAttacks", "commit": code_version(args.cwa_code),
                             "class": "attacks/AdversarialInput/CommonWeakness.py:MI_CommonWeakness"}
    if "adaea" in args.compare:
        official_adaea, adaea_module = load_official_adaea(args.adaea_code)
        references["adaea"] = {"repository": "CHENBIN99/AdaEA", "commit": code_version(args.adaea_code),
                               "class": "attack/AdaEA_MIFGSM.py:AdaEA_MIFGSM"}

    x, y = load_cifar10(args.data, download=False).test(args.n)
    x, y = x.to(device), y.to(device)
    targets = {name: load_target(args.models_dir, name, device) for name in args.targets}
    clean = {name: accuracy(model, x, y, args.batch) for name, model in targets.items()}

    rows = []
    for index, eps in enumerate(args.eps):
        groups = build_runs(args, eps, device, official_cwa, official_adaea, adaea_module,
                            diagnostics=args.diagnostics and index == 0)
        for group, runs in groups.items():
            print(f"# {group} at eps {eps_label(eps)} ...", file=sys.stderr, flush=True)
            time_runs(runs, args.steps, x, y, args.batch, args.repeats, device)
            reference = runs[0]
            for run in runs:
                seconds, cpu_seconds = min(run.seconds), min(run.cpu_seconds)
                inside = ((run.images - x).abs().max().item() <= eps + 1e-6 and run.images.min().item() >= 0
                          and run.images.max().item() <= 1)
                rows.append({
                    "comparison": group, "eps": eps, "eps_label": eps_label(eps), "key": run.key,
                    "attack": run.name, "implementation": run.implementation, "config": run.config,
                    "reference": reference.key,
                    "seconds": seconds, "seconds_all": run.seconds, "images_per_s": len(x) / seconds,
                    "cpu_seconds": cpu_seconds, "cpu_seconds_all": run.cpu_seconds,
                    "time_ratio_vs_reference": seconds / min(reference.seconds),
                    "cpu_time_ratio_vs_reference": cpu_seconds / min(reference.cpu_seconds),
                    "difference_vs_reference": difference(run.images, reference.images),
                    "difference_vs": {other.key: difference(run.images, other.images)
                                      for other in runs if other is not run},
                    "inside_eps_ball_and_0_1": inside,
                    "robust_accuracy": {name: accuracy(model, run.images, y, args.batch)
                                        for name, model in targets.items()},
                })

    with contextlib.suppress(OSError):
        info["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    result = {
        "machine": info,
        "settings": {"n": args.n, "batch": args.batch, "eps": [eps_label(e) for e in args.eps], "steps": args.steps,
                     "repeats": args.repeats, "threads": threads,
                     "timing": "wall (perf_counter) and process CPU time (process_time), each the min over "
                               "repeats, after one 1-step warm-up run per attack; models loaded before the clock",
                     "diagnostics": "first eps only" if args.diagnostics else "off",
                     "seed": args.seed, "surrogates": args.surrogates, "targets": args.targets,
                     "data": str(args.data.name), "pixel_tolerance": PIXEL_TOLERANCE},
        "references": references,
        "in_memory_adjustments": [
            "official CWA: model_distribute replaced so all surrogates sit on the chosen device (the original "
            "spreads them over torch.cuda.device_count() GPUs and divides by zero on a CPU-only machine)",
            "official CWA: called on a copy of each batch (it writes into its input tensor)",
            "official CWA: its package __init__ files are not run; utils.plot.CommonFigures (plotting, unused "
            "by MI_CommonWeakness) is stubbed during import",
            "official AdaEA: torch.manual_seed(seed) before each run (its start noise uses the global RNG)",
            "diagnostic official AdaEA runs only: randn -> zeros in its module; drf replaced by the all-pairs mean",
            "diagnostic runs of ours: subclasses defined in this script (EnsPlainMean, AdaEAOfficialArithmetic)",
        ],
        "clean_accuracy": clean,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(result))
    print(f"\nwrote {args.out}")
    return 0


def markdown_table(result: dict) -> str:
    """The main table (every run against its comparison's reference), then each run's closest other run."""
    targets = result["settings"]["targets"]
    on_cpu = result["machine"]["device"].startswith("cpu")
    lines = ["| eps | attack | run | configuration | wall s | CPU s | images/s | wall ÷ ref. | CPU ÷ ref. "
             "| max \\|Δ\\| vs ref. | values \\|Δ\\|>1e-6 | "
             + " | ".join(f"robust acc. {t}" for t in targets) + " |",
             "|" + "---|" * (11 + len(targets))]
    for r in result["rows"]:
        d = r["difference_vs_reference"]
        cpu = (f"{r['cpu_seconds']:.1f} | ", f"{r['cpu_time_ratio_vs_reference']:.2f} | ") if on_cpu else ("– | ",
                                                                                                         "– | ")
        lines.append(
            f"| {r['eps_label']} | {r['attack']} | {r['key']} ({r['implementation']}) | {r['config']} "
            f"| {r['seconds']:.1f} | {cpu[0]}{r['images_per_s']:.1f} | {r['time_ratio_vs_reference']:.2f} | {cpu[1]}"
            f"{d['max_abs']:.2e} | {100 * d['frac_gt_1e-6']:.2f} % | "
            + " | ".join(f"{100 * r['robust_accuracy'][t]:.1f} %" for t in targets) + " |")
    lines += ["", "| eps | attack | run | closest other run | max \\|Δ\\| | values \\|Δ\\|>1e-6 |",
              "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        key, d = min(r["difference_vs"].items(), key=lambda item: (item[1]["frac_gt_1e-6"], item[1]["max_abs"]))
        lines.append(f"| {r['eps_label']} | {r['attack']} | {r['key']} | {key} | {d['max_abs']:.2e} "
                     f"| {100 * d['frac_gt_1e-6']:.2f} % |")
    clean = ", ".join(f"{t} {100 * a:.1f} %" for t, a in result["clean_accuracy"].items())
    return "\n".join(lines) + f"\n\nclean accuracy: {clean}"


if __name__ == "__main__":
    sys.exit(main())
