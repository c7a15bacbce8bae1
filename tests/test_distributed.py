"""Data-parallel training on MPI (darknet_py/distributed.py), run for real with `mpirun -n 2`
on this machine: two ranks with a global batch of 16 train the weights one process trains on
the same images (BN rolling statistics and momentum included); a run resumed with another
number of ranks continues the same schedule; a rank that fails, hits NaN or dies stops the
job with a clear message and the last checkpoint on disk whole.

Needs mpi4py and an MPI (the `mpi` extra: Open MPI from the package registry); without them
the MPI tests skip, and fail where DARKNET_PY_REQUIRE_REFERENCE=1 (CI)."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from darknet_py.train import train
from darknet_py.training import CHECKPOINT_STATE_SUFFIX, Shard, TrainingStep
from conftest import small_yolo_cfg

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = Path(darknet_py.__file__).resolve().parent.parent
# 2 ranks x 8 images per forward vs 1 process with batch 16 in 2 subdivisions of 8: the same
# forwards, the same images. What differs is the order float32 sums run in (the allreduce adds
# rank 1's gradients to rank 0's buffer; BN rolling statistics merged in float64), so values
# agree to a few float32 ulps, far below one SGD step (lr 0.001 / 16 per unit gradient).
# Parameters: atol + rtol*|ref| elementwise. Momentum buffers hold unnormalised sums of the
# gradients of 16 images x every pixel, with cancellation (elements near 0 out of terms of
# size ~10), so their rounding scales with the buffer, not the element: atol + rtol*max|ref|.
RTOL, ATOL = 1e-5, 1e-6
MPI_TIMEOUT = 120  # a run takes seconds; a rank left waiting (a broken stop) fails here


def _mpi_missing(reason: str):
    if os.environ.get("DARKNET_PY_REQUIRE_REFERENCE") == "1":
        pytest.fail(f"{reason}: the data-parallel tests need the mpi extra (pip install '.[test,mpi]')")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def mpirun():
    """The launcher command with the flags this machine needs (Open MPI: root allowed, more ranks than cores)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError as e:
        _mpi_missing(f"mpi4py is not installed ({e})")
    launcher = next((p for p in (shutil.which("mpirun", path=str(Path(sys.executable).parent)),
                                 shutil.which("mpirun"), shutil.which("mpiexec")) if p), None)
    if launcher is None:
        _mpi_missing("no mpirun or mpiexec on PATH")
    version = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=60)
    open_mpi = "Open MPI" in version.stdout + version.stderr or "prte" in (version.stdout + version.stderr).lower()
    return [launcher, "--oversubscribe"] if open_mpi else [launcher]


def _env():
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",  # CI runs as root
               OMP_NUM_THREADS="1", DARKNET_PY_THREADS="1",  # 2 ranks on 2 shared cores
               PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE_ROOT), str(HERE), env.get("PYTHONPATH")])))
    env.pop("DARKNET_PY_MPI", None)
    return env


