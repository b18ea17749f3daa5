import argparse
import contextlib
import copy
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch

# The training loop: runtime/train.ts for the torch trainer. It shuffles, batches, steps, logs,
# evaluates, selects the best epoch and checkpoints exactly as the tfjs loop does, and writes the
# same run folder: log.jsonl (the same records, keys and order), summary.json (the same schema),
# checkpoints/ and best/. Shuffles and initial weights come from Random (random.py), never from
# torch's generators, so a run is the same on every device and continues exactly after --resume.
# So do a step's draws (noise, `bernoulli`, `dropout`, ...), unless `--rng torch` asks for torch's
# generator: faster, the same from run to run on one kind of device, not the tfjs trainer's draws.
#
# Under torchrun (`torchrun --nproc_per_node N trainer.py ...`: WORLD_SIZE > 1) training is data
# parallel. Every process reads the same data, shuffles it alike, and runs each step on its rows of
# the global batch (the spec's `batch`, split as ops.py's batch_part says); ops.py makes every value
# the global batch's, so N processes compute what one computes. Every process evaluates the whole
# splits itself: the same weights give the same metrics, so model selection, the plateau and early
# stopping decide alike everywhere without a message between processes, and no process waits for
# another's evaluation. The process of rank 0 alone writes the run folder (and holds its lock).


class RunError(Exception):
    """A stop the command line reports in one line, without a traceback: what happened and what to do."""


class NumericError(RunError):
    """A loss, rule value, weight or optimiser state became NaN or infinite."""


class ResumeError(RunError):
    """`--resume` of a checkpoint that another spec, params, seed or data made, or whose log was cut."""


class RunFolderError(RunError):
    """The run folder holds another run, or another process is training in it."""


# The generators of a step's draws, by `--rng`: the tfjs trainer's (random.py's Random), or torch's own.
_RNG_STREAMS = {"shared": Random, "torch": TorchRandom}


@dataclasses.dataclass
class TrainOptions:
    """How to run a trainer: what `main` reads from the command line (the flags' help says more)."""

    data: str
    out: str
    epochs: "int | None" = None
    seed: "int | None" = None
    # `--set name=value`: the spec's `param` values for this run.
    overrides: dict = dataclasses.field(default_factory=dict)
    device: str = "cpu"
    resume: bool = False
    # A fresh run replaces another run's state in `out` instead of refusing it.
    overwrite: bool = False
    # A .npz of initial weights by their tfjs names and layouts (`--init`).
    init: "str | None" = None
    # The generator of a step's draws: "shared" (the tfjs trainer's, bit for bit) or "torch" (torch's own, on the device).
    rng: str = "shared"
    # A progress bar with the epoch's time left, on stderr.
    progress: bool = False
    log: "Callable[[str], None]" = print


