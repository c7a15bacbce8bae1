"""Finite differences of the loss w.r.t. a layer's INPUT for [cost], [dropout] (its mask
fixed) and [region]: the backward's contribution to the previous layer's delta against
central differences of a loss evaluated through the project's own forward.

Darknet's delta is the NEGATIVE gradient (delta = -dLoss/dinput) up to the factors each
layer defines, stated per test. Each layer under test sits behind a probe: a 1x1 linear
convolution with identity weights and zero bias, so the layer's input is the network
input x and the probe's delta is exactly what the layer's backward hands back.

[region]: the reported cost is Darknet's sum of squared deltas (mag_array(delta)^2), which
no delta is a gradient of. The deltas are (negative) gradients of a per-term surrogate
loss, written here from Darknet's definitions and evaluated on the layer's own output o:
  no-object:  1/2 noobject_scale (0 - o_obj)^2           (o_obj = logistic(x))
  object:     1/2 object_scale (1 - o_obj)^2              (rescore=0)
              1/2 object_scale (iou - o_obj)^2            (rescore=1, iou FROZEN at the
              base point: Darknet's delta ignores iou's dependence on the box, so only the
              objectness part is a gradient; the box entries' iou path is not)
  box:        1/2 s sum over x, y, w, h of (t - o)^2,     s = coord_scale (2 - w h);
              o_x, o_y = logistic, o_w, o_h = raw input
  prior pull: 1/2 .01 sum (t_prior - o)^2 for boxes not assigned a truth while seen < 12800
  classes:    class_scale * cross-entropy: softmax (softmax=1), or logistic binary
              cross-entropy per class (softmax=0: the class delta t - o is not scaled by the
              logistic gradient, which is exactly BCE's gradient), or with tree= the sum
              over the groups on the label's path to the root of each group's softmax
              cross-entropy with the path node as its label
All of these are checked as exact gradients. Switches are held away from: thresh=1 (no
prediction's no-object term dropped) except in one case whose thresh sits in a gap of the
predictions' best IoUs, so the terms it drops (best IoU > thresh) stay dropped within eps;
bias_match=1 so the anchor that takes a truth does not depend on the predictions.
"""
import numpy as np
import pytest

import darknet_py

# Central differences (eps 1e-2) of a float32 forward. Cost/dropout losses are exactly
# quadratic or linear in x, so the error is the float32 rounding of the loss divided by
# 2 eps: the [cost] layer's float cost (~20, ulp 2e-6) gives up to 1e-4 of the gradient
# (measured <= 8.3e-5 of the largest component, <= 4.8e-4 relative). Dropout and region
# (loss summed in float64 here from float32 outputs; region truncation O(eps^2)) measured
# <= 4e-6 of the largest and <= 4e-5 relative.
FD_RTOL = 2e-3
FD_ATOL_OF_MAX = 1e-3  # absolute slack, as a fraction of the largest gradient component


def header(c, h, w, batch=2):
    return f"[net]\nbatch={batch}\nwidth={w}\nheight={h}\nchannels={c}\n"


def probed_net(body, c, h, w, batch=2):
    text = header(c, h, w, batch) + f"[convolutional]\nfilters={c}\nsize=1\nactivation=linear\n" + body
    net = darknet_py.Network.from_text(text, "fd_input.cfg", batch=batch)
    p = net.layers[0].params
    p["weights"][...] = np.eye(c).reshape(c, c, 1, 1)
    p["biases"][...] = 0
    net.training = True
    # One thread: hundreds of tiny forwards, where OpenMP's fork/join on a loaded 2-core
    # machine costs ~10 ms each (the layers' arithmetic is the same on any thread count).
    net.set_exec_options(threads=1)
    return net


def central_differences(x, loss, eps):
    g = np.zeros(x.shape)
    flat = x.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        lp = loss(x)
        flat[i] = old - eps
        lm = loss(x)
        flat[i] = old
        g.reshape(-1)[i] = (lp - lm) / (float(np.float32(old + eps)) - float(np.float32(old - eps)))
    return g


def check(analytic, numeric, what):
    analytic = np.asarray(analytic, np.float64)
    bound = FD_ATOL_OF_MAX * np.abs(numeric).max() + FD_RTOL * np.abs(numeric)
    err = np.abs(analytic - numeric)
    i = np.unravel_index(np.argmax(err - bound), err.shape)
    assert (err <= bound).all(), (f"{what}: {(err > bound).sum()} of {err.size} off; worst at {i}: "
                                  f"analytic {analytic[i]}, numeric {numeric[i]}")
    assert np.abs(numeric).max() > 0, what


