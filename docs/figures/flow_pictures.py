"""Copy the pictures of a real ``hone flow`` run into the docs: the sharpening curve, the activity plot
and the build report (docs/figures/sharpening.png, activity.png, build.png).

    python docs/figures/flow_pictures.py                       # runs the digits flow into runs/pictures
    python docs/figures/flow_pictures.py --from runs/flow      # takes an existing flow folder's pictures

The run is the digits network (scikit-learn's 8x8 digits, a few minutes on 2 cores) built for the
ULX3S-85F. ``docs/figures/flow_pictures.json`` records which run and commit drew them (bench/stamp.py).
"""

import argparse
import json
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import stamp  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
PICTURES = {"train/sharpening.png": "sharpening.png", "net.hone.activity.png": "activity.png",
            "bitstream/build.png": "build.png"}
COMMAND = ["flow", "--dataset", "digits", "--board", "ulx3s-85f", "--json"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=pathlib.Path,
                        help="a finished flow folder to take the pictures from (default: run the digits flow)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "runs" / "pictures",
                        help="where the digits flow runs (default: runs/pictures)")
    args = parser.parse_args(argv)
    source = args.source
    if source is None:
        source = args.out
        subprocess.run([sys.executable, "-m", "hone", *COMMAND, "--out", str(source)], check=True)
    missing = [name for name in PICTURES if not (source / name).exists()]
    if missing:
        raise SystemExit(f"flow_pictures.py: {source} has no {', '.join(missing)}: not a finished hone flow folder")
    for name, target in PICTURES.items():
        shutil.copyfile(source / name, HERE / target)
        print(f"wrote docs/figures/{target} (from {source / name})")
    report = json.loads((source / "report.json").read_text()) if (source / "report.json").exists() else {}
    stamp.write(HERE / "flow_pictures.json", {"source": str(source), "pictures": sorted(PICTURES.values()),
                                               "configuration": report.get("configuration")},
                bench="flow_pictures")


if __name__ == "__main__":
    main()