def train(trainer, options):
    """
    Trains the generated `trainer` (its TRAINER dict) as `options` say, and returns the summary
    that summary.json holds. The run folder `options.out` is locked while it trains; another
    run's state there is refused unless `options.overwrite`, and `options.resume` continues the
    run from its last checkpoint, bit for bit as if it had never stopped.
    """
    started = time.time()
    say = options.log
    spec = trainer["spec"]
    rank, local_rank, world = _train_world()
    device = _train_device(options.device, local_rank, world)
    # The process that writes the run folder: log, checkpoints, summary and lock.
    first = rank == 0
    seed = spec["train"]["seed"] if options.seed is None else options.seed
    # The stages in order (one, without `stage` blocks); `--epochs` sets the last one's epochs.
    stages = _train_stages(trainer, options.epochs)
    # Each epoch of the run, as its stage and its epoch within the stage.
    plan = [(index, epoch) for index, stage in enumerate(stages) for epoch in range(stage["settings"]["train"]["epochs"])]
    epochs = len(plan)
    staged = bool(trainer.get("stages"))
    for name, value in options.overrides.items():
        if name not in trainer["params"]:
            raise RunError(f"--set {name}: the spec has no `param {name}` (params: {', '.join(trainer['params']) or 'none'})")
        # `mmb train` checked the spec with this value; a trainer run as it is checks it here.
        outside = [taken for taken in trainer.get("param_ranges", {}).get(name, []) if not _train_in_range(value, taken["range"])]
        if outside:
            raise RunError(f"--set {name}={_train_number(value)}: " + "; ".join(f"{taken['use']} (spec line {taken['line']}) must be {taken['text']}" for taken in outside))
    p = {**trainer["params"], **options.overrides}
    data = load_dataset(options.data, spec)
    # The step's draws (random.py): the tfjs trainer's, the same on every device, or torch's, which differ between kinds of device.
    streams = _RNG_STREAMS.get(options.rng)
    if streams is None:
        raise RunError(f'unknown --rng "{options.rng}": choose {" or ".join(_RNG_STREAMS)}')
    rng = "shared" if streams is Random else f"torch on {device.type}"
    origin = run_origin(trainer, p, seed, epochs, data.sha256, rng, _train_code_sha256())
    os.makedirs(options.out, exist_ok=True)
    checkpoints = os.path.join(options.out, "checkpoints")
    log = RunLog(os.path.join(options.out, "log.jsonl"))
    per_sample = {name for stage in stages for name in stage["code"].get("per_sample_values", [])}
    modalities = [m["name"] for m in spec["modalities"]]

    model = Model(spec, seed, fuse=trainer.get("fuse"))
    if options.init:
        try:
            with np.load(options.init, allow_pickle=False) as arrays:
                load_tfjs_weights(model, dict(arrays))
        except (OSError, ValueError) as e:
            raise RunError(f"--init {options.init}: {e}") from e
    model.to(device)
    params = model.parameters_by_name()
    # `init(G)`: the run seed's draw, made when a rule first asks.
    initial = functools.lru_cache(maxsize=None)(lambda: {name: t.to(device) for name, t in initial_values(spec, seed).items()})
    optimizer = Optimizer(stages[0]["settings"]["optimizer"])
    # The models each finished stage ended with, read by later stages as `NAME.out`, `NAME.z[m]`, ...
    finished = {}
    # The run's step at which the current stage began: its rules count steps from there.
    stage_step = 0
    # The optimisers of groups that `minimize` their own objective, made at their first step.
    separate = {}
    # One history for every rule: reads see the last step's values, writes commit at `advance()`.
    history = BatchHistory(device)
    # Where every step draws its gradient noise and its actions work, so that no step takes fresh memory for them.
    memory = StepMemory()
    first_epoch = 0
    step = 0
    best = {"metric": -math.inf, "epoch": -1, "stale": 0}
    # `schedule plateau(...)`: the learning-rate factor falls when the validation metric stalls.
    plateau_factor = 1.0
    # Model selection prefers a larger metric: accuracy and Dice, or a smaller MAE.
    sign = -1 if spec["target"]["kind"] == "real" else 1

    with _train_process_group(device, rank, world), contextlib.ExitStack() as folder:
        if streams.native and world > 1:
            _train_same_draws(device)
        _train_by_first(first, world, lambda: folder.enter_context(run_folder(options.out, resume=options.resume, overwrite=options.overwrite)))
        resumed = load_checkpoint(checkpoints, device) if options.resume else None
        if resumed:
            state, weights = resumed
            conflicts = resume_conflicts(state["origin"], origin, stages[-1]["settings"]["schedule"]["kind"] == "cosine")
            if conflicts:
                raise ResumeError(f"cannot resume {options.out}: {'; '.join(conflicts)}; start a new run with another --out, or --overwrite")
            # Fewer epochs than it has trained would end the run before its checkpoint, and its summary would count them.
            trained = state["epoch"] + 1
            if trained > epochs:
                last_stage = stages[-1]["settings"]["train"]["epochs"]
                raise ResumeError(f"cannot resume {options.out}: it has trained {_train_epoch_count(trained)}, more than the {epochs} this run trains; give --epochs {trained - (epochs - last_stage)} or more, or start a new run with another --out")
            # The model's variables, no more and no fewer: a checkpoint of an mmb whose model differs
            # (a ResNet before batch norm) names ones it lacks, or lacks some.
            saved = [name for name in weights if not name.startswith("stage:")]
            lacking = next((name for name in model.state_dict() if name not in weights), None)
            foreign = next((name for name in saved if name not in model.state_dict()), None)
            if lacking or foreign:
                what = f"has no {lacking}" if lacking else f"holds {foreign}, which the model does not have"
                raise ResumeError(f"cannot resume {options.out}: its checkpoint {what} (written by an mmb whose model differs); start a new run with another --out, or --overwrite")
            model.load_state_dict({name: weights[name] for name in saved})
            for stage_name, stage_weights in _train_finished_weights(weights).items():
                finished[stage_name] = _train_frozen_copy(model, stage_weights)
            optimizer = Optimizer(stages[plan[state["epoch"]][0] if state["epoch"] < len(plan) else -1]["settings"]["optimizer"])
            optimizer.restore(state["optimizer"])
            stage_step = state.get("stage_step", 0)
            for group, own in state["separate_optimizers"].items():
                separate[group] = Optimizer({"kind": own["kind"], "options": own["options"]})
                separate[group].restore(own["state"])
            history.restore(state["history"])
            first_epoch = state["next"]
            step = state["step"]
            best = state["best"]
            plateau_factor = state["plateau_factor"]
            # The log agrees with the checkpoint: what a killed run logged after it is cut off.
            _train_by_first(first, world, lambda: log.truncate(state["log_bytes"]))
            say(f"mmb: resumed from epoch {state['epoch'] + 1}")
        else:
            # A job script that always passes --resume starts its first run, or one killed before
            # its first checkpoint, this way; a mistyped --out would too, so it is said.
            if options.resume:
                say(f"mmb: --resume: {options.out} holds no checkpoint yet; the run starts from the beginning")
            if first:
                log.truncate(0)
                # The log's first record names what its per-modality arrays hold, in order.
                log.append([_train_json({"type": "run", "model": spec["name"], "modalities": modalities})])
        kernels = _train_kernels(device, world)
        progress = _train_progress_bar(epochs) if options.progress else None
        say(f"mmb: training {spec['name']} on backend {kernels}, seed {seed}, {_train_epoch_count(epochs)}{', draws from torch' if streams.native else ''}")

        # `predict`: what the fused metrics score instead of `out`.
        predict = trainer.get("predict")
        scored = (lambda f: predict(f, p)) if predict else None
        last = None
        saved = resumed[0]["epoch"] if resumed else None
        epoch_seconds = []
        epoch = first_epoch
        while epoch < epochs:
            epoch_start = time.perf_counter()
            stage_index, stage_epoch = plan[epoch]
            stage = stages[stage_index]
            code, settings = stage["code"], stage["settings"]
            if stage_epoch == 0 and epoch > 0:
                # A stage begins: the last one's model is kept for reading, and it trains with optimisers of its own.
                finished[stages[plan[epoch - 1][0]]["name"]] = _train_frozen_copy(model, model.state_dict())
                optimizer = Optimizer(settings["optimizer"])
                separate.clear()
                best = {"metric": -math.inf, "epoch": -1, "stale": 0}
                plateau_factor = 1.0
                stage_step = step
            if stage["name"] and stage_epoch == 0:
                say(f"mmb: stage {stage['name']} ({stage_index + 1}/{len(stages)}), {_train_epoch_count(settings['train']['epochs'])}")
            # Rules count steps and epochs within their stage; each stage draws from streams of its own.
            stage_seed = (seed + 1000003 * stage_index) % 2147483647
            # Groups the update leaves alone: those trained by their own objective, and the stage's frozen ones.
            untrained = code["trained_separately"] + settings["frozen"]
            order = Random(seed * 7919 + epoch).permutation(data.train.size)
            batch = settings["train"]["batch"]
            schedule = settings["schedule"]
            lr_schedule = plateau_factor if schedule["kind"] == "plateau" else schedule_factor(schedule, stage_epoch, settings["train"]["epochs"])
            # The epoch rule, on the weights the last epoch left: its `set`s apply before the first step.
            ruled = None
            if code.get("epoch_rule"):
                with torch.no_grad():
                    rule_context = EpochContext(model, data, stage_epoch, step - stage_step, history, stage_seed, finished, initial, streams)
                    ruled = code["epoch_rule"](rule_context, p)
                    rule_context.apply_assignments()
            # The epoch rule's history writes commit here, before the epoch's first step.
            history.advance()
            rule_record = _train_epoch_numbers(ruled["logged"]) if ruled else None
            bad_rule_value = rule_record and _train_first_non_finite(rule_record)
            if bad_rule_value:
                spec_line = code["value_lines"].get(bad_rule_value)
                where = f" (spec line {spec_line})" if spec_line else ""
                raise NumericError(f"non-finite value of `{bad_rule_value}`{where} at the start of epoch {epoch}; {_train_kept(saved, checkpoints)}")
            # With stages, every record names its stage (epoch and step count over the whole run).
            stage_field = {"stage": stage["name"]} if staged else {}
            # Each step's record stays on the device until the epoch ends: no host sync inside the loop.
            records = []
            keys = []
            for start in range(0, len(order), batch):
                rows = order[start : start + batch]
                # Under torchrun, the step runs on this process's part of the global batch.
                with batch_part(len(rows)) as mine:
                    inputs, target = batch_tensors(data.train, rows[mine], device)
                    ctx = StepContext(
                        model, inputs, target, step - stage_step, stage_epoch, history, stage_seed,
                        trained_separately=untrained, spec_params=p, progress=start / len(order), separate_optimizers=separate,
                        epoch_values=ruled, finished=finished, initial=initial, memory=memory, streams=streams,
                    )
                    # What balancing changed: each encoder's update gradient after the actions (before clipping).
                    update_norms = [None] * len(modalities)
                    ctx.update = _train_update(ctx, model, optimizer, params, settings["train"]["clip"], lr_schedule, update_norms)
                    result = code["train_step"](ctx, p)
                    # `set` statements assign together, from the values after the optimiser step.
                    ctx.apply_assignments()
                    record, keys = _train_step_record(result, ctx, settings["frozen"], per_sample, update_norms, device)
                history.advance()
                records.append((record, step))
                step += 1
                if progress:
                    progress(epoch, len(records), math.ceil(len(order) / batch), time.perf_counter() - epoch_start)

            # Download the epoch's step records at once; the first non-finite value stops the run.
            lines = []
            loss_sum = 0.0
            downloaded = torch.stack([record for record, _ in records]).cpu().tolist()
            for values, (_, record_step) in zip(downloaded, records):
                entry = _train_unflatten(keys, values)
                line = _train_json({"type": "step", "epoch": epoch, "step": record_step, **stage_field, **entry})
                bad = _train_first_non_finite(entry)
                if bad:
                    # The steps before the stop are logged, and the message names the checkpoint that is current.
                    if first:
                        log.append(lines + [line])
                    spec_line = code["value_lines"].get(bad)
                    where = f" (spec line {spec_line})" if spec_line else ""
                    raise NumericError(f"non-finite value of `{bad}`{where} at step {record_step}, epoch {epoch}; {_train_kept(saved, checkpoints)}")
                loss_sum += entry["loss"]
                lines.append(line)
            # Training alone (steps and their logs), apart from the evaluation that follows.
            step_seconds = time.perf_counter() - epoch_start

            # A checkpoint becomes current only when whole and finite: a weight or optimiser value
            # that the epoch's last step made non-finite stops the run with the previous one current.
            broken = _train_non_finite(model.state_dict(), [optimizer, *separate.values()])
            if broken:
                if first:
                    log.append(lines)
                raise NumericError(f"{broken} became non-finite in epoch {epoch}; {_train_kept(saved, checkpoints)}")
            last = _train_measure(model, spec, data, scored, device)
            valid = _train_primary(last["valid"])
            test = _train_primary(last["test"])
            seconds = time.perf_counter() - epoch_start
            epoch_seconds.append(seconds)
            metric_name = next(iter(last["test"]))
            loss = loss_sum / max(1, len(records))
            lr = float(settings["optimizer"]["options"]["lr"]) * lr_schedule
            rule_field = {"rule": rule_record} if rule_record is not None else {}
            lines.append(_train_json({"type": "epoch", "epoch": epoch, **stage_field, "loss": loss, "lr": lr, **rule_field, **last, "seconds": seconds, "step_seconds": step_seconds, **_train_memory(device)}))

            # Model selection: the epoch with the best validation metric, and what it measured.
            if sign * valid > best["metric"]:
                best = {"metric": sign * valid, "epoch": epoch, "stale": 0, "measured": last}
            else:
                best["stale"] += 1
            if schedule["kind"] == "plateau" and best["stale"] > 0 and best["stale"] % schedule["options"]["patience"] == 0:
                plateau_factor = max(schedule["options"]["min"], plateau_factor * schedule["options"]["gamma"])
                say(f"mmb: no improvement for {best['stale']} epochs; learning rate × {_train_number(plateau_factor)}")
            unimodal = "  ".join(f"{k} {v:.3f}" for k, v in last["unimodal"].items())
            say(f"epoch {epoch + 1}/{epochs}  loss {loss:.4f}  valid {metric_name} {valid:.4f}  test {metric_name} {test:.4f}  {unimodal}  {seconds:.1f}s")
            patience = settings["train"]["patience"]
            stop = patience > 0 and best["stale"] >= patience
            # Early stopping ends the stage: the run goes on with the next stage's first epoch, or ends.
            following = epoch + 1 if not stop else epochs if stage_index == len(stages) - 1 else next(i for i, (index, _) in enumerate(plan) if index == stage_index + 1)
            if first:
                # The epoch's log lines, then the checkpoint, which records the log's length with them.
                log_bytes = log.append(lines)
                state = {
                    "epoch": epoch,
                    "next": following,
                    "step": step,
                    **({"stage_step": stage_step} if staged else {}),
                    "optimizer": optimizer.state(),
                    "separate_optimizers": {group: {**own.spec, "state": own.state()} for group, own in separate.items()},
                    "history": history.state(),
                    "best": best,
                    "plateau_factor": plateau_factor,
                    "log_bytes": log_bytes,
                    "origin": origin,
                }
                weights = {**model.state_dict(), **_train_finished_entries(finished)}
                save_checkpoint(checkpoints, state, weights)
                # The best-validation checkpoint, kept beside the last one (`best/`, read as `checkpoints/` is).
                if best["epoch"] == epoch:
                    save_checkpoint(os.path.join(options.out, "best"), state, weights)
            saved = epoch
            if stop:
                following_stage = f"; stage {stages[stage_index + 1]['name']} follows" if following < epochs else ""
                say(f"mmb: early stop after epoch {epoch + 1} (no improvement for {best['stale']} epochs){following_stage}")
            epoch = following

        # The last epoch already measured the final weights; a resume with no epoch left measures here.
        final = last or _train_measure(model, spec, data, scored, device)
        chosen = final if best["epoch"] < 0 else best["measured"]
        target = spec["target"]
        folds = data.meta.get("folds")
        summary = {
            "model": spec["name"],
            "source": spec["source"],
            "backend": "torch",
            "kernels": kernels,
            "seed": seed,
            "epochs": epochs,
            "params": p,
            "metric": {"class": "accuracy", "mask": "dice"}.get(target["kind"], "mae"),
            "test": _train_primary(final["test"]),
            "valid": _train_primary(final["valid"]),
            "metrics": {"valid": final["valid"], "test": final["test"]},
            **({"classes": data.classes} if data.classes else {}),
            **({"folds": folds} if folds else {}),
            # Only where the draws are not the tfjs trainer's: then a tfjs run of the spec draws otherwise.
            **({"rng": rng} if streams.native else {}),
            "bestEpoch": best["epoch"],
            "best": {
                "epoch": best["epoch"],
                "test": _train_primary(chosen["test"]),
                "valid": _train_primary(chosen["valid"]),
                "metrics": {"valid": chosen["valid"], "test": chosen["test"]},
                "unimodal": chosen["unimodal"],
            },
            "unimodal": final["unimodal"],
            "unimodalMethod": "auxiliary head of each modality" if spec.get("auxHead") else "fused head with the other modalities' features set to zero",
            "modalities": modalities,
            "logged": {name: "mean over the batch" for name in per_sample},
            "wallSeconds": time.time() - started,
            "secondsPerEpoch": sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else 0,
        }
        if first:
            _train_write_atomically(os.path.join(options.out, "summary.json"), (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
        return summary


def _train_stages(trainer, epochs):
    """
    The stages the loop runs, in order: each one's name, generated functions (`code`) and settings
    (optimiser, schedule, train settings, frozen groups); without `stage` blocks, one stage of the
    spec's own settings. `epochs` (--epochs) replaces the last stage's epochs.
    """
    spec = trainer["spec"]
    if trainer.get("stages"):
        stages = [{"name": code["name"], "code": code, "settings": dict(spec["stages"][i])} for i, code in enumerate(trainer["stages"])]
    else:
        settings = {"optimizer": spec["optimizer"], "schedule": spec["schedule"], "train": spec["train"], "frozen": []}
        stages = [{"name": "", "code": trainer, "settings": settings}]
    if epochs is not None:
        stages[-1]["settings"] = {**stages[-1]["settings"], "train": {**stages[-1]["settings"]["train"], "epochs": epochs}}
    return stages


def _train_frozen_copy(model, weights):
    """A copy of `model` with `weights`, for reading only: what a finished stage ended with."""
    frozen = copy.deepcopy(model)
    frozen.load_state_dict(weights)
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen


def _train_finished_entries(finished):
    """Checkpoint entries of finished stages' weights: `stage:<name>:<parameter>`, as the tfjs trainer names them."""
    return {f"stage:{stage}:{name}": w for stage, frozen in finished.items() for name, w in frozen.state_dict().items()}


def _train_finished_weights(weights):
    """The finished stages' weights of a checkpoint, by stage."""
    stages = {}
    for entry, w in weights.items():
        if entry.startswith("stage:"):
            _, stage, name = entry.split(":", 2)
            stages.setdefault(stage, {})[name] = w
    return stages


def _train_epoch_numbers(logged):
    """The epoch rule's numbers, as the epoch log records them (per-modality values as lists)."""
    one = lambda v: float(v.detach().cpu().reshape(-1)[0]) if torch.is_tensor(v) else float(v)
    return {name: [one(x) for x in v] if isinstance(v, (list, tuple)) else one(v) for name, v in logged.items()}


def _train_measure(model, spec, data, predict, device):
    """What an epoch's evaluation measures: the fused head's metrics on every split, and each read modality's alone on the test split."""
    unimodal = {}
    for m, modality in enumerate(spec["modalities"]):
        if modality["name"] not in spec.get("unreadModalities", []):
            unimodal[modality["name"]] = _train_primary(evaluate(model, spec, data.test, only=m, device=device))
    return {
        "train": evaluate(model, spec, data.train, predict=predict, device=device),
        "valid": evaluate(model, spec, data.valid, predict=predict, device=device),
        "test": evaluate(model, spec, data.test, predict=predict, device=device),
        "unimodal": unimodal,
    }


def _train_update(ctx, model, optimizer, params, clip, lr_schedule, update_norms):
    """
    The step's `ctx.update(grads)`: records each encoder's update-gradient norm (into
    `update_norms`, where the update holds the encoder), clips the update to a global norm of
    `clip` (when > 0), takes the optimiser step with the rule's learning-rate factors times the
    schedule's, and commits the update pass's batch statistics of the norms it moves (not in a
    turn that leaves them, nor when frozen).
    """

    def update(grads):
        with torch.no_grad():
            for m in range(len(update_norms)):
                encoder = ctx.group.encoder(m)
                mine = [g for name, g in grads.values.items() if in_group(name, encoder)]
                if mine:
                    update_norms[m] = grad_norm(mine)
            gradients = dict(grads.values)
            if clip > 0:
                norm = grad_norm(list(gradients.values()))
                ratio = torch.full_like(norm, clip) / (norm + 1e-12)
                factor = torch.minimum(torch.ones_like(ratio), ratio)
                gradients = {name: g * factor for name, g in gradients.items()}

        def lr_factor(name):
            factor = grads.lr_factors.get(name)
            return lr_schedule if factor is None else factor * lr_schedule

        optimizer.apply(params, gradients, lr_factor)
        commit_statistics(model, grads.measured, lambda norm: f"{norm}.weight" in grads.values)
        grads.applied()

    return update


def _train_step_record(result, ctx, frozen, per_sample, update_norms, device):
    """
    A step's log record as one float32 vector on the device, and its layout: (key, width) pairs,
    width 0 for one number and n for one per modality. Keys in order: loss, total_loss, each
    rule value (a per-sample value as its mean over the global batch), then each encoder's
    gradient norm (of the raw task gradient) and update_grad_norm.
    """
    modalities = len(update_norms)
    with torch.no_grad():
        loss = result["loss"].detach()
        total = ctx.total_loss.detach() if ctx.total_loss is not None else loss
        keys = [("loss", 0), ("total_loss", 0)]
        flat = [loss.reshape(1).float(), total.reshape(1).float()]
        for key, value in result["values"].items():
            listed = isinstance(value, (list, tuple))
            keys.append((key, len(value) if listed else 0))
            for v in value if listed else [value]:
                number = torch.as_tensor(v.detach() if torch.is_tensor(v) else v, dtype=torch.float32, device=device)
                flat.append((mean_batch(number) if key in per_sample else number).reshape(-1)[:1])
    # An encoder that has no gradient (frozen) or that no update held (trained only by its own
    # objective) is logged as 0. A modality's turn (`turns step`) logs its encoder's own gradient.
    keys.append(("grad_norm", modalities))
    turns = result.get("turns")
    for m in range(modalities):
        encoder = ctx.group.encoder(m)
        gradient_of = turns[m] if turns else result["raw"]
        norm = torch.zeros(1, device=device) if encoder in frozen else grad_norm(gradient_of(encoder)).detach()
        flat.append(norm.reshape(1).float())
    keys.append(("update_grad_norm", modalities))
    flat.extend(torch.zeros(1, device=device) if u is None else u.reshape(1).float() for u in update_norms)
    return torch.cat(flat), keys


def _train_unflatten(keys, values):
    """A step record from its layout and its numbers: one number, or a list of one per modality."""
    entry = {}
    i = 0
    for key, width in keys:
        entry[key] = values[i] if width == 0 else values[i : i + width]
        i += max(1, width)
    return entry


def _train_first_non_finite(record):
    """The first key of `record` holding a NaN or an infinity."""
    for key, value in record.items():
        if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
            return key
    return None


def _train_non_finite(state, optimizers):
    """What a checkpoint must not keep: the first non-finite parameter or running statistic (a state_dict), or non-finite optimiser state."""
    for name, value in state.items():
        if not torch.isfinite(value).all():
            return f"parameter {name}"
    if not all(torch.isfinite(slot).all() for optimizer in optimizers for slot in optimizer.slots.values()):
        return "optimiser state"
    return None


def _train_kept(epoch, checkpoints):
    """Which checkpoint a stopped run leaves current, as the error message says it."""
    if epoch is None:
        return "no checkpoint was written (the stop came before the first epoch ended)"
    return f"the last good checkpoint (epoch {epoch + 1}) stays current in {checkpoints}"


def _train_primary(metrics):
    """The primary metric of a result of `evaluate`: its first."""
    return next(iter(metrics.values()))


def _train_device(name, local_rank=0, world=1):
    """The torch device of `--device`, or why it cannot be used; under torchrun, each process on a GPU of its own (its LOCAL_RANK)."""
    if name not in ("cpu", "cuda"):
        raise RunError(f'unknown device "{name}": choose cpu or cuda')
    if name == "cuda":
        if not torch.cuda.is_available():
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA support"
            raise RunError(f"--device cuda: torch {torch.__version__} ({built}) finds no CUDA GPU here; train with --device cpu")
        # cuDNN's fastest convolutions may add in any order: fixed ones let --resume continue bit for bit.
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        if world > 1:
            # Every process of the machine meets this alike, so that one reports it for all.
            here, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", world)), torch.cuda.device_count()
            if here > gpus:
                raise RunError(f"--device cuda: torchrun started {here} processes on this machine for its {gpus} GPUs; start one per GPU (--nproc_per_node {gpus})")
            torch.cuda.set_device(local_rank)
            return torch.device("cuda", local_rank)
    return torch.device(name)


def _train_same_draws(device):
    """
    Under torchrun with `--rng torch`: stops every process unless torch's generator gives them all
    the same draws. Each process draws a step's noise for the gradients they all share; draws that
    differ (GPUs of other kinds, other builds of torch) would move the replicas apart without a word.
    """
    drawn = TorchRandom(2166136261).uniforms_on(4096, device)
    # Each process's draws as one float64 number, and the smallest and largest over the processes.
    mine = (drawn * torch.arange(1, 4097, dtype=torch.float64, device=device)).sum().reshape(1)
    low, high = mine.clone(), mine.clone()
    torch.distributed.all_reduce(low, torch.distributed.ReduceOp.MIN)
    torch.distributed.all_reduce(high, torch.distributed.ReduceOp.MAX)
    if low.item() != high.item():
        raise RunError(f"--rng torch: torch's generator draws differently in these processes (on {device.type}); train with --rng shared, whose draws are the same everywhere")


def _train_kernels(device, world=1):
    """What ran the tensors, for the log and the summary: `torch 2.3.0 cpu`, `torch 2.3.0 cuda (NVIDIA H100) × 4 processes`."""
    kernels = f"torch {torch.__version__} cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f"torch {torch.__version__} cpu"
    return kernels if world == 1 else f"{kernels} × {world} processes"


# ---------------------------------------------------------------- processes (torchrun)


def _train_world():
    """(rank, local rank, number of processes) of this process, as torchrun sets them; (0, 0, 1) for a process that trains alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 0, 1
    return int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), world


@contextlib.contextmanager
def _train_process_group(device, rank, world):
    """
    For the block, joins the processes torchrun started (NCCL between GPUs, gloo between CPU
    processes) and shares each step's batch among them (ops.py). A process alone joins none.
    """
    if world == 1:
        yield
        return
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    share_batches((rank, world))
    try:
        yield
    finally:
        share_batches(None)
        torch.distributed.destroy_process_group()


def _train_by_first(first, world, action):
    """
    Runs `action`, a step of taking the run folder, on the process that writes it (`first`) alone;
    a RunError it raises (another run there, a cut log) stops every process alike.
    """
    error = None
    if first:
        try:
            action()
        except RunError as e:
            error = e
    if world > 1:
        shared = [error]
        torch.distributed.broadcast_object_list(shared, src=0)
        error = shared[0]
    if error is not None:
        raise error


def _train_memory(device):
    """
    What the process holds at the end of an epoch; a figure that grows from epoch to epoch is a
    leak. On CUDA, the allocator's live blocks (tensors) and their size; the CPU keeps no such
    count (null). rss_mb: the process's resident memory, where /proc tells it (Linux).
    """
    tensors = tensor_mb = rss_mb = None
    if device.type == "cuda":
        tensors = torch.cuda.memory_stats(device).get("allocation.all.current", 0)
        tensor_mb = round(torch.cuda.memory_allocated(device) / 2**10) / 2**10
    with contextlib.suppress(OSError):
        with open("/proc/self/statm") as statm:
            rss_mb = round(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20)
    return {"tensors": tensors, "tensor_mb": tensor_mb, "rss_mb": rss_mb}


def _train_number(x):
    """A number as the tfjs runtime's messages write it: 2, not 2.0."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _train_json(value):
    """One log line as JavaScript's JSON.stringify writes it: compact, with NaN and infinities as null."""

    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x) for x in v]
        return v

    return json.dumps(finite(value), separators=(",", ":"), ensure_ascii=False)


