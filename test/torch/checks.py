# Checks of the torch runtime's optimiser, metrics and checkpoints, for test/torch-train.test.ts.
# The test runs this file appended to the runtime's source (torchRuntimeSource()), as a generated
# trainer holds it: `python3 checks.py COMMAND` reads its input as JSON on stdin and prints its
# result as JSON.

import tempfile


def _parameters(values):
    """{name: {shape, values}} as named float32 parameters."""
    return {name: torch.nn.Parameter(torch.tensor(v["values"], dtype=torch.float32).reshape(v["shape"])) for name, v in values.items()}


def _listed(params):
    return {name: p.detach().reshape(-1).tolist() for name, p in params.items()}


def replay(case):
    """
    The optimiser's steps on the given gradients and learning-rate factors (a number, or a tensor
    when `tensor`), and its state after each. `batch`: the elements it updates at a time, small
    enough to split a parameter by its rows, as a ResNet's kernels are split.
    """
    global _CPU_BATCH
    _CPU_BATCH = case.get("batch", _CPU_BATCH)
    params = _parameters(case["params"])
    optimizer = Optimizer(case["optimizer"])
    for step in case["steps"]:
        grads = {name: torch.tensor(g["values"], dtype=torch.float32).reshape(g["shape"]) for name, g in step["grads"].items()}
        factor = torch.tensor(step["factor"], dtype=torch.float32) if step["tensor"] else step["factor"]
        optimizer.apply(params, grads, lambda name: factor)
    return {"params": _listed(params), "steps": optimizer.steps}


def against_torch(_):
    """
    The largest difference, per optimiser, from torch.optim's over six steps of random gradients,
    where parameter b sits out step 2 (its own step count falls behind) and step 4 runs at half
    the learning rate (a tensor factor).
    """
    generator = torch.Generator().manual_seed(0)
    shapes = {"a": (3, 4), "b": (5,)}
    cases = [
        ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01)),
        ("sgd", {"lr": 0.1}, lambda ps: torch.optim.SGD(ps, lr=0.1)),
        ("adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}, lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)),
        ("adamw", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}, lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)),
    ]
    result = []
    for kind, options, reference in cases:
        start = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
        ours = {name: torch.nn.Parameter(t.clone()) for name, t in start.items()}
        theirs = {name: torch.nn.Parameter(t.clone()) for name, t in start.items()}
        optimizer = Optimizer({"kind": kind, "options": options})
        torch_optimizer = reference(list(theirs.values()))
        for step in range(6):
            grads = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
            if step == 2:
                del grads["b"]
            half = step == 4
            optimizer.apply(ours, grads, lambda name: torch.tensor(0.5) if half else 1)
            for name, p in theirs.items():
                p.grad = grads[name].clone() if name in grads else None
            torch_optimizer.param_groups[0]["lr"] = options["lr"] * (0.5 if half else 1)
            torch_optimizer.step()
        moved = max(float((ours[n] - start[n]).abs().max()) for n in shapes)
        result.append({"kind": kind, "options": options, "difference": max(float((ours[n] - theirs[n]).abs().max()) for n in shapes), "moved": moved, "steps": optimizer.steps})
    return result


def resumed_optimizer(_):
    """Six steps straight, and three steps, a checkpoint written and read back into a new optimiser, then three more: equal bit for bit?"""
    generator = torch.Generator().manual_seed(1)
    grads = [{"w": torch.randn(4, 3, generator=generator)} for _ in range(6)]
    start = torch.randn(4, 3, generator=generator)
    spec = {"kind": "adam", "options": {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}}
    straight = {"w": torch.nn.Parameter(start.clone())}
    optimizer = Optimizer(spec)
    for g in grads:
        optimizer.apply(straight, g, lambda name: 1)
    stopped = {"w": torch.nn.Parameter(start.clone())}
    first = Optimizer(spec)
    for g in grads[:3]:
        first.apply(stopped, g, lambda name: 1)
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(folder, {"epoch": 0, "optimizer": first.state()}, {"w": stopped["w"].detach()})
        state, weights = load_checkpoint(folder, torch.device("cpu"))
    resumed = {"w": torch.nn.Parameter(weights["w"].clone())}
    second = Optimizer(spec)
    second.restore(state["optimizer"])
    for g in grads[3:]:
        second.apply(resumed, g, lambda name: 1)
    return {"equal": bool(torch.equal(straight["w"], resumed["w"])), "steps": second.steps}


