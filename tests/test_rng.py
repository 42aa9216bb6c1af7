import numpy as np

from madloop.rng import RUNS_PER_BLOCK, RunRNG, Streams


def test_chunking_does_not_change_any_run_draws():
    runs = 2 * RUNS_PER_BLOCK + 17
    whole = RunRNG(3, range(0, runs), 5, "synth").standard_normal(4, 2)
    parts = [RunRNG(3, range(a, min(a + RUNS_PER_BLOCK, runs)), 5, "synth").standard_normal(4, 2) for a in range(0, runs, RUNS_PER_BLOCK)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))


def test_a_run_draws_do_not_depend_on_the_number_of_runs():
    few = RunRNG(1, range(0, 7), 2, "real").standard_normal(3)
    many = RunRNG(1, range(0, 200), 2, "real").standard_normal(3)
    np.testing.assert_array_equal(few, many[:7])


def test_subset_replays_the_same_rows():
    rng = RunRNG(0, range(0, 10), 1, "train")
    np.testing.assert_array_equal(rng.subset([3, 7]).random(5), rng.random(5)[[3, 7]])


def test_streams_differ_by_seed_generation_role_and_child():
    base = RunRNG(0, range(0, 4), 1, "synth").random(8)
    for other in (RunRNG(1, range(0, 4), 1, "synth"), RunRNG(0, range(0, 4), 2, "synth"),
                  RunRNG(0, range(0, 4), 1, "real"), RunRNG(0, range(0, 4), 1, "synth").child("x")):
        assert not np.array_equal(base, other.random(8))
    # Runs within one block get different numbers.
    assert len({tuple(row) for row in base}) == 4


def test_permutations_are_permutations():
    p = Streams(0, range(0, 5)).at(1, "budget").permutations(9)
    assert (np.sort(p, axis=1) == np.arange(9)).all()