def _train_progress_bar(epochs):
    """One line redrawn in place on stderr: epoch, a bar of the epoch's steps, and the time the epoch has left."""

    def show(epoch, done, total, elapsed):
        width = 30
        filled = math.floor(width * done / total + 0.5)
        left = elapsed / done * (total - done)
        line = f"epoch {epoch + 1}/{epochs} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} steps, ETA {left:.1f}s"
        sys.stderr.write(f"\r{line}" if done < total else f"\r{' ' * len(line)}\r")
        sys.stderr.flush()

    return show


# ---------------------------------------------------------------- the run folder (runtime/run-folder.ts)

# What a run leaves: its state (log, summary, checkpoints, the best-validation checkpoint, the log's
# other forms) and the report made from it. A fresh run refuses a folder that holds any of it.
_RUN_STATE = ["log.jsonl", "summary.json", "checkpoints", "best", "log-steps.csv", "log-epochs.csv", "tensorboard"]
_RUN_FILES = _RUN_STATE + ["report.html"]
_RUN_LOCK = ".mmb-lock"


@contextlib.contextmanager
def run_folder(folder, resume=False, overwrite=False):
    """
    Holds `folder` for one run: takes its lock (a lock whose process has ended is taken over),
    then, for a fresh run, checks that no other run's state is there, or removes it with
    `overwrite`. `resume` continues the run that is there. The lock goes when the block ends.
    """
    lock = os.path.join(folder, _RUN_LOCK)
    _train_take_lock(lock, folder)
    try:
        if not resume:
            entries = set(os.listdir(folder))
            present = [entry for entry in _RUN_STATE if entry in entries]
            if present and not overwrite:
                # A tfjs run is continued by the tfjs trainer: a bare --resume would be refused.
                if _train_checkpoint_target(folder) == "tfjs":
                    raise RunFolderError(f"{folder} holds a tfjs run ({', '.join(present)}); choose another --out, or --overwrite to replace it (`--resume` without `--target torch` continues it)")
                raise RunFolderError(
                    f"{folder} holds another run ({', '.join(present)}); choose another --out, add --resume to continue that run, or --overwrite to replace it"
                )
            if overwrite:
                for entry in _RUN_FILES:
                    _train_remove(os.path.join(folder, entry))
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)


