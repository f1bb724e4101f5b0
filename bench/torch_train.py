"""torch_train.py: the PyTorch side of bench/train_bench.sh (README.md
"Training step vs PyTorch"): the same transformer as llm's for a config file
of ours, trained on random tokens, timed step by step.

    /usr/bin/python3 bench/torch_train.py CONFIG.json [--steps N] [--warmup N] [--threads N]

Reads the model, train.batch_size, train.clip_grad and optim sections of an
llm config (JSON), builds the model of DESIGN.md ("Model") in plain torch.nn
for the keys our reference configs use (pre-norm; layernorm or rmsnorm;
learned or rope positions; gelu (tanh) or swiglu; biases on or off; tied or
untied head; full causal attention, n_kv_heads = n_heads), and prints one
RESULT line as bench/train_step.c does, parameter count included (it must
equal llm's: same architecture).

A step, in the same order as train_step.c: forward with the mean
cross-entropy, backward, the global gradient norm clipped to train.clip_grad
(clip_grad_norm_: the sum of squares of every gradient), then AdamW
(torch.optim.AdamW: optim.lr, betas, eps; weight decay on 2-D weight
matrices, none on embeddings, norms, biases). Tokens: uniform random in [0, V),
new every step. Threads: torch.set_num_threads (default: all cores). Peak RSS:
resource.getrusage ru_maxrss of this process, as train_step.c reads its own.
Eager mode (PyTorch 1.13 has no scaled_dot_product_attention: attention is
written out with a causal mask, as nanoGPT does without flash attention).
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Norm(nn.Module):
    """layernorm (weight, optional bias) or rmsnorm (weight), over the last dim."""

    def __init__(self, dim, kind, bias, eps):
        super().__init__()
        self.kind, self.eps = kind, eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if kind == "layernorm" and bias else None

    def forward(self, x):
        if self.kind == "layernorm":
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(T, HS, theta):
    """cos, sin (T, HS/2): angle t * theta^(-2i/HS), HF rotate_half layout."""
    inv = theta ** (-torch.arange(0, HS // 2, dtype=torch.float64) * 2.0 / HS)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def rope(x, cos, sin):
    """x (B, NH, T, HS): pairs (x_i, x_{i+HS/2}) turned by the angle of (t, i)."""
    h = x.shape[-1] // 2
    x0, x1 = x[..., :h], x[..., h:]
    return torch.cat((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1)


class Block(nn.Module):
    def __init__(self, m, T):
        super().__init__()
        C, F_, bias = m["d_model"], m["d_ff"], m["bias"]
        self.NH, self.HS = m["n_heads"], C // m["n_heads"]
        self.swiglu = m["activation"] == "swiglu"
        self.attn_norm = Norm(C, m["norm"], bias, m["norm_eps"])
        self.wq = nn.Linear(C, C, bias=bias)
        self.wk = nn.Linear(C, C, bias=bias)
        self.wv = nn.Linear(C, C, bias=bias)
        self.wo = nn.Linear(C, C, bias=bias)
        self.mlp_norm = Norm(C, m["norm"], bias, m["norm_eps"])
        self.w1 = nn.Linear(C, F_, bias=bias)
        self.w3 = nn.Linear(C, F_, bias=bias) if self.swiglu else None
        self.w2 = nn.Linear(F_, C, bias=bias)

    def forward(self, x, mask, cos, sin):
        B, T, C = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, self.NH, self.HS).transpose(1, 2)
        k = self.wk(h).view(B, T, self.NH, self.HS).transpose(1, 2)
        v = self.wv(h).view(B, T, self.NH, self.HS).transpose(1, 2)
        if cos is not None:
            q, k = rope(q, cos, sin), rope(k, cos, sin)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.HS))
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.wo(y)
        h = self.mlp_norm(x)
        if self.swiglu:
            a = F.silu(self.w1(h)) * self.w3(h)
        else:
            a = F.gelu(self.w1(h), approximate="tanh")
        return x + self.w2(a)


class Model(nn.Module):
    def __init__(self, m):
        super().__init__()
        V, T, C = m["vocab_size"], m["context_length"], m["d_model"]
        self.tok_emb = nn.Embedding(V, C)
        self.pos_emb = nn.Embedding(T, C) if m["position"] == "learned" else None
        self.layers = nn.ModuleList(Block(m, T) for _ in range(m["n_layers"]))
        self.final_norm = Norm(C, m["norm"], m["bias"], m["norm_eps"])
        self.lm_head = None if m["tie_embeddings"] else nn.Linear(C, V, bias=False)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))
        if m["position"] == "rope":
            cos, sin = rope_tables(T, C // m["n_heads"], m["rope_theta"])
            self.register_buffer("cos", cos)
            self.register_buffer("sin", sin)
        else:
            self.cos = self.sin = None
        for name, p in self.named_parameters():  # GPT-2 init, as llm_model_init
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * m["n_layers"]) if name.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, tokens, targets):
        B, T = tokens.shape
        x = self.tok_emb(tokens)
        if self.pos_emb is not None:
            x = x + self.pos_emb.weight[:T]
        cos = self.cos[:T] if self.cos is not None else None
        sin = self.sin[:T] if self.sin is not None else None
        for blk in self.layers:
            x = blk(x, self.mask, cos, sin)
        x = self.final_norm(x)
        w = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        logits = x @ w.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def load_config(path):
    with open(path) as f:
        c = json.load(f)
    m = {"norm_eps": 1e-5, "rope_theta": 10000.0, "bias": True, "tie_embeddings": True,
         "activation": "gelu", "norm": "layernorm", "position": "learned"}
    m.update(c.get("model", {}))
    for key, want in (("norm_position", "pre"), ("attention", "full"), ("mlp", "dense")):
        if m.get(key, want) != want:
            sys.exit(f"torch_train.py: model.{key} = {m[key]} is not modelled here")
    if m.get("n_kv_heads", 0) not in (0, m["n_heads"]) or m.get("qk_norm") or m.get("dropout", 0):
        sys.exit("torch_train.py: n_kv_heads, qk_norm and dropout are not modelled here")
    if m["activation"] not in ("gelu", "swiglu") or m["position"] not in ("learned", "rope"):
        sys.exit("torch_train.py: activation gelu|swiglu and position learned|rope only")
    t = {"batch_size": 8, "clip_grad": 1.0, "seed": 1}
    t.update(c.get("train", {}))
    o = {"lr": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}
    o.update(c.get("optim", {}))
    return m, t, o


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    m, t, o = load_config(a.config)
    torch.set_num_threads(a.threads)
    torch.manual_seed(t["seed"])
    model = Model(m)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "emb" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "emb" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o["weight_decay"]},
                             {"params": other, "weight_decay": 0.0}],
                            lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"])
    B, T, V = t["batch_size"], m["context_length"], m["vocab_size"]
    gen = torch.Generator().manual_seed(12345)
    times, first_loss, loss, gnorm = [], None, None, None
    for it in range(a.warmup + a.steps):
        tok = torch.randint(0, V, (B, T + 1), generator=gen)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(tok[:, :-1], tok[:, 1:])
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip_grad"])
        opt.step()
        dt = time.perf_counter() - t0
        loss = loss.item()
        first_loss = loss if first_loss is None else first_loss
        if it >= a.warmup:
            times.append(dt)
        print(f"torch_train: step {it + 1} {dt * 1e3:.1f} ms loss {loss:.4f} grad_norm {float(gnorm):.4f}",
              file=sys.stderr)
    mean = sum(times) / len(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    fl = torch.__config__.parallel_info().splitlines()
    backend = next((s.split(":")[-1].strip() for s in fl if "ATen parallel backend" in s), "?")
    print(f"RESULT section=train impl=torch config={a.config} threads={a.threads} B={B} T={T} "
          f"params={params} warmup={a.warmup} steps={a.steps} step_ms={mean * 1e3:.3f} "
          f"best_step_ms={min(times) * 1e3:.3f} tokens_per_s={B * T / mean:.1f} "
          f"first_loss={first_loss:.4f} last_loss={loss:.4f} grad_norm={float(gnorm):.4f} "
          f"peak_rss_mb={rss:.1f} torch={torch.__version__} parallel={backend.replace(' ', '_')}")


if __name__ == "__main__":
    main()
