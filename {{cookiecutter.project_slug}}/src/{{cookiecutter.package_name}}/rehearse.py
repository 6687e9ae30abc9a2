"""make package-test: rehearse a bundle the way Kaggle runs it, before uploading it.

    make package-test NAME=<bundle>          # python -m <package> package-test --name <bundle>

1. packages/<bundle>.rehearsal/kaggle/input/<bundle>/ gets a copy of the bundle, .../input/<competition>/ the
   competition's test file, sample submission and test images (no train.csv: the bundle must not need it);
2. a new virtual environment sees only the base libraries (this interpreter's site-packages, not the project:
   neither src/ nor an editable install), as a Kaggle image has them;
3. the network is blocked: a sitecustomize.py in that environment refuses every internet connect and DNS
   lookup and logs it (a library that swallows the error still fails the rehearsal), inside a network
   namespace (unshare -rn) where the machine allows one; a probe proves the block before the run;
4. the bundle's inference.py runs there as on Kaggle: it installs the wheels with --no-index, finds the
   bundle and the competition under the input folder and writes kaggle/working/submission.csv;
5. checks: it exited cleanly, never touched the network, ran the package from its wheel, left the bundle's
   files as MANIFEST.json lists them, and wrote a submission byte-identical to what make submit writes from
   outputs/<exp>/test_preds.csv (fp16 bundles: the largest difference of the predictions is reported).

Writes packages/<bundle>.rehearsal.json (wall time, projected vs actual inference time, the checks); the
scratch folder is removed when every check passes and kept, with inference.log, when one fails.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .core.atomic import write_csv, write_json
from .core.cli import run_stage
from .core.config import load
from .core.records import file_list
from .core.errors import ConfigError, TrainingError
from .core.rundir import RunPaths, bundle_paths, get_logger, open_run, outputs_root
from .data.files import data_path, load_test
from .data.submission import submission_from_preds
from .inference.offline import post_processed
from .core.tables import read_table

PACKAGE = __package__
GUARD = '''"""make package-test's network block: every internet connect and DNS lookup fails, and is logged."""
import os
import socket

_LOG = os.environ.get("REHEARSAL_NET_LOG", "")
_INET = (socket.AF_INET, socket.AF_INET6)


def _blocked(what):
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(what + "\\n")
    raise OSError(f"network blocked by make package-test: {what}")


def _guard(method):
    def guarded(self, address, *args):
        if self.family in _INET:
            _blocked(f"{method.__name__} {address!r}")
        return method(self, address, *args)
    return guarded