def _train_checkpoint_target(folder):
    """Which trainer wrote a run folder's current checkpoint (runtime/checkpoint.ts, `runTarget`); None before the first."""
    try:
        with open(os.path.join(folder, "checkpoints", "latest")) as latest:
            return _train_written_by(os.path.join(folder, "checkpoints", latest.read().strip()))
    except OSError:
        return None


def _train_written_by(checkpoint):
    """Which trainer wrote a checkpoint, by its files: this one writes weights.pt, the tfjs trainer weights.bin."""
    files = set(os.listdir(checkpoint))
    pt, bin_ = "weights.pt" in files, "weights.bin" in files
    return "torch" if pt and not bin_ else "tfjs" if bin_ and not pt else None


def _train_take_lock(lock, folder):
    """Creates the lock file holding this process's id; one whose process has ended is taken over, a live one refused."""
    for _ in range(2):
        with contextlib.suppress(FileExistsError):
            with os.fdopen(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY), "w") as handle:
                handle.write(str(os.getpid()))
            return
        try:
            with open(lock) as handle:
                holder = int(handle.read().strip())
        except (OSError, ValueError):
            holder = 0
        if holder > 0 and _train_alive(holder):
            raise RunFolderError(f"{folder} is in use by another mmb train (process {holder}); wait for it to finish, or choose another --out")
        # The process that held the lock has ended (killed mid-run): its lock is stale.
        with contextlib.suppress(OSError):
            os.unlink(lock)
    raise RunFolderError(f"{folder}: could not take the run folder's lock ({_RUN_LOCK})")