def run_ranks(mpirun, n, cli_args, fault=("none", 0, 0)):
    """`mpirun -n N darknet-py ...` (through tests/_mpi_driver.py, which may put in a fault)."""
    cmd = mpirun + ["-n", str(n), sys.executable, str(HERE / "_mpi_driver.py"), *map(str, fault), "--",
                    *map(str, cli_args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=MPI_TIMEOUT, env=_env(),
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from darknet_py.data.synthetic import generate
    root = tmp_path_factory.mktemp("distributed")
    data = generate(root / "data", n_train=24, n_valid=2, size=(80, 80), seed=5)
    cfg = root / "dp.cfg"
    # burn_in: the learning rate changes every iteration, so the schedule must count the global batch.
    cfg.write_text(small_yolo_cfg(size=64, batch=16, subdivisions=2, filters=(8, 16, 16)).replace("burn_in=0",
                                                                                                  "burn_in=4"))
    return root, data, cfg


@pytest.fixture(scope="module")
def reference(setup):
    """One process, batch 16 in 2 subdivisions, 3 iterations."""
    root, data, cfg = setup
    res = train(data, str(cfg), max_batches=3, backup=root / "one", progress=False, checkpoint_every=1)
    return res.final_weights


def _train_args(setup, backup, max_batches, weights=None):
    root, data, cfg = setup
    args = ["train", data, cfg] + ([weights] if weights else [])
    return args + ["--max-batches", max_batches, "--backup", backup, "--checkpoint-every", 1]


def _state(setup, weights):
    """Parameters (BN rolling statistics included), momentum buffers and seen of a checkpoint."""
    _, _, cfg = setup
    net = darknet_py.load(str(cfg), str(weights), batch=0)
    params = {f"L{l.index}_{k}": v.copy() for l in net.layers for k, v in l.params.items()}
    with np.load(str(weights) + CHECKPOINT_STATE_SUFFIX) as state:
        momentum = {k: state[k] for k in state.files if k.endswith("_updates")}
        seen = int(state["seen"])
    return params, momentum, seen, net.seen


def assert_same_training(setup, ours, reference):
    params, momentum, seen, header_seen = _state(setup, ours)
    ref_params, ref_momentum, ref_seen, _ = _state(setup, reference)
    assert seen == header_seen == ref_seen
    assert params.keys() == ref_params.keys() and momentum.keys() == ref_momentum.keys() and momentum
    for key in ref_params:
        np.testing.assert_allclose(params[key], ref_params[key], rtol=RTOL, atol=ATOL, err_msg=key)
    for key in ref_momentum:
        scale = float(np.abs(ref_momentum[key]).max())
        np.testing.assert_allclose(momentum[key], ref_momentum[key], rtol=0, atol=ATOL + RTOL * scale, err_msg=key)
    # The update moved the weights by far more than the tolerance: equality is not vacuous.
    start = darknet_py.load(str(setup[2]), batch=0)
    moved = max(np.abs(l.params["weights"] - ref_params[f"L{l.index}_weights"]).max()
                for l in start.layers if "weights" in l.params)
    assert moved > 100 * ATOL


def assert_checkpoint_whole(setup, weights):
    """A checkpoint that loads, whose state file belongs to it (SHA-256 and seen); returns its seen."""
    assert Path(weights).exists(), weights
    params, momentum, seen, header_seen = _state(setup, weights)
    with np.load(str(weights) + CHECKPOINT_STATE_SUFFIX) as state:
        digest = str(state["weights_sha256"])
    assert digest == hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    assert seen == header_seen and all(np.isfinite(v).all() for v in params.values())
    return seen


# ---------------------------------------------------------------- without MPI

def test_shards_of_every_batch_are_the_batch(setup):
    """Rank r's loader draws slots r*8..r*8+7 of each global batch of 16: together the batch of one process."""
    from darknet_py.data.loader import DetectionLoader
    from darknet_py.data.dataset import read_data_cfg, read_list
    _, data, _ = setup
    paths = read_list(read_data_cfg(data).resolve("train"))
    whole = DetectionLoader(paths, 64, 64, 16, seed=7, workers=1)
    shards = [DetectionLoader(paths, 64, 64, 16, seed=7, workers=1, shard=(8 * r, 8)) for r in range(2)]
    try:
        for _ in range(2):
            x, truth = whole.next_batch()
            parts = [s.next_batch() for s in shards]
            np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
            np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), truth)
    finally:
        for loader in [whole] + shards:
            loader.close()
    with pytest.raises(darknet_py.DarknetError, match="shard 12..19 is not within a batch of 16"):
        DetectionLoader(paths, 64, 64, 16, shard=(12, 8))


def test_images_per_iteration_sets_the_divisor_and_the_iteration(setup):
    """The core hook a data-parallel rank sets: a forward of 8 images, an update and iteration
    counted over 16 -- the same update as one process's 2 x 8."""
    _, _, cfg = setup
    rng = np.random.default_rng(0)
    x = rng.random((16, 3, 64, 64), dtype=np.float32)
    truth = np.zeros((16, 30 * 5), np.float32)
    truth[:, :5] = [.5, .5, .3, .4, 2]
    one, half = darknet_py.load(str(cfg), batch=0, seed=1), darknet_py.load(str(cfg), batch=0, seed=1)
    for net in (one, half):
        net.training = True
    one.accumulate(x[:8], truth[:8])
    one.accumulate(x[8:], truth[8:])
    one.update()
    half.images_per_iteration = 16
    half.set_batch(16)  # one forward of the whole batch: other BN statistics, so compare the divisor alone
    assert half.images_per_iteration == 16 and half.current_batch == 0
    half.seen = 48
    assert half.current_batch == 3
    half.images_per_iteration = 0
    assert half.images_per_iteration == 16 * 2  # back to batch * subdivisions (batch is 16 now)
    with pytest.raises(darknet_py.DarknetError, match="images_per_iteration must be in"):
        half.images_per_iteration = -1