# ------------------------------------------------------------------ [cost]
# delta = -k * dCost/dinput per element (cost = sum of errors): sse, masked, smooth define
# error d^2 (or 2|d| - 1) with delta d (or sign d), i.e. k = 1/2; L1 defines |d| with
# delta sign(d), k = 1. The backward adds scale * delta into the previous layer.
COST_K = {"sse": .5, "masked": .5, "smooth": .5, "L1": 1.0}


@pytest.mark.parametrize("scale", [1.0, 0.25])
@pytest.mark.parametrize("kind", sorted(COST_K))
def test_cost_input_gradient(kind, scale):
    c, h, w = 3, 2, 3
    net = probed_net(f"[cost]\ntype={kind}\nscale={scale}\n", c, h, w)
    rng = np.random.default_rng(21)
    x = rng.uniform(-2, 2, (2, c, h, w)).astype(np.float32)
    # differences away from the kinks (0 and, for smooth, +-1) by more than eps
    mag = np.where(rng.random(x.shape) < .5, rng.uniform(.1, .9, x.shape), rng.uniform(1.1, 2.5, x.shape))
    truth = (x + mag * rng.choice([-1, 1], x.shape)).astype(np.float32)
    if kind == "masked":
        truth.flat[::5] = -1234
    truth = truth.reshape(2, -1)

    def loss(xx):
        net.forward(xx, truth)
        return float(net.layers[1].cost)

    loss(x)
    net._net.set_layer_delta(0, np.zeros(x.size, np.float32))
    net._net.backward_layer(1, x)
    analytic = net.layers[0].delta
    numeric = central_differences(x.copy(), loss, eps=1e-2)
    check(analytic, -scale * COST_K[kind] * numeric, f"[cost] type={kind} scale={scale}")
    if kind == "masked":
        assert (analytic.reshape(2, -1)[truth == -1234] == 0).all()


# ------------------------------------------------------------------ [dropout]
@pytest.mark.parametrize("p", [0.2, 0.6])
def test_dropout_input_gradient_with_mask_fixed(p):
    """L = sum(r * output of a 3x3 conv after the dropout); the network's generator is
    re-seeded before every forward, so every evaluation drops the same units."""
    c, h, w = 3, 4, 5
    body = f"[dropout]\nprobability={p}\n[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n"
    net = probed_net(body, c, h, w)
    rng = np.random.default_rng(22)
    net.layers[2].params["weights"][...] = rng.normal(0, 1, net.layers[2].params["weights"].shape)
    x = rng.uniform(-1, 1, (2, c, h, w)).astype(np.float32)
    r = rng.normal(0, 1, (2, 2, h, w))

    def loss(xx):
        net.set_seed(77)
        return float(np.sum(r * net.forward(xx)))

    loss(x)
    dropped = net.layers[1].output == 0
    assert 0 < dropped.sum() < dropped.size
    net._net.set_layer_delta(2, (-r).astype(np.float32).ravel())  # delta = -dL/doutput
    net._net.backward(x)
    analytic = net.layers[0].delta  # = -dL/dx
    numeric = central_differences(x.copy(), loss, eps=1e-2)
    check(analytic, -numeric, f"[dropout] p={p}")
    assert (analytic[dropped] == 0).all() and (numeric[dropped] == 0).all()


# ------------------------------------------------------------------ [region]
REGION_W, REGION_H, NUM, CLASSES = 3, 3, 2, 3
ANCHORS = [(1.0, 1.5), (2.0, 0.8)]
SCALES = dict(object_scale=5.0, noobject_scale=0.5, class_scale=1.5, coord_scale=2.0)
# (x, y, w, h, class) per image, relative to the image; in different cells
TRUTH = [[(.2, .3, .4, .5, 2), (.75, .8, .5, .2, 0)], [(.5, .45, .3, .3, 1)]]


# A WordTree (Darknet's "name parent" lines; groups are runs of siblings) for the tree case:
# groups {a, b}, {c, d, e} under a, {f, g} under b; the truths' classes become leaves.
TREE = [("a", -1), ("b", -1), ("c", 0), ("d", 0), ("e", 0), ("f", 1), ("g", 1)]
TREE_GROUPS = [[0, 1], [2, 3, 4], [5, 6]]
TREE_LEAF = {0: 3, 1: 2, 2: 6}  # TRUTH class -> leaf node