def _train_alive(pid):
    """Whether process `pid` runs. Windows has no signal-0 probe (os.kill would stop it): a lock there counts as held."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # Another user's process.
    return True


def _train_remove(path):
    """Removes a file or a folder, if there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


class RunLog:
    """
    log.jsonl, written in whole lines: an append that fails midway (a full disk) is cut back, so
    no torn line stays; a resume cuts it to the length its checkpoint recorded.
    """

    def __init__(self, path):
        self.path = path

    def append(self, lines):
        """Appends the lines; returns the log's new length in bytes."""
        before = self.size()
        if not lines:
            return before
        try:
            with open(self.path, "ab") as handle:
                handle.write(("\n".join(lines) + "\n").encode())
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                os.truncate(self.path, before)
            raise
        return self.size()

    def truncate(self, size):
        """Cuts the log back to `size` bytes (0: an empty log, created if absent)."""
        if size == 0:
            open(self.path, "wb").close()
            return
        if self.size() < size:
            raise ResumeError(f"{self.path} is shorter ({self.size()} bytes) than its checkpoint recorded ({size}); the log was edited or lost")
        os.truncate(self.path, size)

    def size(self):
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0


# ---------------------------------------------------------------- what made a run (runtime/run-origin.ts)


def run_origin(trainer, params, seed, epochs, data_sha256, rng="shared", code_sha256=None):
    """
    What made a run, recorded in every checkpoint so that `--resume` continues only the run that
    wrote it: the spec (its file, the SHA-256 of its text, and the model it describes), the
    params, the seed, the epochs, the SHA-256 of the samples (data.py), the generator of the step's draws
    (`shared`, or `torch on cpu|cuda`: torch's draws differ between kinds of device), and the
    SHA-256 of the trainer's own file.
    """
    spec = trainer["spec"]
    origin = {"source": spec["source"], "source_hash": trainer.get("source_hash"), "spec": spec, "params": params, "seed": seed, "epochs": epochs, "data": f"samples sha256:{data_sha256}", "rng": rng}
    return {**origin, "code": f"sha256:{code_sha256}"} if code_sha256 else origin