def test_update_buffers_are_the_updates_of_buffers(setup):
    """What the step and checkpoints read: the *_updates buffers alone, views of the same memory."""
    net = darknet_py.Network.from_cfg(str(setup[2]), batch=0)
    net.training = True
    for layer in net.layers:
        updates, everything = layer.update_buffers, layer.buffers
        assert list(updates) == [k for k in everything if k.endswith("_updates")]
        for name, view in updates.items():
            view[...] = layer.index + 1
            assert (everything[name] == layer.index + 1).all()
    assert sum(len(layer.update_buffers) for layer in net.layers) == 3 * 3 + 2  # BN convs: 3 each; the head: 2


def test_the_one_process_step_takes_the_whole_batch(setup):
    _, _, cfg = setup
    net = darknet_py.Network.from_cfg(str(cfg), batch=0)
    assert TrainingStep().shard(net) == Shard(0, 16, 8) and TrainingStep.writes


# ---------------------------------------------------------------- mpirun -n 2

def test_two_ranks_train_what_one_process_trains(mpirun, setup, reference):
    root, _, _ = setup
    out = run_ranks(mpirun, 2, _train_args(setup, root / "two", 3))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("stopped: max_batches after 3 iterations") == 1, out.stdout  # rank 0 reports
    assert_same_training(setup, root / "two" / "dp_final.weights", reference)
    # The charts and numbered checkpoints of one writer, no temp files left by a second one.
    assert not [p for p in (root / "two").iterdir() if ".tmp." in p.name]


