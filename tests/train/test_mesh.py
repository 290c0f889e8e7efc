"""Training over a device mesh (`trainer.mesh`) computes what one device computes.

The multi-device runs need fake CPU devices, which must be configured before JAX
starts: this process has already started it, so they run in one subprocess with
`XLA_FLAGS=--xla_force_host_platform_device_count=8`. The expectation is the same
recipe trained without a mesh (no sharding anywhere), in that same subprocess;
the comparison reads the run directories back here."""

import json
import shutil
import textwrap

import equinox as eqx
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from train_fixtures import batches, replace_trainer, run_on_fake_devices, sources, tiny_recipe

import seqkit.train as st

STEPS = 20


RUNNER = textwrap.dedent(
    """
    import json, sys
    import equinox as eqx
    import jax
    # As tests/conftest.py sets it for in-process tests (compile time dominates).
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_disable_most_optimizations", True)
    from train_fixtures import Crash, batches, crashing_batches, postnorm_recipe, sources
    import seqkit.train as st
    import seqkit.train._loop as loop

    def mesh_recipe(mesh):
        return postnorm_recipe(steps=STEPS, mesh=mesh)

    # Record where the trainer's own step gets its inputs and puts its outputs.
    seen = {}
    make_train_step = loop.make_train_step

    def recording(optimizer, mesh=None, **options):
        step = make_train_step(optimizer, mesh, **options)

        def wrapped(model, state, opt_state, batch, key):
            out = step(model, state, opt_state, batch, key)
            if "in" not in seen:
                arrays = lambda t: jax.tree.leaves(eqx.filter(t, eqx.is_array))
                seen["in"] = [where(x) for x in arrays((model, state, opt_state))]
                seen["out"] = [where(x) for x in arrays(out[:3])]
                seen["devices"] = [len(x.sharding.device_set) for x in arrays(out[:3])]
                seen["batch"] = where(batch["inputs"])
            return out

        return wrapped

    loop.make_train_step = recording

    def where(x):
        sharding = getattr(x, "sharding", None)  # NumPy batches have none
        return str(getattr(sharding, "spec", type(sharding).__name__))

    out, STEPS = sys.argv[1], int(sys.argv[2])
    report = {"devices": jax.device_count()}

    def run(name, run_dir, mesh, **kw):
        seen.clear()
        try:
            st.train(mesh_recipe(mesh=mesh), f"{out}/{run_dir}", sources=sources(), **kw)
        except Crash:
            report["crashed"] = True
        finally:
            report[name] = dict(seen)

    run("single", "single", "", batches=batches, progress=False)
    run("data8", "data8", "data:8", batches=batches, progress=True)
    # Dies fetching batch 13 (last checkpoint: step 10), then resumed on the same mesh.
    run("crashed", "data4model2", "data:4,model:2", batches=crashing_batches(13), progress=False)
    run("resumed", "data4model2", "data:4,model:2", batches=batches, progress=False, resume=True)
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def mesh_runs(tmp_path_factory):
    """The runs of `RUNNER` on 8 fake CPU devices: `(directory, report, stderr)`."""
    out = tmp_path_factory.mktemp("mesh")
    report, stderr = run_on_fake_devices(out, RUNNER, 8, str(STEPS))
    return out, report, stderr


def load(run_dir):
    _, model, state, _, meta = st.load_run(run_dir, sources=sources())
    leaves = jax.tree.leaves(eqx.filter((model, state), eqx.is_inexact_array))
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [np.asarray(x) for x in leaves], records, meta


def assert_same_run(run_dir, reference_dir):
    leaves, records, meta = load(run_dir)
    ref_leaves, ref_records, ref_meta = load(reference_dir)
    assert meta["step"] == ref_meta["step"] == STEPS
    assert len(leaves) == len(ref_leaves) > 0
    for a, b in zip(leaves, ref_leaves, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert [(r["step"], r["split"]) for r in records] == [(r["step"], r["split"]) for r in ref_records]
    assert len(records) >= 6  # train every 5 steps, val at 10, final val and test
    for r, ref in zip(records, ref_records, strict=True):
        np.testing.assert_allclose(r["loss"], ref["loss"], rtol=1e-5)
        assert r["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-6)
    results = json.loads((run_dir / "results.json").read_text())
    ref_results = json.loads((reference_dir / "results.json").read_text())
    for k in ("val_loss", "test_loss"):
        np.testing.assert_allclose(results[k], ref_results[k], rtol=1e-5)


def test_data_parallel_equals_one_device(mesh_runs):
    out, report, stderr = mesh_runs
    assert report["devices"] == 8
    assert "mesh data:8 over 8 cpu devices" in stderr
    # Reference: no mesh, one device, nothing sharded.
    single = report["single"]
    assert set(single["out"]) == {"SingleDeviceSharding"} and set(single["devices"]) == {1}
    assert single["batch"] == "NoneType"
    # data:8: the batch split over 8 devices, everything else replicated on all 8.
    data8 = report["data8"]
    assert data8["batch"] == str(P("data"))
    assert set(data8["out"]) == {str(P())} and set(data8["devices"]) == {8}
    # BatchNorm statistics over the whole batch: with 2 examples per device, statistics
    # per device would give another run altogether.
    assert_same_run(out / "data8", out / "single")


def test_parameter_sharding_killed_and_resumed_equals_one_device(mesh_runs):
    out, report, _ = mesh_runs
    assert report["crashed"]
    r = report["crashed"]
    assert r["batch"] == str(P("data"))
    assert str(P("model")) in r["out"] and str(P(None, "model")) in r["out"]  # vectors and matrices
    assert str(P()) in r["out"]  # odd-sized and scalar leaves stay replicated
    assert r["out"] == r["in"]  # the step keeps its inputs' placement: no recompilation
    assert set(r["devices"]) == {8}
    # The resumed step got the checkpoint's host arrays placed on the mesh again.
    assert report["resumed"]["in"] == r["in"]
    # Steps 1-10 ran before the crash, 11-20 after the resume.
    assert_same_run(out / "data4model2", out / "single")


def test_param_spec_picks_the_largest_divisible_dimension():
    assert st.parse_mesh("model:2, data:4") == {"data": 4, "model": 2}
    assert st.parse_mesh("data:8") == {"data": 8, "model": 1}
    assert st.parse_mesh("") == st.parse_mesh("none") == {}
    from seqkit.train._mesh import param_spec

    assert param_spec((8, 6), 2) == P("model")
    assert param_spec((3, 6, 4), 2) == P(None, "model")
    assert param_spec((6, 6), 2) == P("model")  # a tie: the first
    assert param_spec((3, 5), 2) == P()
    assert param_spec((), 2) == P()
    assert param_spec((8, 6), 1) == P()


@pytest.mark.parametrize(
    "mesh, trainer, match",
    [
        ("pipe:2", {}, r"trainer\.mesh: expected axis names data or model; got 'pipe'"),
        ("data:0", {}, r"trainer\.mesh: expected a size >= 1 for axis 'data'; got 0"),
        ("data", {}, r"trainer\.mesh: expected AXIS:SIZE entries .*; got 'data'"),
        ("data:2,data:2", {}, r"expected each axis at most once; got 'data' twice"),
        ("data:x", {}, r"expected an int size for axis 'data'; got 'x'"),
        ("data:3", {}, r"trainer\.batch_size: expected a multiple of the data axis size 3 .* got 16"),
        ("data:2", {"eval_batch_size": 9}, r"trainer\.eval_batch_size: expected a multiple .* 2 .* got 9"),
        (
            "data:{many}",
            {"batch_size": 64, "eval_batch_size": 64},
            r"trainer\.mesh=data:\d+ needs \d+ devices; \d+ exist .*"
            r"XLA_FLAGS=--xla_force_host_platform_device_count=\d+",
        ),
    ],
)
def test_bad_mesh_is_a_one_line_error_before_anything_is_written(tmp_path, mesh, trainer, match):
    many = 2 * jax.device_count()  # more devices than this process has
    recipe = replace_trainer(tiny_recipe(), **trainer)
    recipe = st.override(recipe, [f"trainer.mesh={mesh.format(many=many)}"])
    with pytest.raises(st.RecipeError, match=match) as info:
        st.train(recipe, tmp_path / "run", sources=sources(), batches=batches, progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_resume_accepts_another_mesh_but_not_another_recipe(mesh_runs, tmp_path):
    # The comparison of a run's configuration leaves the mesh out; the rest still counts.
    run = tmp_path / "run"
    shutil.copytree(mesh_runs[0] / "single", run)  # a finished run: resuming it compiles nothing
    config = json.loads((run / "config.json").read_text())
    recipe = st.recipe_from_dict(config)
    kw = dict(resume=True, sources=sources(), batches=batches, progress=False)
    for edit in ("data:8", None):  # another mesh; a run saved before the key existed
        if edit is None:
            del config["trainer"]["mesh"]
        else:
            config["trainer"]["mesh"] = edit
        (run / "config.json").write_text(json.dumps(config))
        assert st.train(recipe, run, **kw)["steps"] == STEPS
    with pytest.raises(st.RecipeError, match="different configuration"):
        st.train(replace_trainer(recipe, seed=4), run, **kw)
