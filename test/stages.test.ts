import * as tf from "@tensorflow/tfjs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { selectBackend } from "../runtime/backend.js";
import { train } from "../runtime/train.js";
import { compileOrThrow, logRecords, smallSpec, straightAndResumed } from "./helpers.js";
import { crossEntropy, expectParameters, features, fullGradient, fused, lr, oneStep, pair, sgdStep, spec, type Params } from "./one-step.js";

/**
 * Training stages (`stage NAME { ... }`): run in order, each with its own settings, rules and
 * optimiser; frozen groups stay as they are; a later stage reads an earlier one's final weights
 * as a constant teacher (`NAME.z[m]`); rules count epochs within their stage; a run resumed inside
 * a later stage continues bit for bit.
 */
beforeAll(async () => {
  await selectBackend("cpu");
});



describe("stages", () => {
  it("a later stage reads an earlier one's final weights as a constant teacher; rules count epochs within their stage", async () => {
    const source = spec(
      pair,
      `fusion concat -> linear(4)
loss cross_entropy(out, y)
stage first {
  train epochs 1 batch 16
}
stage second {
  train epochs 2 batch 16
  loss cross_entropy(out, y) + 0.5 * mean(batch, mse(z[a], first.z[a]))
  every epoch {
    e = epoch
  }
  balance {
    agree = mean(batch, kl(first.out, out))
  }
}`,
    );
    const { init, after, records, epochRules, x, y } = await oneStep(pair, source);
    expect(epochRules.map((r) => r.e)).toEqual([undefined, 0, 1]);
    const ce = (q: Params) => crossEntropy(fused(q, features(q, x)), y);
    const teacher = sgdStep(init, ce);
    const za = features(teacher, x)[0]!;
    const distil = (q: Params) => tf.add(ce(q), tf.mul(0.5, tf.mean(tf.mean(tf.square(tf.sub(features(q, x)[0]!, za)), -1))));
    // The second stage's first step starts at the teacher: the distillation term and its gradient are 0 there.
    expect(records[1]!.agree as number).toBeCloseTo(0, 6);
    expect(records[2]!.agree as number).toBeGreaterThan(0);
    expectParameters(after, sgdStep(sgdStep(teacher, distil), distil), 1e-5);
    expect(records.map((r) => r.stage)).toEqual(["first", "second", "second"]);
  });

  it("freeze leaves a group untrained (gradient norm 0), and each stage starts its own optimiser: no momentum carried over", async () => {
    const source = spec(
      pair,
      `fusion concat -> linear(4)
loss cross_entropy(out, y)
optimizer sgd(lr: ${lr}, momentum: 0.9)
stage joint {
  train epochs 1 batch 16
}
stage probe {
  train epochs 1 batch 16
  freeze encoder[m]
}`,
    ).replace(`optimizer sgd(lr: ${lr})\n`, "");
    const { init, after, records, x, y } = await oneStep(pair, source);
    const ce = (q: Params) => crossEntropy(fused(q, features(q, x)), y);
    // SGD with momentum: the first step of each optimiser is lr·g; the probe's moves only the head.
    const joint = sgdStep(init, ce);
    const g = fullGradient(ce, joint, ["head.kernel", "head.bias"]);
    const expected = { ...joint, "head.kernel": tf.sub(joint["head.kernel"]!, tf.mul(g.get("head.kernel")!, lr)), "head.bias": tf.sub(joint["head.bias"]!, tf.mul(g.get("head.bias")!, lr)) };
    expectParameters(after, expected, 1e-5);
    expect(records[1]!.grad_norm).toEqual([0, 0]);
  });

  it("a run resumed inside a later stage continues as the uninterrupted one: bit-identical weights and teacher weights", async () => {
    const source = smallSpec(
      "",
      `stage teacher {
  train epochs 1 batch 16
}
stage student {
  train epochs 3 batch 16
  loss cross_entropy(out, y) + mean(batch, kl(teacher.out, out))
  every epoch {
    when epoch == 0 { set weights(encoder[m]) = fresh(encoder[m]) }
  }
}`,
    ).replace(/balance \{\n\n\}\n/, "");
    const { straight, resumed, stopped, a } = await straightAndResumed(source, 1, 3);
    expect(stopped.state.epoch).toBe(1); // inside the second stage
    expect(a.state.manifest.some((m) => m.name.startsWith("stage:teacher:"))).toBe(true);
    const losses = (out: string) => logRecords(out).filter((r) => r.type === "step").map((r) => [r.stage, r.loss]);
    expect(losses(resumed)).toEqual(losses(straight));
  });

  it("early stopping ends its stage: the next stage follows, and a resume of the finished run trains nothing more", async () => {
    const source = smallSpec(
      "",
      `stage still {
  train epochs 10 patience 1
  optimizer sgd(lr: 1e-12)
}
stage after {
  train epochs 1
}`,
    ).replace(/balance \{\n\n\}\n/, "");
    const trainer = await loadTrainer(await compileOrThrow(source), mkdtempSync(join(tmpdir(), "mmb-stage-stop-code-")));
    const out = mkdtempSync(join(tmpdir(), "mmb-stage-stop-"));
    const said: string[] = [];
    await train(trainer, { out, backend: "cpu", log: (line) => said.push(line) });
    // lr 1e-12: the validation metric never improves after the first epoch, so the stage stops after its second.
    const epochs = () => logRecords(out).filter((r) => r.type === "epoch").map((r) => [r.stage, r.epoch]);
    expect(epochs()).toEqual([["still", 0], ["still", 1], ["after", 10]]);
    // Each stage is announced as it begins, the first too.
    expect(said.filter((line) => line.startsWith("mmb: stage "))).toEqual(["mmb: stage still (1/2), 10 epochs", "mmb: stage after (2/2), 1 epoch"]);
    await train(trainer, { out, backend: "cpu", resume: true, log: () => {} });
    expect(epochs()).toEqual([["still", 0], ["still", 1], ["after", 10]]);
    // Without stages too: a resume after an early stop does not train on past it (it went on before).
    const single = await loadTrainer(await compileOrThrow(smallSpec("", "optimizer sgd(lr: 1e-12)").replace("optimizer sgd(lr: 0.1)\n", "").replace("train epochs 2 batch 16 seed 2", "train epochs 8 batch 16 seed 2 patience 1")), mkdtempSync(join(tmpdir(), "mmb-stop-code-")));
    const alone = mkdtempSync(join(tmpdir(), "mmb-stop-"));
    await train(single, { out: alone, backend: "cpu", log: () => {} });
    await train(single, { out: alone, backend: "cpu", resume: true, log: () => {} });
    expect(logRecords(alone).filter((r) => r.type === "epoch").map((r) => r.epoch)).toEqual([0, 1]);
  });
});
