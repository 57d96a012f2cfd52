"""Write a brain MR cohort made from real anatomy (nilearn's MNI152 template under random poses,
scanner grids, bias fields and noise, 6-20 mm lesions in half the cases), with manifests that
``medcam train --manifest``, cohort ``medcam explain`` and ``medcam evaluate --manifest`` accept:

    python pipelines/make_brain_mr_cohort.py --out out/brain_mr --n 24 --seed 0

The generator and its seed are the record: the same seed writes the same cohort.
"""

import argparse
from pathlib import Path

from medcam.synthetic.anatomy import write_brain_mr_cohort


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a brain MR cohort from real anatomy, with manifests.")
    parser.add_argument("--out", type=Path, required=True, help="folder for the NIfTI files and the manifests")
    parser.add_argument("--n", type=int, default=24, help="number of cases (half with lesions)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for manifest in write_brain_mr_cohort(args.out, args.n, args.seed):
        print(manifest)


if __name__ == "__main__":
    main()
