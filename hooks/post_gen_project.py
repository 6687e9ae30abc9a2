"""Remove what the chosen task does not use: an image project keeps no text code and the reverse."""
import shutil
from pathlib import Path

TASK = "{{ cookiecutter.task }}"
PACKAGE = Path("src") / "{{ cookiecutter.package_name }}"
ONLY_FOR = {
    "image": [PACKAGE / "image.py", PACKAGE / "demo_image.py", PACKAGE / "eda_image.py",
              PACKAGE / "tricks" / "mixing.py",
              Path("tests") / "test_image.py", Path("tests") / "test_mixing.py"],
    "text": [PACKAGE / "text.py", PACKAGE / "demo_text.py", PACKAGE / "eda_text.py", PACKAGE / "pretrain.py",
             PACKAGE / "mlm_data.py", Path("tests") / "test_text.py",
             Path("tests") / "test_pretrain.py"],
}

for task, paths in ONLY_FOR.items():
    if task == TASK:
        continue
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