def test_resume_with_another_number_of_ranks(mpirun, setup, reference):
    """2 ranks to iteration 1, one process to 2, 2 ranks to 3: the straight one-process run's weights."""
    root, data, cfg = setup
    backup = root / "resumed"
    out = run_ranks(mpirun, 2, _train_args(setup, backup, 1))
    assert out.returncode == 0, out.stdout + out.stderr
    train(data, str(cfg), str(backup / "dp_last.weights"), max_batches=2, backup=backup, progress=False,
          checkpoint_every=1)
    assert assert_checkpoint_whole(setup, backup / "dp_last.weights") == 32
    out = run_ranks(mpirun, 2, _train_args(setup, backup, 3, weights=backup / "dp_last.weights"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert_same_training(setup, backup / "dp_final.weights", reference)


@pytest.mark.parametrize("fault, rank, expected", [
    ("data", 1, r"1 of 2 ranks failed at iteration 3 \(rank 1: DarknetError: injected: unreadable image in batch 2\)"),
    ("nan", 1, r"loss became nan at iteration 3"),
    ("kill", 1, r"(?i)signal 9|killed"),
    ("checkpoint", 0, r"rank 0 of 2: error: .*injected: no space left on device.*\n.*aborting every rank"),
])
def test_a_failing_rank_stops_every_rank_and_the_checkpoint_stays_whole(mpirun, setup, fault, rank, expected):
    """Batch 2 (the third iteration) fails on one rank: the job ends (no rank left waiting) with a
    message naming the cause, and the last checkpoint (iteration 2) is whole."""
    import re
    root, _, _ = setup
    backup = root / f"fault-{fault}"
    out = run_ranks(mpirun, 2, _train_args(setup, backup, 5), fault=(fault, rank, 2))
    log = out.stdout + out.stderr
    assert out.returncode != 0, log
    assert re.search(expected, log), log
    seen = assert_checkpoint_whole(setup, backup / "dp_last.weights")
    # The last good iteration: 2 (1 where the checkpoint of iteration 2 could not be written).
    assert seen == (16 if fault == "checkpoint" else 32), seen
    assert not (backup / "dp_final.weights").exists()


def test_classifier_with_more_ranks_than_subdivisions(mpirun, tmp_path):
    """classifier-train, batch 32 in 1 subdivision on 2 ranks: each rank runs one forward of its 16
    images (the per-forward batch shrinks to the rank's share), the update still divides by 32 --
    one process with batch 32 in 2 subdivisions of 16."""
    from darknet_py.classifier import train_classifier
    from darknet_py.data.synthetic_classes import generate_classes
    from test_classifier_training import CFG
    shapes = generate_classes(tmp_path / "shapes", n_train=16, n_valid=2, seed=1)
    text = CFG.read_text().replace("width=64", "width=32").replace("height=64", "height=32")
    text = text.replace("min_crop=64", "min_crop=32").replace("max_crop=80", "max_crop=40")
    for name, subdivisions in (("one", 2), ("two", 1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cls.cfg").write_text(text.replace("subdivisions=1", f"subdivisions={subdivisions}"))
    train_classifier(shapes, str(tmp_path / "one" / "cls.cfg"), max_batches=2, backup=str(tmp_path / "one"),
                     progress=False, evaluate=False)
    out = run_ranks(mpirun, 2, ["classifier-train", shapes, tmp_path / "two" / "cls.cfg", "--max-batches", 2,
                                "--backup", tmp_path / "two"])
    assert out.returncode == 0, out.stdout + out.stderr
    setup = (tmp_path, shapes, tmp_path / "one" / "cls.cfg")
    assert_same_training(setup, tmp_path / "two" / "cls_final.weights", tmp_path / "one" / "cls_final.weights")


def test_joint_training_on_two_ranks(mpirun, tmp_path):
    """YOLO9000's joint training (detection + classification-only slots, a tree region) through the
    same step: which slots are classification-only is numbered in the global batch."""
    from darknet_py.data.synthetic_joint import generate_joint
    from test_joint import tree_cfg
    data = generate_joint(tmp_path / "joint", n_detection=12, n_classification=12, n_valid=2, size=(64, 64), seed=2)
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        tree_cfg(tmp_path / name, data, batch=8, subdivisions=2)
    train(data, str(tmp_path / "one" / "joint.cfg"), max_batches=2, backup=tmp_path / "one", progress=False)
    out = run_ranks(mpirun, 2, ["train", data, tmp_path / "two" / "joint.cfg", "--max-batches", 2,
                                "--backup", tmp_path / "two"])
    assert out.returncode == 0, out.stdout + out.stderr
    setup = (tmp_path, data, tmp_path / "one" / "joint.cfg")
    assert_same_training(setup, tmp_path / "two" / "joint_final.weights", tmp_path / "one" / "joint_final.weights")


def test_without_a_launcher_no_mpi_is_needed_and_with_one_mpi4py_is(monkeypatch, setup):
    """One process never imports mpi4py; a launcher's process without it gets an error that says what to install."""
    from darknet_py import distributed
    for name in distributed._LAUNCHER_VARIABLES + ("DARKNET_PY_MPI",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    assert distributed.data_parallel_step() is None
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    with pytest.raises(darknet_py.DarknetError, match=r"mpi4py cannot be imported .*pip install 'darknet_py\[mpi\]'"):
        distributed.data_parallel_step()
    monkeypatch.setenv("DARKNET_PY_MPI", "0")
    assert distributed.data_parallel_step() is None


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_iteration(mpirun, setup):
    """Only rank 1 gets the Ctrl-C (in iteration 3): the ranks vote after each iteration, so both
    finish iteration 3 and stop there, and rank 0 writes _last (no rank is left waiting)."""
    root, _, _ = setup
    backup = root / "interrupted"
    out = run_ranks(mpirun, 2, _train_args(setup, backup, 6), fault=("interrupt", 1, 2))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stopped: interrupted after 3 iterations" in out.stdout, out.stdout + out.stderr
    assert assert_checkpoint_whole(setup, backup / "dp_last.weights") == 48
    assert not (backup / "dp_final.weights").exists()