def metrics(case):
    return {
        "classification": classification_metrics(np.array(case["predicted"], dtype=np.float32), np.array(case["labels"], dtype=np.float32), case["classes"]),
        "regression": regression_metrics(np.array(case["real"], dtype=np.float32), np.array(case["realLabels"], dtype=np.float32)),
        "dice": mask_dice(np.array(case["predicted"], dtype=np.float32), np.array(case["labels"], dtype=np.float32), case["classes"]),
    }


def schedules(cases):
    return [schedule_factor(c["schedule"], c["epoch"], c["epochs"]) for c in cases]


def write_npz(case):
    """Arrays ({name: {dtype, shape, values}}, and `meta` as JSON) written as a .npz, as `mmb data export` writes one."""
    arrays = {name: np.array(a["values"], dtype=a["dtype"]).reshape(a["shape"]) for name, a in case["arrays"].items()}
    if "meta" in case:
        arrays["meta"] = np.frombuffer(json.dumps(case["meta"]).encode(), dtype=np.uint8)
    np.savez(case["path"], **arrays)
    return {"written": sorted(arrays)}


def run_state(case):
    """What two run folders' current checkpoints hold: equal weights (bit for bit), optimiser tensors and state?"""

    def load(folder):
        state, weights = load_checkpoint(os.path.join(folder, "checkpoints"), torch.device("cpu"))
        return state, weights

    (a, wa), (b, wb) = load(case["a"]), load(case["b"])
    slots = lambda s: s["optimizer"]["slots"]
    return {
        "epochs": [a["epoch"], b["epoch"]],
        "weights": list(wa) == list(wb) and all(torch.equal(wa[n], wb[n]) for n in wa),
        "slots": list(slots(a)) == list(slots(b)) and all(torch.equal(slots(a)[n], slots(b)[n]) for n in slots(a)),
        "steps": a["optimizer"]["steps"] == b["optimizer"]["steps"],
        "history": a["history"] == b["history"],
        "best": a["best"] == b["best"],
    }


def gradient_actions(case):
    """
    A rule's actions on update gradients (step.py's Gradients), two steps with one run's memory,
    each applied before the next as the loop applies it: each step scales encoder.a by k (a tensor
    autograd records, as a rule value from the outputs is), adds noise to it, scales it again;
    replaces encoder.b's gradient and adds noise to that. The values after each step in tfjs's
    names and layouts, and what must hold of them: the raw gradients and the replacement
    unchanged, the later actions in the first one's tensor, none recorded for autograd, and the
    second step's actions in the tensors the first one's gave back.
    """
    layouts = {torch_name(name): (name, g["shape"]) for name, g in case["grads"].items()}
    memory = StepMemory()
    steps = []
    made_before = None
    for step in case["steps"]:
        raw = {torch_name(name): torch_layout(name, torch.tensor(g["values"], dtype=torch.float32).reshape(g["shape"])).contiguous() for name, g in step["grads"].items()}
        kept = {name: t.clone() for name, t in raw.items()}
        replacement = [torch_layout(name, torch.tensor(v["values"], dtype=torch.float32).reshape(v["shape"])).contiguous() for name, v in step["replacement"].items()]
        replacement_kept = [t.clone() for t in replacement]
        grads = Gradients(dict(raw), step["noise_seed"], layouts, memory=memory)
        # A product of a tracked tensor: a value autograd records, as a rule value from the outputs.
        k = torch.tensor(step["k"], requires_grad=True) * 1
        grads.scale("encoder.a", k)
        scaled = {name: grads.values[name] for name in grads.names("encoder.a")}
        grads.add_noise("encoder.a", step["mean"], step["std"])
        grads.scale("encoder.a", 2)
        grads.replace("encoder.b", Grouped(replacement, grads.names("encoder.b")))
        grads.add_noise("encoder.b", 0, step["std"])
        made = {name: t for name, t in grads.values.items() if name not in raw or t is not raw[name]}
        steps.append({
            "values": {layouts[name][0]: tfjs_layout(layouts[name][0], t.numpy()).reshape(-1).tolist() for name, t in grads.values.items()},
            "raw_unchanged": all(torch.equal(raw[name], kept[name]) for name in raw),
            "replacement_unchanged": all(torch.equal(a, b) for a, b in zip(replacement, replacement_kept)),
            "in_place": all(grads.values[name] is t for name, t in scaled.items()),
            "recorded": any(t.requires_grad for t in grads.values.values()),
            "reused": made_before is not None and all(made[name] is made_before[name] for name in made),
        })
        grads.applied()
        made_before = made
    return steps