socket.socket.connect = _guard(socket.socket.connect)
socket.socket.connect_ex = _guard(socket.socket.connect_ex)
socket.getaddrinfo = lambda host, *a, **k: _blocked(f"getaddrinfo {host!r}")
'''
PROBE = """import socket
try:
    socket.create_connection(("198.51.100.7", 443), timeout=3)
except OSError as e:
    print("blocked" if "make package-test" in str(e) else f"not blocked by the guard: {e}")
else:
    print("connected")
"""
ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
            "TOKENIZERS_PARALLELISM")


def make_venv(venv: Path, netlog: Path) -> Path:
    """A new environment: this interpreter's site-packages by a .pth file (their own .pth files, such as an
    editable install of this project, are not processed), the network guard as sitecustomize; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    project = Path(__file__).resolve().parents[2]
    base = [p for p in dict.fromkeys(site.getsitepackages() + [site.getusersitepackages()])
            if Path(p).is_dir() and project not in Path(p).resolve().parents]
    (Path(purelib) / "kaggle_base.pth").write_text("\n".join(base) + "\n")
    (Path(purelib) / "sitecustomize.py").write_text(GUARD)
    netlog.write_text("")
    return python


def clean_env(input_dir: Path, working: Path, netlog: Path) -> dict:
    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    return {**env, "KAGGLE_INPUT_DIR": str(input_dir), "KAGGLE_WORKING_DIR": str(working),
            "REHEARSAL_NET_LOG": str(netlog), "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}


def namespace() -> list[str]:
    """unshare -rn where this machine allows a network namespace (no interface but a downed loopback)."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-rn"]
    return []


def copy_competition(cfg, dest: Path) -> None:
    """The test file, the sample submission and, for images, the test images only."""
    dest.mkdir(parents=True)
    for name in (cfg.data.test_file, cfg.data.sample_submission_file):
        shutil.copy2(data_path(cfg, name), dest / name)
    if cfg.task == "image":
        for rel in load_test(cfg)[cfg.data.image_col].astype(str):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(data_path(cfg, rel), dest / rel)


def checks(python: Path, env: dict, prefix: list[str]) -> None:
    """Before the run: the network is blocked, and the package is not importable without the bundle's wheel."""
    probe = subprocess.run(prefix + [str(python), "-c", PROBE], env=env, capture_output=True, text=True)
    if probe.stdout.strip() != "blocked":
        raise TrainingError(f"the rehearsal could not block the network ({(probe.stdout + probe.stderr).strip()})")
    Path(env["REHEARSAL_NET_LOG"]).write_text("")  # the probe's own attempt
    found = subprocess.run([str(python), "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"], env=env,
                           capture_output=True, text=True)
    if found.returncode == 0:
        raise TrainingError(f"the rehearsal's environment imports {PACKAGE} before the bundle installs it "
                            f"({found.stdout.strip()}); it would not test the bundle's wheel")


def unchanged(bundle_copy: Path, manifest: dict) -> list[str]:
    now = {f["path"]: f["sha256"] for f in file_list(bundle_copy)}
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    return sorted(p for p in set(now) | set(listed) if now.get(p) != listed.get(p))


def reference(bundle, manifest: dict, cfg, paths, label_map, out: Path) -> bytes:
    """What make submit writes for the experiment now: built from outputs/<exp>/test_preds.csv the same way
    (post-processed with the bundle's post.json when it has a post_method)."""
    preds = post_processed(bundle, manifest, paths.require(paths.test_preds, "predict"),
                           out.with_name("reference_post.csv"), cfg.data.id_col, label_map)
    sub = submission_from_preds(cfg, label_map, preds, f"re-run make predict EXP={paths.exp}")
    write_csv(out, sub)
    return out.read_bytes()


def largest_difference(ours: Path, theirs: Path, id_col: str) -> float:
    a, b = (read_table(p, dtype={id_col: str}).set_index(id_col) for p in (ours, theirs))
    return float(np.abs(a.loc[b.index, b.columns].to_numpy() - b.to_numpy()).max())


def rehearse(bundle, manifest: dict, cfg, paths, label_map, scratch: Path) -> dict:
    """Steps 1-5 of the module's docstring; the result, or TrainingError naming the failed check."""
    input_dir, working = scratch / "kaggle" / "input", scratch / "kaggle" / "working"
    copy = input_dir / manifest["slug"]  # Kaggle mounts a dataset under its slug
    shutil.copytree(bundle.root, copy)
    competition = manifest["competition"] if manifest["competition"] != copy.name else f"{copy.name}-competition"
    copy_competition(cfg, input_dir / competition)
    working.mkdir(parents=True)
    netlog = scratch / "network.log"
    python = make_venv(scratch / "venv", netlog)
    env, prefix = clean_env(input_dir, working, netlog), namespace()
    checks(python, env, prefix)
    expected = reference(bundle, manifest, cfg, paths, label_map, scratch / "reference.csv")
    start = time.perf_counter()
    with open(scratch / "inference.log", "w") as log_file:
        done = subprocess.run(prefix + [str(python), str(copy / "inference.py"), "--work", str(scratch / "work")],
                              cwd=working, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    tail = (scratch / "inference.log").read_text().strip().splitlines()[-1:] or [""]
    if done.returncode:
        raise TrainingError(f"the bundle failed in the rehearsal (exit {done.returncode}): {tail[0]}; "
                            f"the whole log: {scratch / 'inference.log'}")
    if netlog.read_text().strip():
        raise TrainingError(f"the bundle tried the network: {netlog.read_text().splitlines()[0]} ({netlog})")
    run = json.loads((scratch / "work" / "bundle_run.json").read_text())
    if scratch.resolve() / "venv" not in Path(run["package_dir"]).resolve().parents:
        raise TrainingError(f"the bundle ran {PACKAGE} from {run['package_dir']}, not from its wheel")
    changed = unchanged(copy, manifest)
    if changed:
        raise TrainingError(f"the bundle's files differ from its MANIFEST.json after the run: {changed[:5]}")
    got = (working / "submission.csv").read_bytes()
    exact = got == expected
    made = RunPaths(cfg).submission  # make submit's own file, when it was run since the last make predict
    on_disk = made.read_bytes() == got if made.exists() else None
    diff = largest_difference(scratch / "work" / manifest["exp"] / "test_preds.csv", paths.test_preds,
                              cfg.data.id_col)
    if not exact and not manifest["half"]:
        raise TrainingError(f"the bundle's submission differs from make submit's for {paths.exp} (largest "
                            f"prediction difference {diff:.3g}); compare {working / 'submission.csv'} with "
                            f"{scratch / 'reference.csv'}")
    projected = manifest["budget"]["test_csv_seconds"]
    # actual: the notebook's whole run (pip install, imports, prediction), what Kaggle's limit counts
    return {"bundle": manifest["bundle"], "exp": manifest["exp"], "passed": True, "inference_seconds": round(wall, 2),
            "predict_seconds": run["predict_seconds"], "projected_seconds": projected,
            "projected_over_actual": round(projected / max(wall, 1e-9), 3),
            "identical_to_make_submit": exact, "identical_to_submissions_file": on_disk, "half": manifest["half"], "max_abs_pred_diff": diff,
            "network": "blocked by the guard" + (" in a network namespace" if prefix else ""),
            "rows": run["rows"], "versions": run["versions"]}


def run(exp: str | None, overrides: list[str], name: str | None = None) -> dict:
    name = name or exp
    if not name:
        raise ConfigError("name the bundle: make package-test NAME=<bundle> (made by make package)")
    own = load(None, [o for o in overrides if o.startswith("paths.packages=")])
    bundle = bundle_paths(own.paths.packages, name)
    if not bundle.manifest.is_file():
        raise ConfigError(f"{bundle.root} holds no bundle (no MANIFEST.json): run make package EXP=<exp> NAME={name}")
    manifest = json.loads(bundle.manifest.read_text())
    root = outputs_root(overrides)
    cfg, paths, label_map = open_run(manifest["exp"], [f"paths.outputs={root}", *overrides], "package-test")
    log = get_logger(None)
    shutil.rmtree(bundle.rehearsal, ignore_errors=True)
    bundle.rehearsal.mkdir(parents=True)
    log.info(f"rehearsing {bundle.root} in {bundle.rehearsal}: a new environment, the network blocked")
    start = time.perf_counter()
    result = rehearse(bundle, manifest, cfg, paths, label_map, bundle.rehearsal.resolve())
    result["rehearsal_seconds"] = round(time.perf_counter() - start, 2)
    write_json(bundle.rehearsal_json, result)
    shutil.rmtree(bundle.rehearsal, ignore_errors=True)
    same = "byte-identical to make submit's" if result["identical_to_make_submit"] else \
        f"not byte-identical (fp16 weights: largest prediction difference {result['max_abs_pred_diff']:.3g})"
    log.info(f"rehearsal passed in {result['rehearsal_seconds']:.1f} s: network {result['network']}, submission "
             f"{same}; inference.py ran {result['inference_seconds']:.1f} s (of which prediction "
             f"{result['predict_seconds']:.1f} s), projected {result['projected_seconds']:.1f} s "
             f"(x{result['projected_over_actual']:.2f}) -> {bundle.rehearsal_json}")
    return result


def main(argv=None):
    run_stage(run, argv, options=("--name",))


if __name__ == "__main__":
    main()
