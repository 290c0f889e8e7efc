"""Sweep members on a mesh axis (`member_devices`): the same results as the sweep on
one device, with every member array split over the devices.

Fake CPU devices must be configured before JAX starts, so the runs happen in one
subprocess with `XLA_FLAGS=--xla_force_host_platform_device_count=4`; the
one-device sweep it is compared with runs in that same subprocess."""

import textwrap

import numpy as np
import pytest
from train_fixtures import run_on_fake_devices, sources

import seqkit.train as st

RUNNER = textwrap.dedent(
    """
    import dataclasses, json, sys
    import equinox as eqx
    import jax
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_disable_most_optimizations", True)
    import numpy as np
    from train_fixtures import batches, sources, tiny_recipe
    import seqkit.train as st
    import seqkit.train._sweep as sw

    def recipe():
        r = tiny_recipe(steps=4, log_every=1, eval_every=2, checkpoint_every=2)
        return dataclasses.replace(r, model=dataclasses.replace(r.model, norm="layer", n_layers=1))

    GRID = {"optimizer.lr": [0.01, 0.03]}
    seen = {}
    make_sweep_step = sw.make_sweep_step

    def recording(*args, **kw):
        step = make_sweep_step(*args, **kw)

        def wrapped(models, states, opt_states, batch, keys):
            out = step(models, states, opt_states, batch, keys)
            if not seen:
                arrays = jax.tree.leaves(eqx.filter(out[0], eqx.is_array))
                seen["model_devices"] = sorted({len(a.sharding.device_set) for a in arrays})
                seen["model_shards"] = sorted({a.addressable_shards[0].data.shape[0] for a in arrays})
                sharding = getattr(batch["inputs"], "sharding", None)  # NumPy on one device
                seen["batch_devices"] = 1 if sharding is None else len(sharding.device_set)
            return out

        return wrapped

    sw.make_sweep_step = recording
    out = sys.argv[1]
    report = {}
    for name, devices, per_member in (("one", None, False), ("four", 4, False), ("two_own", 2, True),
                                      ("one_own", None, True)):
        seen.clear()
        res = st.sweep(recipe(), GRID, seeds=[3, 4], run_dir=f"{out}/{name}", sources=sources(),
                       batches=batches, progress=False, per_member_data=per_member, member_devices=devices)
        report[name] = {"results": res, "seen": dict(seen)}
    try:
        st.sweep(recipe(), GRID, seeds=[3, 4, 5], run_dir=f"{out}/bad", sources=sources(), batches=batches,
                 progress=False, member_devices=4)
    except st.RecipeError as e:
        report["error"] = str(e)
    report["bad_dir_exists"] = __import__("os").path.exists(f"{out}/bad")
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def device_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep_devices")
    report, _ = run_on_fake_devices(out, RUNNER, 4)
    return out, report


def _member_scores(results):
    return np.array([[m["val_loss"], m["test_loss"], m["val_accuracy"]] for m in results["members"]])


def test_members_split_over_devices_match_one_device(device_runs):
    out, report = device_runs
    one, four = report["one"], report["four"]
    # Four members on four devices: every model array is split, one member each;
    # the shared batch is copied to all four.
    assert four["seen"]["model_devices"] == [4] and four["seen"]["model_shards"] == [1]
    assert four["seen"]["batch_devices"] == 4
    assert one["seen"]["model_devices"] == [1]
    np.testing.assert_allclose(_member_scores(four["results"]), _member_scores(one["results"]), rtol=1e-5)
    # Each member on its own data order, two members per device.
    own, one_own = report["two_own"], report["one_own"]
    assert own["seen"]["model_devices"] == [2] and own["seen"]["model_shards"] == [2]
    assert own["seen"]["batch_devices"] == 2
    np.testing.assert_allclose(_member_scores(own["results"]), _member_scores(one_own["results"]), rtol=1e-5)
    # The members differ (a real comparison, not four copies of one number).
    assert len({round(x, 6) for x in _member_scores(one["results"])[:, 0]}) == 4


def test_uneven_member_split_is_one_error_before_writing(device_runs):
    _, report = device_runs
    assert "member_devices=4 must divide the 6 members" in report["error"]
    assert report["bad_dir_exists"] is False


def test_more_member_devices_than_the_process_has(tmp_path):
    recipe = st.Recipe()
    has_one = r"member_devices=2 \(--member-devices\), but this process has 1 device\(s\) .*XLA_FLAGS"
    with pytest.raises(st.RecipeError, match=has_one):
        st.sweep(
            recipe,
            {"optimizer.lr": [0.01, 0.02]},
            run_dir=tmp_path / "x",
            sources=sources(),
            member_devices=2,
            progress=False,
        )
    assert not (tmp_path / "x").exists()


def test_a_trainer_mesh_is_refused_first(tmp_path):
    """A mesh of more devices than this process has: the sweep's own refusal (members,
    not batches, go on devices) comes first, not the device count's."""
    recipe = st.override(st.Recipe(), ["trainer.mesh=data:2"])
    with pytest.raises(st.RecipeError, match="a sweep places members, not batches, on devices"):
        grid = {"optimizer.lr": [0.01, 0.02]}
        st.sweep(recipe, grid, run_dir=tmp_path / "x", sources=sources(), progress=False)
    assert not (tmp_path / "x").exists()
