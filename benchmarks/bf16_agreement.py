"""How much bf16 autocast changes an attack's results: the same attack crafted in float32 and in bf16.

For each attack, on the same K surrogates and test images, the adversarial images are crafted
twice (float32; inside ``torch.autocast(dtype=torch.bfloat16)``) and every target is evaluated
on both. Reported: the targets' robust accuracy under each, their difference in points, and
the share of pixels where the two sets of images differ. The tolerance tested in
``tests/test_acceleration.py`` is stated in ``benchmarks/README.md`` from these figures.

Example::

    python benchmarks/bf16_agreement.py --models ../shared/models --data ../shared/data/cifar10_slice.npz \\
        --device cuda --n 512
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arguments import benchmark_parser  # noqa: E402  (this folder)
from attacks import create_attack  # noqa: E402
from defenses import Ensemble  # noqa: E402
from robustbench_ens import environment  # noqa: E402
from robustbench_ens.data import load_cifar10  # noqa: E402
from robustbench_ens.metrics import predict  # noqa: E402
from robustbench_ens.zoo import load_checkpoint  # noqa: E402

SURROGATES = ("resnet20_a_standard", "resnet32_a_standard", "resnet44_a_standard", "resnet56_a_standard")
TARGETS = {"baseline-ens": [f"resnet20_b_baseline_m{i}" for i in range(3)],
           "dverge-s0": [f"resnet20_b_dverge_s0_m{i}" for i in range(3)],
           "resnet2b-at": ["resnet2b_at2"]}
ATTACKS = ("ens", "cwa", "adaea", "svre")


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--n", type=int, default=128, help="test images (default 128)")
    parser.add_argument("--batch", type=int, default=512, help="images per attack call (default 512)")
    parser.add_argument("--eps", type=float, default=8 / 255, help="Linf budget (default 8/255)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default benchmarks/results/bf16_agreement_<device>.json)")
    args = parser.parse_args(argv)
    device = environment.select_device(args.device)
    environment.configure_threads()
    images, labels = load_cifar10(args.data).test(args.n)
    load = lambda name: load_checkpoint(args.models / f"{name}.safetensors", device=device)[0]  # noqa: E731
    surrogates = [load(name) for name in SURROGATES]
    targets = {name: Ensemble([load(m) for m in members]) if len(members) > 1 else load(members[0])
               for name, members in TARGETS.items()}
    rows = []
    for name in ATTACKS:
        attack = create_attack(name, surrogates, eps=args.eps)
        crafted = {}
        for precision in ("fp32", "bf16"):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                crafted[precision] = torch.cat([attack(images[i:i + args.batch].to(device),
                                                       labels[i:i + args.batch].to(device)).cpu()
                                                for i in range(0, len(images), args.batch)])
        differing = (crafted["fp32"] - crafted["bf16"]).abs().gt(1e-6).float().mean().item()
        for target, model in targets.items():
            acc = {p: (predict(model, x, args.batch, device) == labels).float().mean().item()
                   for p, x in crafted.items()}
            rows.append({"attack": name, "target": target, "robust_fp32": acc["fp32"], "robust_bf16": acc["bf16"],
                         "difference_points": 100 * (acc["bf16"] - acc["fp32"]), "pixels_differing": differing})
            print(f"{name:>6} -> {target:>13}: fp32 {100 * acc['fp32']:5.1f}%  bf16 {100 * acc['bf16']:5.1f}%  "
                  f"({rows[-1]['difference_points']:+.1f} points; {100 * differing:.1f}% of pixels differ)", flush=True)
    out = args.out or REPO / "benchmarks" / "results" / f"bf16_agreement_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": environment.hardware(device), "n": args.n, "eps": args.eps,
                               "surrogates": SURROGATES, "rows": rows}, indent=1))
    print(f"max |difference|: {max(abs(r['difference_points']) for r in rows):.1f} points; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
