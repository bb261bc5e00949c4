"""gpu_ops.read_leaderboard: what it accepts and what `import gpu_ops` costs. Reading one leaderboard from a site
(folder, URL), a dataset folder and the Hub to the same frame: tests/energy_assets/assets/test_publish.py."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_ops import read_leaderboard
from gpu_ops.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def test_import_gpu_ops_stays_light_and_loads_the_reader_on_first_use():
    code = (
        "import json, sys, gpu_ops\n"
        "heavy = ('pandas', 'pyarrow', 'torch', 'dagster', 'energy_assets', 'huggingface_hub')\n"
        "before = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "from gpu_ops import read_leaderboard\n"
        "print(json.dumps([before, read_leaderboard.__module__, 'dagster' in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [[], "gpu_ops.reader", False]


def test_a_source_that_is_none_of_the_three_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match=r"not a site .* a dataset folder .* or a dataset repo id"):
        read_leaderboard(tmp_path)  # a folder with neither api/leaderboard.json nor data/leaderboard.parquet
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "leaderboard.json").write_text('{"rows": 3}')
    with pytest.raises(UserError, match="is not the site's leaderboard"):
        read_leaderboard(tmp_path)
    with pytest.raises(AttributeError):
        __import__("gpu_ops").no_such_name  # noqa: B018