def _train_code_sha256():
    """The SHA-256 of this trainer's file (the runtime is part of it), or None where it was not run from a file."""
    path = globals().get("__file__")
    return _train_file_sha256(path) if path and os.path.isfile(path) else None


def resume_conflicts(saved, now, schedule_reads_epochs):
    """Why a checkpoint of `saved` cannot be continued as `now`; empty when it can. More epochs may follow unless the schedule reads their number."""
    conflicts = []
    if saved["source_hash"] != now["source_hash"] or saved["source"] != now["source"]:
        parts = [k for k in {**saved["spec"], **now["spec"]} if saved["spec"].get(k) != now["spec"].get(k)]
        text = "its comments" if saved["source"] == now["source"] else f"its file: {saved['source']} → {now['source']}"
        conflicts.append(f"the spec changed: {', '.join(parts)}" if parts else f"the spec's text changed (its rule, or {text})")

    def value(params, name):
        return _train_number(params[name]) if name in params else "(none)"

    names = list(dict.fromkeys([*saved["params"], *now["params"]]))
    changed = [f"{n} {value(saved['params'], n)} → {value(now['params'], n)}" for n in names if saved["params"].get(n) != now["params"].get(n)]
    if changed:
        conflicts.append(f"params changed: {', '.join(changed)}")
    if saved["seed"] != now["seed"]:
        conflicts.append(f"the seed changed: {saved['seed']} → {now['seed']}")
    if saved["data"] != now["data"]:
        conflicts.append(f"the data changed: {saved['data']} → {now['data']}")
    # A checkpoint from before --rng drew as `shared` does.
    if saved.get("rng", "shared") != now["rng"]:
        conflicts.append(f"the step's draws changed: {saved.get('rng', 'shared')} → {now['rng']} (--rng)")
    if saved["epochs"] != now["epochs"] and schedule_reads_epochs:
        conflicts.append(f"the epochs changed ({saved['epochs']} → {now['epochs']}) and the learning-rate schedule depends on them")
    # The same spec, params and mmb write the same trainer: a difference nothing above explains is an
    # edit. (A checkpoint without the hash has nothing to compare.)
    if not conflicts and saved.get("code") and now.get("code") and saved["code"] != now["code"]:
        conflicts.append("the trainer's code changed (it was edited since the run began)")
    return conflicts


