import ast
from pathlib import Path

import numpy as np

from madloop.rng import RUNS_PER_BLOCK, Role, RunRNG, Streams, generator, role_id


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


def test_role_names_are_the_stream_keys_results_were_drawn_with():
    # A role's text keys its stream: changing one changes every result drawn from it.
    assert {role.name: role.value for role in Role} == dict(
        REAL="real", BUDGET="budget", TRAIN="train", SYNTH="synth", EVAL="eval", FLOOR="floor", REFERENCE="reference",
        GRID="grid", CANDIDATES="candidates", CURATE="curate", CORRECT="correct", FIT="fit", INIT="init",
        GENERATOR="generator", DISCRIMINATOR="discriminator", AUX_SAMPLES="aux-samples", AUX_FIT="aux-fit",
        FEATURES="features", STUDY_REAL="study/real")
    assert Role.metric("sliced_w2") == "metric/sliced_w2"
    assert (Role.coupling(2), Role.curation_round(3), Role.split("mnist")) == ("coupling 2", "round-3", "split/mnist")
    assert RunRNG(0, range(0, 1), 1, Role.SYNTH).child(Role.FIT).role == "synth/fit"


def test_an_enum_role_keys_the_stream_its_text_did():
    # Role became an enum (issue 27): each key is the crc32 of the text the results were drawn with, unchanged.
    assert [role_id(r) for r in (Role.REAL, Role.TRAIN, Role.SYNTH, Role.FEATURES)] == [
        2525808981, 1550247075, 605303206, 3217087507]
    assert all(role_id(r) == role_id(r.value) and f"{r}" == str(r) == r.value for r in Role)
    np.testing.assert_array_equal(RunRNG(7, range(0, 3), 2, Role.TRAIN).child(Role.INIT).child(Role.GENERATOR).random(4),
                                  RunRNG(7, range(0, 3), 2, "train").child("init").child("generator").random(4))
    np.testing.assert_array_equal(generator(7, 1, Role.metric("sliced_w2")).random(3),
                                  generator(7, 1, "metric/sliced_w2").random(3))


def test_no_stream_is_named_by_a_free_string():
    """In madloop's code every role passed to a stream (child, Streams.at, RunRNG, generator, role_id) comes from
    rng.Role, never a string literal or an f-string written at the call (rng.py itself composes a child's key)."""
    calls = {"child": 0, "at": 1, "RunRNG": 3, "generator": 2, "role_id": 0}  # the role's position
    free = []
    for file in sorted((Path(__file__).resolve().parents[1] / "madloop").rglob("*.py")):
        if file.name == "rng.py" and file.parent.name == "madloop":
            continue
        for node in ast.walk(ast.parse(file.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in calls and len(node.args) > calls[name]:
                arg = node.args[calls[name]]
                if isinstance(arg, ast.JoinedStr) or (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    free.append(f"{file.name}:{node.lineno}")
    assert not free, f"streams named by a string written at the call (name them in rng.Role): {free}"


def test_permutations_are_permutations():
    p = Streams(0, range(0, 5)).at(1, Role.BUDGET).permutations(9)
    assert (np.sort(p, axis=1) == np.arange(9)).all()


def test_a_chunk_that_starts_inside_a_block_gets_the_same_rows():
    whole, part = RunRNG(4, range(0, 9), 2, "fit"), RunRNG(4, range(3, 9), 2, "fit")
    draws = [lambda r: r.standard_normal(5, 2), lambda r: r.standard_normal(5, dtype=np.float32), lambda r: r.random(6),
             lambda r: r.integers(40, 7), lambda r: r.chisquare(3.0, 4), lambda r: r.permutations(11)]
    for draw in draws:
        np.testing.assert_array_equal(draw(whole)[3:], draw(part))
    across = RunRNG(4, range(RUNS_PER_BLOCK - 2, RUNS_PER_BLOCK + 3), 2, "fit").random(3)
    np.testing.assert_array_equal(across, RunRNG(4, range(0, RUNS_PER_BLOCK + 3), 2, "fit").random(3)[-5:])


def test_a_chunk_inside_a_block_follows_the_whole_block_through_successive_draws():
    whole, middle = RunRNG(4, range(0, 9), 2, "init"), RunRNG(4, range(2, 5), 2, "init", total=9)
    for shape in ((3, 4), (5,), (2, 2)):  # each draw moves the block's generator by all 9 rows
        np.testing.assert_array_equal(whole.random(*shape)[2:5], middle.random(*shape))
    child = RunRNG(4, range(0, 9), 2, "init").child("aux").random(6)
    np.testing.assert_array_equal(child[2:5], RunRNG(4, range(2, 5), 2, "init", total=9).child("aux").random(6))