def region_cfg(softmax, rescore, thresh=1.0, classes=CLASSES, tree_file=None):
    anchors = ", ".join(f"{a},{b}" for a, b in ANCHORS)
    scales = "".join(f"{k}={v}\n" for k, v in SCALES.items())
    tree = f"tree={tree_file}\n" if tree_file else ""
    return (f"[region]\nanchors={anchors}\nbias_match=1\nclasses={classes}\ncoords=4\nnum={NUM}\n"
            f"softmax={softmax}\njitter=.2\nrescore={rescore}\nthresh={thresh}\nrandom=0\nmax=4\n{tree}{scales}")


def truth_array(tree=False):
    t = np.zeros((2, 4 * 5), np.float32)
    for b, boxes in enumerate(TRUTH):
        for i, box in enumerate(boxes):
            t[b, 5 * i:5 * i + 5] = box
            if tree:
                t[b, 5 * i + 4] = TREE_LEAF[box[4]]
    return t


def logistic(v):
    return 1 / (1 + np.exp(-v))


def best_anchor(w, h):
    """bias_match: the anchor whose shape (relative to the image) has the best IoU with the
    truth's, both centred at the origin."""
    ious = []
    for aw, ah in ANCHORS:
        aw, ah = aw / REGION_W, ah / REGION_H
        inter = min(aw, w) * min(ah, h)
        ious.append(inter / (aw * ah + w * h - inter))
    return int(np.argmax(ious))


def pred_box(o, b, n, row, col, classes=CLASSES):
    e = o[b, n * (5 + classes):(n + 1) * (5 + classes), row, col]
    return ((col + e[0]) / REGION_W, (row + e[1]) / REGION_H,
            np.exp(e[2]) * ANCHORS[n][0] / REGION_W, np.exp(e[3]) * ANCHORS[n][1] / REGION_H)


def iou(a, b):
    def overlap(c1, s1, c2, s2):
        return min(c1 + s1 / 2, c2 + s2 / 2) - max(c1 - s1 / 2, c2 - s2 / 2)
    ow, oh = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = ow * oh if ow > 0 and oh > 0 else 0
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def best_ious(o, classes=CLASSES):
    """Each prediction's best IoU with any truth of its image, {(b, n, row, col): iou}."""
    out = {}
    for b in range(2):
        for n in range(NUM):
            for row in range(REGION_H):
                for col in range(REGION_W):
                    box = pred_box(np.asarray(o, np.float64), b, n, row, col, classes)
                    out[(b, n, row, col)] = max(iou(box, t[:4]) for t in TRUTH[b])
    return out


def region_terms(o, softmax, rescore, seen, frozen_iou=None, thresh=1.0, frozen_best=None, tree=False):
    """Every term of the surrogate loss at output o (float64): a list of
    (scale, target, output value) for squared terms and the class loss separately.
    Returns (surrogate loss, sum of squared forward deltas = Darknet's reported cost, ious)."""
    o = np.asarray(o, np.float64)
    classes = len(TREE) if tree else CLASSES
    size = 5 + classes
    loss = 0.0
    cost = 0.0
    ious = {}
    assigned = {}
    for b, boxes in enumerate(TRUTH):
        for t, (x, y, w, h, cls) in enumerate(boxes):
            col, row = int(x * REGION_W), int(y * REGION_H)
            assigned[(b, best_anchor(w, h), row, col)] = (x, y, w, h, cls)
    for b in range(2):
        for n in range(NUM):
            for row in range(REGION_H):
                for col in range(REGION_W):
                    e = o[b, n * size:(n + 1) * size, row, col]
                    terms = []  # (scale, target, value)
                    truth = assigned.get((b, n, row, col))
                    if truth is None:
                        # no no-object term for a prediction that already overlaps a truth by
                        # more than thresh (decided at the base point: piecewise constant)
                        if frozen_best is None or frozen_best[(b, n, row, col)] <= thresh:
                            terms.append((SCALES["noobject_scale"], 0.0, e[4]))
                        if seen < 12800:
                            for k, tk in enumerate([.5, .5, 0.0, 0.0]):
                                terms.append((.01, tk, e[k]))
                    else:
                        x, y, w, h, cls = truth
                        s = SCALES["coord_scale"] * (2 - w * h)
                        targets = [x * REGION_W - col, y * REGION_H - row,
                                   np.log(w * REGION_W / ANCHORS[n][0]), np.log(h * REGION_H / ANCHORS[n][1])]
                        for k in range(4):
                            terms.append((s, targets[k], e[k]))
                        v = iou(pred_box(o, b, n, row, col, classes), (x, y, w, h))
                        ious[(b, n, row, col)] = v
                        obj_target = 1.0
                        if rescore:
                            obj_target = frozen_iou[(b, n, row, col)] if frozen_iou else v
                        terms.append((SCALES["object_scale"], obj_target, e[4]))
                        p = e[5:]
                        cs = SCALES["class_scale"]
                        if tree:
                            # every group on the leaf's path to the root: cross-entropy of its
                            # softmax with the path node as the label
                            node = TREE_LEAF[cls]
                            while node >= 0:
                                group = next(g for g in TREE_GROUPS if node in g)
                                loss += cs * -np.log(p[node])
                                cost += sum((cs * ((i == node) - p[i])) ** 2 for i in group)
                                node = TREE[node][1]
                        else:
                            onehot = np.eye(CLASSES)[cls]
                            if softmax:
                                loss += cs * -np.log(p[cls])
                            else:
                                loss += cs * -np.sum(onehot * np.log(p) + (1 - onehot) * np.log(1 - p))
                            cost += np.sum((cs * (onehot - p)) ** 2)
                    for s, tk, v in terms:
                        loss += .5 * s * (tk - v) ** 2
                        cost += (s * (tk - v)) ** 2
    return loss, cost, ious


