"""Train a derived model outside a run: a DVERGE, ADP, GAL or TRS ensemble, a self-ensemble, a fine-tuned copy, an LGV,
MBA or cSGLD collection. (a script)

It trains with the project's code and shows progress. An interrupted DVERGE run resumes
from its last finished epoch. The result is cached under ``<cache>/<name>-<key>/``, where a
suite entry with the same name, method, bases, settings, seed and data finds it, so a
model trained on a GPU serves later CPU runs. Values after ``--train`` and ``--params`` are
TOML, with dotted keys for nested tables.

Paper scale, on a GPU (DVERGE's defaults are the paper's: 200 epochs, lr 0.1, on all of
CIFAR-10, from its baseline ensemble; 5 or 8 members take 5 or 8 ``--from`` files):

    python scripts/train_defense.py dverge --name dverge_ours --data /data/cifar10 --device cuda \\
        --from ../shared/models/resnet20_b_baseline_m0.safetensors \\
               ../shared/models/resnet20_b_baseline_m1.safetensors \\
               ../shared/models/resnet20_b_baseline_m2.safetensors

CPU scale (the ``cifar10`` suite's ``dverge_ours`` entry, about 25 min on 2 cores):

    python scripts/train_defense.py dverge --name dverge_ours --data ../shared/data/cifar10_slice.npz \\
        --from ../shared/models/resnet20_b_baseline_m{0,1,2}.safetensors \\
        --train epochs=10 lr=0.01 'milestones=[7]'

A self-ensemble on a timm ImageNet backbone from your weights (as the paper fine-tunes a ResNet-152):

    python scripts/train_defense.py self_ensemble --name crossmax_r152 --data /data/cifar10 --device cuda \\
        --params timm_model='"resnet152"' timm_weights='"/weights/resnet152.safetensors"' \\
        --train backbone.epochs=6 backbone.lr=0.01 heads.epochs=1
"""
from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import defenses  # noqa: F401  (registers the dverge, adp, gal, trs and self_ensemble methods)
from robustbench_ens import environment
from robustbench_ens.data import DataError, load_cifar10
from robustbench_ens.runner import DEFAULT_CACHE
from robustbench_ens.zoo import CheckpointError, list_methods, load_checkpoint, resolve_derived


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("method", choices=list_methods(), help="how the model is made from its bases")
    parser.add_argument("--from", dest="bases", nargs="*", default=[], type=Path, metavar="CHECKPOINT",
                        help="the trained models it starts from (.safetensors files of the zoo or ../shared/models)")
    parser.add_argument("--name", help="the name of the result, as a suite's [models] entry (default: the method)")
    parser.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides")
    parser.add_argument("--params", nargs="*", default=[], metavar="KEY=VALUE", help="the method's options")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--data", help="CIFAR-10 .npz or folder (default: $RBE_DATA, else torchvision's download)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"where the result goes (default {DEFAULT_CACHE})")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    return parser.parse_args(argv)


def parse_assignments(items: list[str], flag: str) -> dict:
    """``["a=1", "b.c='x'"]`` -> ``{"a": 1, "b": {"c": "x"}}``, each value read as TOML."""
    table: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            parsed = tomllib.loads(f"value = {value}")["value"]
        except tomllib.TOMLDecodeError:
            raise ValueError(f"{flag} {item!r}: {value!r} is not a TOML value "
                             "(quote strings: key='\"text\"')") from None
        *parents, leaf = key.split(".")
        node = table
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = parsed
    return table


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train, params = parse_assignments(args.train, "--train"), parse_assignments(args.params, "--params")
        loaded = [load_checkpoint(path) for path in args.bases]
        data = load_cifar10(args.data)
        device = environment.select_device(args.device)
        models, provenance = resolve_derived(
            args.name or args.method, args.method, [model for model, _ in loaded],
            [record["sha256"] for _, record in loaded], data, args.cache, params=params, train=train,
            seed=args.seed, device=device)
    except (ValueError, CheckpointError, DataError, FileNotFoundError) as error:  # DeviceError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(models)} model(s) in {provenance['path']} ({provenance['origin']}), sha256 {provenance['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