def _train_file_sha256(path):
    """The SHA-256 of a file, read a MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- checkpoints (runtime/checkpoint.ts)

# `checkpoint-<epoch>/` holds weights.pt (the model's state_dict), tensors.pt (the optimiser's
# and the rules' tensors) and state.json (the loop's position, model selection, the run's origin,
# and the SHA-256 of both .pt files). Every tensor is read back with torch.load(weights_only=True):
# a checkpoint holds data, never pickled code. A checkpoint becomes current only when the file
# `latest` names it; `latest` is replaced by rename, so a kill mid-write leaves the previous
# checkpoint current, and a torn one is never loaded.


def save_checkpoint(folder, state, weights):
    """Writes `state` (JSON data and tensors) and `weights` (a state_dict) as `folder`'s current checkpoint."""
    os.makedirs(folder, exist_ok=True)
    name = f"checkpoint-{state['epoch']}"
    temporary = os.path.join(folder, f"{name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    tensors = []
    plain = _train_tensors_apart(state, tensors)
    weight_bytes = _train_torch_bytes(weights)
    tensor_bytes = _train_torch_bytes(tensors)
    _train_write_durably(os.path.join(temporary, "weights.pt"), weight_bytes)
    _train_write_durably(os.path.join(temporary, "tensors.pt"), tensor_bytes)
    checksums = {"weights_sha256": hashlib.sha256(weight_bytes).hexdigest(), "tensors_sha256": hashlib.sha256(tensor_bytes).hexdigest()}
    _train_write_durably(os.path.join(temporary, "state.json"), json.dumps({**plain, **checksums}).encode())
    shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    os.rename(temporary, os.path.join(folder, name))
    _train_write_atomically(os.path.join(folder, "latest"), name.encode())
    for entry in os.listdir(folder):
        if entry.startswith("checkpoint-") and entry != name:
            shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)


def load_checkpoint(folder, device):
    """`folder`'s current checkpoint as (state, weights), its tensors on `device`; None when it has none."""
    try:
        with open(os.path.join(folder, "latest")) as handle:
            name = handle.read().strip()
    except OSError:
        return None
    path = os.path.join(folder, name)
    if not os.path.isdir(path):
        raise ResumeError(f"{os.path.join(folder, 'latest')} names {name}, which is missing: the run cannot be continued; choose another --out, or --overwrite to start it again")
    # A tfjs run's checkpoint (weights.bin) is whole too, but not this trainer's to continue.
    if _train_written_by(path) == "tfjs":
        raise ResumeError(f"checkpoint {path} is a tfjs run's (weights.bin): continue it with `mmb train` without --target torch")
    try:
        with open(os.path.join(path, "state.json")) as handle:
            state = json.load(handle)
    except (OSError, ValueError) as e:
        why = "is missing" if isinstance(e, OSError) else f"is not whole JSON: {e}"
        raise ResumeError(f"checkpoint {path} is damaged (its state.json {why}); delete it or train without --resume") from None
    loaded = {}
    for part in ("weights", "tensors"):
        try:
            with open(os.path.join(path, f"{part}.pt"), "rb") as handle:
                data = handle.read()
        except OSError:
            raise ResumeError(f"checkpoint {path} is damaged ({part}.pt is missing); delete it or train without --resume") from None
        if hashlib.sha256(data).hexdigest() != state.get(f"{part}_sha256"):
            raise ResumeError(f"checkpoint {path} is damaged ({part}.pt does not match its checksum); delete it or train without --resume")
        loaded[part] = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    return _train_tensors_back(state, loaded["tensors"]), loaded["weights"]