REGION_CASES = {
    "softmax": dict(softmax=1, rescore=0, seen=100000),
    "softmax_prior_pull": dict(softmax=1, rescore=0, seen=0),
    "logistic_classes": dict(softmax=0, rescore=0, seen=100000),
    "rescore_iou_frozen": dict(softmax=1, rescore=1, seen=100000),
    # thresh below some predictions' best IoU: their no-object terms are dropped
    "thresh_drops_noobject": dict(softmax=1, rescore=0, seen=100000, thresh="gap"),
    # WordTree classes: one softmax per sibling group, labels along the leaf's path
    "tree_classes": dict(softmax=1, rescore=0, seen=100000, tree=True),
}
IOU_MARGIN = 0.02  # no prediction's best IoU within this of thresh: eps moves IoUs by ~1e-3
# float32 deltas squared and summed in double, stored as float (6e-8); measured <= 7e-8
REGION_COST_RTOL = 1e-6


@pytest.mark.parametrize("name", sorted(REGION_CASES))
def test_region_input_gradient(name, tmp_path):
    case = REGION_CASES[name]
    tree = case.get("tree", False)
    classes = len(TREE) if tree else CLASSES
    tree_file = None
    if tree:
        tree_file = tmp_path / "tiny.tree"
        tree_file.write_text("".join(f"{n} {p}\n" for n, p in TREE))
    c = NUM * (5 + classes)
    rng = np.random.default_rng(23)
    x = rng.normal(0, 1, (2, c, REGION_H, REGION_W)).astype(np.float32)
    thresh, best = 1.0, None
    if case.get("thresh") == "gap":
        # the widest gap between the predictions' best IoUs (logistic/exp of x, as the layer
        # computes them) puts thresh away from every switch, with predictions on both sides
        o = x.astype(np.float64).copy()
        for n in range(NUM):
            o[:, n * (5 + classes):n * (5 + classes) + 2] = logistic(o[:, n * (5 + classes):n * (5 + classes) + 2])
        values = np.sort(list(best_ious(o, classes).values()))
        gaps = np.diff(values)
        k = int(np.argmax(np.where(values[1:] > .05, gaps, 0)))
        thresh = float((values[k] + values[k + 1]) / 2)
        assert gaps[k] > 2 * IOU_MARGIN and (values > thresh).sum() >= 2, values
    net = probed_net(region_cfg(case["softmax"], case["rescore"], thresh, classes, tree_file), c, REGION_H, REGION_W)
    truth = truth_array(tree)

    net.seen = case["seen"]
    out = net.forward(x, truth)
    if thresh < 1:
        best = best_ious(out, classes)
        assert all(abs(v - thresh) > IOU_MARGIN for v in best.values())
    base_loss, expected_cost, base_ious = region_terms(out, case["softmax"], case["rescore"], case["seen"],
                                                       thresh=thresh, frozen_best=best, tree=tree)
    # Darknet's reported cost: the sum of the squared forward deltas.
    assert net.layers[1].cost == pytest.approx(expected_cost, rel=REGION_COST_RTOL), name
    net._net.set_layer_delta(0, np.zeros(x.size, np.float32))
    net._net.backward_layer(1, x)
    analytic = net.layers[0].delta

    def loss(xx):
        net.seen = case["seen"]
        o = net.forward(xx, truth)
        return region_terms(o, case["softmax"], case["rescore"], case["seen"], frozen_iou=base_ious,
                            thresh=thresh, frozen_best=best, tree=tree)[0]

    numeric = central_differences(x.copy(), loss, eps=1e-2)
    check(analytic, -numeric, f"[region] {name}")