def step_memory(case):
    """
    StepMemory's lending (step.py): a tensor lent to gradients not yet applied is not lent to
    others, whose actions would overwrite what the first still holds; once applied it is lent
    again; an action on applied gradients is refused.
    """
    memory = StepMemory()
    layouts = {"encoder.a.weight": ("encoder.a/w", [2, 3])}
    gradients = lambda value: Gradients({"encoder.a.weight": torch.full((2, 3), float(value))}, 1, layouts, memory=memory)
    first, second = gradients(1), gradients(1)
    first.scale("encoder.a", 2)
    lent = first.values["encoder.a.weight"]
    second.scale("encoder.a", 3)
    result = {
        "first_kept": first.values["encoder.a.weight"].tolist(),
        "second_apart": second.values["encoder.a.weight"] is not lent,
    }
    first.applied()
    third = gradients(5)
    third.scale("encoder.a", 7)
    result["third"] = third.values["encoder.a.weight"].tolist()
    result["third_reuses_first"] = third.values["encoder.a.weight"] is lent
    result["second_kept"] = second.values["encoder.a.weight"].tolist()
    try:
        first.scale("encoder.a", 2)
        result["refused"] = None
    except RuntimeError as error:
        result["refused"] = str(error)
    return result


def gradient_statistics(case):
    """std and norm (ops.py) of gradient-shaped values: as a step reads them, and differentiable (a loss that reads them), with the derivative of std."""
    values = [torch.tensor(t["values"], dtype=torch.float32).reshape(t["shape"]) for t in case["tensors"]]
    tracked = [t.clone().requires_grad_() for t in values]
    std = grad_std(tracked)
    (derivative,) = torch.autograd.grad(std, tracked[:1])
    return {
        "std": grad_std(values).item(),
        "norm": grad_norm(values).item(),
        "std_tracked": std.item(),
        "norm_tracked": grad_norm(tracked).item(),
        "derivative": derivative.reshape(-1).tolist(),
    }


def torch_draws(case):
    """
    A step's draws from torch's generator (`--rng torch`, TorchRandom): gradient noise, per-element
    bernoulli, `dropout` and an encoder's dropout, each over `n` elements, as their statistics; and
    what must hold beyond them: the same seed draws the same, Random's draws are other ones, a pass
    over some rows of the batch draws the batch's draws of those rows.
    """
    n, rate = case["n"], case["rate"]
    shape = [n // 64, 64]
    layouts = {"encoder.a.w": ("encoder.a.w", shape)}

    def noise(streams):
        grads = Gradients({"encoder.a.w": torch.zeros(shape)}, case["seed"], layouts, streams=streams)
        grads.add_noise("encoder.a", case["mean"], case["std"])
        return grads.values["encoder.a.w"]

    drawn = noise(TorchRandom)
    random = StepRandom(case["seed"], 3, TorchRandom)
    ones = torch.ones(shape)
    kept = random.bernoulli(0, torch.full(shape, case["p"]))
    dropped = random.dropout(1, ones, case["p"])
    layer = random.layer_dropout("encoder.a.dense0", ones, rate, 0, shape[0])
    # Rows 2 to 4 of the batch, in a pass over them alone (a per-sample pass; a process's rows).
    with random.sample_pass(2, shape[0]):
        some_rows = random.dropout(1, ones[2:5], case["p"])
    return {
        "noise": {"mean": drawn.double().mean().item(), "std": drawn.double().std().item()},
        "noise_repeats": torch.equal(drawn, noise(TorchRandom)),
        "noise_is_not_shared": not torch.equal(drawn, noise(Random)),
        "bernoulli_ones": kept.mean().item(),
        "dropout_zeros": (dropped == 0).double().mean().item(),
        "layer_zeros": (layer == 0).double().mean().item(),
        "layer_kept": sorted(set(layer[layer != 0].tolist())),
        "rows_as_in_batch": torch.equal(some_rows, dropped[2:5]),
        "uniforms": [random.uniform(5), random.uniform(5), random.uniform(6)],
    }


if __name__ == "__main__":
    command = {"replay": replay, "against-torch": against_torch, "resumed-optimizer": resumed_optimizer, "metrics": metrics, "schedules": schedules, "write-npz": write_npz, "run-state": run_state, "gradient-actions": gradient_actions, "step-memory": step_memory, "gradient-statistics": gradient_statistics, "torch-draws": torch_draws}[sys.argv[1]]
    print(json.dumps(command(json.load(sys.stdin))))
