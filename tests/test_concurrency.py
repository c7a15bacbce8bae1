"""The Network concurrency contract (README, "Reliability"): calls on one network from
several threads are serialised by the network's lock -- no crash, no output computed with
another thread's batch size or input. Run in a child process: a regression would crash."""
from _isolated import run_isolated

NET = """[net]
batch=1
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=30
size=1
activation=linear

[region]
anchors=1,1, 1.5,1.5, 2,2, 2.5,2.5, 3,3
classes=1
num=5
softmax=1
"""


def _script(body: str) -> str:
    return f"""
import threading, numpy as np, darknet_py
net = darknet_py.Network.from_text({NET!r})
net.randomize(5)
rng = np.random.default_rng(0)
errors = []
def run(fn, n):
    def loop():
        try:
            for i in range(n):
                fn(i)
        except Exception as e:  # noqa
            errors.append(repr(e))
    return threading.Thread(target=loop)
{body}
"""


def test_two_threads_same_batch_get_their_own_results():
    """Same batch size from two threads: 60/60 outputs were silently wrong."""
    out = run_isolated(_script("""
xs = [rng.random((1, 3, 32, 32), dtype=np.float32) for _ in range(2)]
expected = [net.forward(x).copy() for x in xs]
wrong = [0]
def work(k):
    def f(i):
        y = net.forward(xs[k])
        if not np.array_equal(y, expected[k]):
            wrong[0] += 1
    return f
ts = [run(work(k), 60) for k in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
print("wrong", wrong[0], "errors", errors)
"""), timeout=300)
    assert "wrong 0 errors []" in out


def test_two_threads_different_batch_sizes_no_crash_and_right_results():
    """Different batch sizes from two threads crashed 8 of 9 runs."""
    out = run_isolated(_script("""
xa = rng.random((1, 3, 32, 32), dtype=np.float32)
xb = rng.random((3, 3, 32, 32), dtype=np.float32)
ea, eb = net.forward(xa).copy(), net.forward(xb).copy()
wrong = [0]
def fa(i):
    wrong[0] += not np.array_equal(net.forward(xa), ea)
def fb(i):
    wrong[0] += not np.array_equal(net.forward(xb), eb)
ts = [run(fa, 40), run(fb, 40)]
[t.start() for t in ts]; [t.join() for t in ts]
print("wrong", wrong[0], "errors", errors)
"""), timeout=300)
    assert "wrong 0 errors []" in out


def test_forward_and_resize_from_two_threads_no_crash():
    """forward + resize from two threads crashed 6 of 6 runs. A forward with an input of the
    old size after the other thread resized is a clean DarknetError (the input is checked
    under the lock), never a crash."""
    out = run_isolated(_script("""
def resize(i):
    s = 32 if i % 2 else 64
    net.resize(s, s)
mismatch = [0]
def fwd(i):
    with net.lock():
        x = rng.random((1, 3, net.height, net.width), dtype=np.float32)
        y = net.forward(x)
        assert y.shape[-1] == net.width // 2
ts = [run(resize, 50), run(fwd, 50)]
[t.start() for t in ts]; [t.join() for t in ts]
print("errors", errors)
"""), timeout=300)
    assert "errors []" in out


def test_detect_from_two_threads_decodes_its_own_forward():
    """detect (forward then decode) from two threads: 25/60 decoded the other thread's output."""
    out = run_isolated(_script("""
from PIL import Image
imgs = [Image.fromarray(rng.integers(0, 255, (40 + 9 * k, 50, 3), dtype=np.uint8)) for k in range(2)]
def key(dets):
    return [(d.class_id, round(d.prob, 6), tuple(round(v, 4) for v in d.box)) for d in dets]
expected = [key(net.detect(im, thresh=0.0)) for im in imgs]
wrong = [0]
def work(k):
    def f(i):
        wrong[0] += key(net.detect(imgs[k], thresh=0.0)) != expected[k]
    return f
ts = [run(work(k), 30) for k in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
print("wrong", wrong[0], "errors", errors)
"""), timeout=300)
    assert "wrong 0 errors []" in out
