import shutil

import dagster as dg
import yaml

from energy_assets.ops.local import INSTANCE_FILES


def test_the_platform_instances_show_no_community_dialog(tmp_path):
    """Dagster's "join the community" dialog opens on a localhost UI a moment after a page loads and covers it (a
    lineage browser test's click landed on its backdrop under CI load): both instance files turn it off."""
    shutil.copyfile(INSTANCE_FILES["sqlite"], tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.nux_enabled is False
    for path in INSTANCE_FILES.values():
        assert yaml.safe_load(path.read_text())["nux"] == {"enabled": False}, path
