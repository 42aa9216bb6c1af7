import pytest


def pytest_collection_modifyitems(items):
    """Tests marked ``long`` first: under pytest-xdist (``-n 2``) the longest one (the README's bash blocks, about
    2-3 min) then runs beside the rest instead of alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # a stable sort keeps the rest in order


@pytest.fixture
def tiny():
    """Settings for a run that takes well under a second."""
    return dict(runs=6, gens=4, n_real=30, n_synth=30, n_eval=40, n_ref=40, path="samples")
