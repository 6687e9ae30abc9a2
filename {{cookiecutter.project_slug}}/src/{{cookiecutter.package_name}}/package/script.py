"""Kaggle inference for a bundle made by make package: install its wheels offline, predict, write submission.csv.

    python /kaggle/input/<bundle>/inference.py [--data DIR] [--out FILE] [--work DIR] [--bundle DIR]

inference.ipynb holds the same code, cell by cell. Needs only the bundle (a Kaggle Dataset) and the
competition's test files; never the project folder, a model hub or the network. Without --data it looks
for the folder under /kaggle/input that holds the test file and the sample submission; without --out it
writes /kaggle/working/submission.csv.
"""
# %%
BUNDLE = ""  # the bundle's name: make package writes it
PACKAGE = ""  # the project's Python package, installed from the bundle's wheels/

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

INPUT = Path(os.environ.get("KAGGLE_INPUT_DIR", "/kaggle/input"))
WORKING = Path(os.environ.get("KAGGLE_WORKING_DIR", "/kaggle/working"))


# %%
def folders():
    """The folders a Kaggle notebook's inputs can sit in: /kaggle/input/<x>/ and one level deeper."""
    return sorted(p for p in list(INPUT.glob("*")) + list(INPUT.glob("*/*")) if p.is_dir())


def find_bundle():
    """This bundle: beside this script, else the input folder whose MANIFEST.json names it."""
    here = [Path(__file__).resolve().parent] if "__file__" in globals() else []
    for folder in here + folders():
        manifest = folder / "MANIFEST.json"
        if manifest.is_file() and json.loads(manifest.read_text()).get("bundle") == BUNDLE:
            return folder
    raise SystemExit(f"error: bundle {BUNDLE!r} not found beside this script or under {INPUT}; "
                     f"add the dataset to the notebook, or pass --bundle DIR")


def find_data(bundle, manifest):
    """The competition's folder: the input folder (not the bundle) holding the test file and the sample."""
    need = (manifest["test_file"], manifest["sample_submission_file"])
    for folder in folders():
        if folder.resolve() != bundle.resolve() and all((folder / name).is_file() for name in need):
            return folder
    raise SystemExit(f"error: no folder under {INPUT} holds {need[0]} and {need[1]}; add the competition to "
                     f"the notebook, or pass --data DIR")


def install(bundle):
    """The bundle's wheels, offline: --no-deps, the Kaggle image has the libraries (MANIFEST.json: versions)."""
    wheels = sorted(str(w) for w in (bundle / "wheels").glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--force-reinstall", "--find-links", str(bundle / "wheels"), *wheels], check=True)
    importlib.invalidate_caches()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", help="the competition's input folder (default: found under /kaggle/input)")
    parser.add_argument("--out", default=str(WORKING / "submission.csv"))
    parser.add_argument("--work", help="keep every run's test_preds.csv and bundle_run.json here")
    parser.add_argument("--bundle", help="the bundle's folder (default: found)")
    args = parser.parse_args(argv)
    bundle = Path(args.bundle) if args.bundle else find_bundle()
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    data = Path(args.data) if args.data else find_data(bundle, manifest)
    install(bundle)
    offline = importlib.import_module(f"{PACKAGE}.inference.offline")
    errors = importlib.import_module(f"{PACKAGE}.core.errors")
    try:
        return offline.predict_bundle(bundle, data, Path(args.out), Path(args.work) if args.work else None)
    except (errors.ConfigError, errors.DataError, errors.TrainingError) as e:  # one line, as the make targets
        raise SystemExit(f"error: {e}") from None


# %%
if __name__ == "__main__":
    main(sys.argv[1:])
