"""The ``mixstream`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from mixstream import MixtureModel

    rng = np.random.default_rng(args.seed)
    K, D, n = 6, 4, 6000
    means = rng.normal(scale=8.0, size=(K, D))
    labels = rng.integers(K, size=n)
    X = means[labels] + rng.normal(size=(n, D))
    model = MixtureModel(n_components=12, allocation="dp", algorithm="vb", random_state=args.seed)
    model.fit(X)
    active = int((model.weights_ > 0.01).sum())
    ari = adjusted_rand_score(labels, model.predict(X))
    print(
        f"fitted {n} x {D} points: {active} clusters hold > 1% of the weight "
        f"(true {K}); ARI {ari:.3f}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixstream", description="Fit mixture models to data bigger than memory."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit a DP mixture to a synthetic dataset")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
