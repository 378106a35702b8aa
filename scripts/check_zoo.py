"""Every shared pretrained file's clean accuracy on the whole CIFAR-10 test set, against its README. (a script)

Loads each ``*.safetensors`` file of ``--models`` as the project does (``load_checkpoint``: all keys, the right
shapes, the file's own normalisation), measures its accuracy on all test images of ``--data``, and compares it
with the accuracy table of the folder's README.md, section "More families" (figures on all 10 000 test images).
The older files, whose README figures are on the 846-image slice, have no whole-test-set figure: their measured
accuracy is reported alone. One line per file, then a summary; the exit status is 1 if any file fails to load
(an architecture that is not registered included) or differs from its README figure by more than
``--tolerance`` points.

    python scripts/check_zoo.py --only densenet40_k12_fast_standard,resnet8_mlperf_standard
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from robustbench_ens.data import load_cifar10
from robustbench_ens.zoo import list_models, load_checkpoint
from robustbench_ens.zoo.checkpoints import registered_arch

SHARED = Path(__file__).resolve().parents[2] / "shared"
SECTION = "## More families"
# | `stem` | `arch` | family | params | acc % | ...
ROW = re.compile(r"\|\s*`(?P<stem>[^`]+)`\s*\|[^|]*\|[^|]*\|[^|]*\|\s*(?P<acc>\d+(?:\.\d+)?)\s*%\s*\|")
OK, NO_FIGURE, DIFFERS, UNKNOWN, FAILED = ("matches", "without a whole-test-set figure", "differ",
                                           "unknown architecture", "failed to load")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", type=Path, default=SHARED / "models",
                        help="folder of *.safetensors files and their README.md (default: ../shared/models)")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "cifar10.npz",
                        help="CIFAR-10 .npz whose whole test set is used (default: ../shared/data/cifar10.npz)")
    parser.add_argument("--only", help="comma-separated file stems to check (default: every file)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    parser.add_argument("--batch-size", type=int, default=500, help="images per forward pass (default 500)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="points of accuracy (default 0.05)")
    args = parser.parse_args(argv)
    stems = sorted(path.name.removesuffix(".safetensors") for path in args.models.glob("*.safetensors"))
    if args.only:
        wanted = [stem.strip() for stem in args.only.split(",") if stem.strip()]
        missing = sorted(set(wanted) - set(stems))
        if missing:
            parser.error(f"--only names files that {args.models} does not hold: {', '.join(missing)}")
        stems = [stem for stem in stems if stem in wanted]
    if not stems:
        parser.error(f"no *.safetensors files to check in {args.models}")
    args.stems = stems
    return args


def readme_accuracies(readme: Path) -> dict[str, float]:
    """``{stem: accuracy %}`` from the table of the README's "More families" section (whole-test-set figures)."""
    if not readme.is_file():
        return {}
    text = readme.read_text()
    start = text.find(SECTION)
    if start < 0:
        return {}
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:] if end < 0 else text[start:end]
    return {match["stem"]: float(match["acc"]) for match in ROW.finditer(section)}


@torch.inference_mode()
def count_correct(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                  device: str, desc: str) -> int:
    batches = zip(images.split(batch_size), labels.split(batch_size))
    total = -(-len(labels) // batch_size)
    return sum(int((model(x.to(device)).argmax(dim=1).cpu() == y).sum())
               for x, y in tqdm(batches, total=total, desc=desc, leave=False))


def check(stem: str, path: Path, figure: float | None, images: torch.Tensor, labels: torch.Tensor,
          args: argparse.Namespace) -> tuple[str, str]:
    """(status, the line to print) for one file."""
    try:
        with safe_open(str(path), "pt") as file:
            arch = (file.metadata() or {}).get("arch")
        if arch is not None and registered_arch(arch) not in list_models():
            return UNKNOWN, f"{stem:<32} unknown architecture {arch!r}"
        model, _ = load_checkpoint(path, device=args.device)
    except Exception as error:  # a check reports every file, whatever breaks
        return FAILED, f"{stem:<32} FAILED to load: {type(error).__name__}: {error}"
    accuracy = 100 * count_correct(model, images, labels, args.batch_size, args.device, stem) / len(labels)
    head = f"{stem:<32} {model.arch:<28} {accuracy:6.2f} %"
    if figure is None:
        return NO_FIGURE, f"{head}  (no whole-test-set figure)"
    status = OK if abs(accuracy - figure) <= args.tolerance else DIFFERS
    return status, f"{head}  README {figure:6.2f} %  ({accuracy - figure:+.2f})  {'ok' if status == OK else 'DIFFERS'}"


def main(argv=None) -> int:
    args = parse_args(argv)
    figures = readme_accuracies(args.models / "README.md")
    images, labels = load_cifar10(args.data).test()
    counts: Counter = Counter()
    for stem in tqdm(args.stems, desc="files"):
        status, line = check(stem, args.models / f"{stem}.safetensors", figures.get(stem), images, labels, args)
        counts[status] += 1
        tqdm.write(line)
    parts = ", ".join(f"{counts[status]} {status}" for status in (OK, NO_FIGURE, DIFFERS, UNKNOWN, FAILED)
                      if counts[status])
    print(f"{len(args.stems)} files on {len(labels)} test images of {args.data} "
          f"(tolerance {args.tolerance} points): {parts}")
    return 1 if counts[DIFFERS] + counts[UNKNOWN] + counts[FAILED] else 0


if __name__ == "__main__":
    raise SystemExit(main())