def _train_tensors_apart(value, tensors):
    """`value` as JSON data: each tensor appended to `tensors` and replaced by {"$tensor": i}."""
    if torch.is_tensor(value):
        tensors.append(value.detach())
        return {"$tensor": len(tensors) - 1}
    if isinstance(value, dict):
        return {k: _train_tensors_apart(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_train_tensors_apart(v, tensors) for v in value]
    return value


def _train_tensors_back(value, tensors):
    """The inverse of _train_tensors_apart."""
    if isinstance(value, dict):
        if len(value) == 1 and "$tensor" in value:
            return tensors[value["$tensor"]]
        return {k: _train_tensors_back(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_train_tensors_back(v, tensors) for v in value]
    return value


def _train_torch_bytes(value):
    """What torch.save writes for `value`: checksummed before it is written."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _train_write_durably(path, data):
    """Writes `path` through to the disk (fsync), so that a rename after it never publishes a torn file."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _train_write_atomically(path, data):
    """Replaces `path` whole: written durably beside it, then renamed over it, so a reader never sees half."""
    _train_write_durably(f"{path}.tmp", data)
    os.replace(f"{path}.tmp", path)


# ---------------------------------------------------------------- the command line


def _train_whole_number(text):
    """`--epochs` and `--seed`: digits only, as mmb train takes them."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f'needs a whole number, got "{text}"')
    return int(text)


def _train_epoch_count(n):
    """"1 epoch", "2 epochs": for the console's lines."""
    return f"{n} epoch{'' if n == 1 else 's'}"


def _train_setting(text):
    """`name=value` of `--set`, the value a finite number."""
    name, _, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (name.isidentifier() and name.isascii() and math.isfinite(number)):
        raise argparse.ArgumentTypeError(f'takes name=number, got "{text}"')
    return name, number


def _train_in_range(value, range_):
    """Whether a number lies in a range of the spec (runtime/range.ts, `inRange`)."""
    if not math.isfinite(value) or (range_.get("integer") and not float(value).is_integer()):
        return False
    low, high = range_.get("min"), range_.get("max")
    if low is not None and (value <= low if range_.get("minOpen") else value < low):
        return False
    return not (high is not None and (value >= high if range_.get("maxOpen") else value > high))


def main(trainer, argv=None):
    """The trainer's command line: parses `argv` (default: the process's), trains, and exits 1 with one line on a stop."""
    spec = trainer["spec"]
    parser = argparse.ArgumentParser(
        description=f"Train {spec['name']} ({spec['source']}) with PyTorch, as `mmb train` trains it with TensorFlow.js.",
        epilog=f"params: {', '.join(f'{k}={_train_number(v)}' for k, v in trainer['params'].items()) or 'none'}",
    )
    parser.add_argument("--data", required=True, metavar="FILE.npz", help="the samples, as `mmb data export` writes them")
    parser.add_argument("--out", required=True, metavar="DIR", help="the run folder: log.jsonl, summary.json, checkpoints/, best/")
    parser.add_argument("--epochs", type=_train_whole_number, metavar="N", help="epochs to train (default: the spec's)")
    parser.add_argument("--seed", type=_train_whole_number, metavar="N", help="the seed of initialisation and shuffling (default: the spec's)")
    parser.add_argument("--set", dest="overrides", type=_train_setting, action="append", default=[], metavar="name=value", help="a `param` of the spec, for this run (repeatable)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the tensors live (default: cpu); under torchrun, each process on a GPU of its own")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace another run's state in --out")
    parser.add_argument("--init", metavar="FILE.npz", help="initial weights by their tfjs names and layouts, e.g. to start where a tfjs run starts")
    parser.add_argument("--rng", choices=list(_RNG_STREAMS), default="shared", help="the generator of a step's draws (noise, bernoulli, dropout, drop, uniform): shared (default), the tfjs trainer's, bit for bit; torch, torch's own on the device, faster, not the tfjs trainer's")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    if args.init and args.resume:
        parser.error("--init sets a fresh run's weights; a resumed run continues from its checkpoint's")
    if args.init and not args.init.lower().endswith(".npz"):
        parser.error(f'--init takes a .npz of weights by tfjs names and layouts (`mmb export RUN -o FILE.npz` writes one), got "{args.init}"; a .pt state_dict loads with Model.load_state_dict')
    rank, local_rank, _ = _train_world()
    # Under torchrun, the process of rank 0 speaks for all.
    quiet = args.quiet or rank > 0
    options = TrainOptions(
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        seed=args.seed,
        overrides=dict(args.overrides),
        device=args.device,
        resume=args.resume,
        overwrite=args.overwrite,
        init=args.init,
        rng=args.rng,
        progress=not quiet and sys.stderr.isatty(),
        log=(lambda line: None) if quiet else print,
    )
    try:
        summary = train(trainer, options)
    except (RunError, DataError, NotImplementedError) as e:
        # Every process of a machine stops alike (the same data, values and shared decisions): one reports it.
        if local_rank == 0:
            print(f"mmb: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        # Ctrl-C, or `mmb train` passing on its SIGINT: one line, not a traceback. Checkpoints are made
        # current by a rename, so the last one is whole.
        if local_rank == 0:
            print(f"mmb: interrupted; --resume continues from the last checkpoint in {args.out}", file=sys.stderr)
        sys.exit(130)
    options.log(f"mmb: test {summary['metric']} {summary['test']:.4f} on {summary['kernels']}; log, summary and checkpoints in {args.out}")
