import pytest


@pytest.fixture
def tiny():
    """Settings for a run that takes well under a second."""
    return dict(runs=6, gens=4, n_real=30, n_synth=30, n_eval=40, n_ref=40, path="samples")
