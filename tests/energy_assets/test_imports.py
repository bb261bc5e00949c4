"""The platform's shape: no import cycles in energy_assets either (the engine's own test is tests/gpu_ops)."""

from tests.gpu_ops.test_imports import find_cycle, import_graph


def test_energy_assets_has_no_import_cycle():
    graph = import_graph("energy_assets")
    assert {"energy_assets.fleet.fleet", "energy_assets.fleet.celery_executor", "energy_assets.definitions"} <= set(
        graph
    )
    # the graph sees imports made inside functions: the executor choice imports Celery's executor only when chosen
    assert "energy_assets.fleet.celery_executor" in graph["energy_assets.fleet.executor"]
    assert "energy_assets.fleet.fleet" in graph["energy_assets.fleet.celery_executor"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
