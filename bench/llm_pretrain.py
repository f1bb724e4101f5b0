"""llm_pretrain.py: our side of bench/train_bench.sh: `llm pretrain` itself
(the whole trainer: data loader, steps, clipping, AdamW, metrics) on a config,
over a shard of random tokens, with one "RESULT section=train impl=llm ..."
line as bench/torch_train.py prints for PyTorch.

  python3 bench/llm_pretrain.py LLM CONFIG.json WORKDIR --steps S --warmup W --threads N

Throughput is measured from metrics.jsonl (one row per step): tokens and wall
time between the end of step W and the end of step W+S, so start-up (peak
measurement, allocation) and the final checkpoint are not counted. Peak RSS is
the child's maximum resident set (getrusage RUSAGE_CHILDREN)."""
import argparse
import json
import os
import random
import resource
import shutil
import struct
import subprocess
import sys


def write_shard(path, vocab, n, seed):
    # LLMSHARD v1: magic, version, vocab, token bytes, reserved, count (docs/formats.md)
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.write(b"LLMSHARD" + struct.pack("<IIIIQ", 1, vocab, 2, 0, n))
        f.write(struct.pack("<%dH" % n, *(rnd.randrange(vocab) for _ in range(n))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("llm")
    p.add_argument("config")
    p.add_argument("workdir")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    cfg = json.load(open(a.config))
    vocab = cfg["model"]["vocab_size"]
    B, T = cfg["train"]["batch_size"], cfg["model"]["context_length"]
    os.makedirs(a.workdir, exist_ok=True)
    shard = os.path.join(a.workdir, "random.bin")
    if not os.path.exists(shard):
        write_shard(shard, vocab, 1 << 20, 1)
    run = os.path.join(a.workdir, "run-" + os.path.basename(a.config).replace(".json", ""))
    shutil.rmtree(run, ignore_errors=True)
    total = a.warmup + a.steps
    cmd = [a.llm, "pretrain", a.config, "-q", "--set", "data.train=" + shard, "--set", "data.val=",
           "--set", "train.steps=%d" % total, "--set", "train.eval_every=0", "--set", "schedule.warmup=0",
           "--set", "train.checkpoint_every=0", "--set", "train.log_every=1",
           "--set", "train.threads=%d" % a.threads, "--set", "train.out_dir=" + run]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    w, e = rows[a.warmup - 1], rows[total - 1]
    dt = e["elapsed_s"] - w["elapsed_s"]
    tps = (e["tokens"] - w["tokens"]) / dt
    info = json.loads(subprocess.run([a.llm, "info", a.config, "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    for r in rows:
        print("llm_pretrain: step %d loss %.4f tok/s %.0f" % (r["step"], r["loss"], r.get("tokens_per_s", 0)),
              file=sys.stderr)
    print("RESULT section=train impl=llm config=%s threads=%d B=%d T=%d params=%d train_flops_per_token=%.6g "
          "warmup=%d steps=%d step_ms=%.3f tokens_per_s=%.1f first_loss=%.4f last_loss=%.4f peak_rss_mb=%.1f"
          % (a.config, a.threads, B, T, info["params"]["total"], info["flops_per_token"]["train"], a.warmup,
             a.steps, 1e3 * dt / a.steps, tps, rows[0]["loss"], e["loss"], rss_mb))


if __name__ == "__main__":
    main()
