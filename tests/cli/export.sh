#!/bin/sh
# export.sh: `llm export` and `llm import` end to end: the safetensors
# header read with python's struct + json, the HF folder's config.json keys
# and tensor names, logits of the HF folder computed by an independent
# pure-python forward pass (HF's GPT-2 and Llama semantics: Conv1D x @ W + b,
# q|k|v split of c_attn, rotate_half rope, GQA) against ours, import back to
# identical logits, and one-line errors with exit 1 (2 for usage).
. tests/cli/lib.sh

FIX="$(dirname "$LLM")/tests/test_model_io" # --write-model CONFIG OUT, --logits CKPT

# fails DESC PATTERN CODE CMD...: exit CODE, one stderr line "llm ...: error: ...PATTERN".
fails() {
    what=$1 pat=$2 code=$3; shift 3
    expect "$what: exit $code" "$code" "$@"
    one_line "$what: one stderr line"
    has "$T/err" "$what: message" "error: .*$pat"
}

# py DESC SCRIPT ARGS...: python3 SCRIPT ARGS exits 0.
py() {
    desc=$1; shift
    if ! command -v python3 >/dev/null 2>&1; then skip_test "$desc: no python3"; return; fi
    if python3 "$@" >"$T/pyout" 2>&1; then ok "$desc"; else nok "$desc" "$(head -c 1500 "$T/pyout")"; fi
}

if [ ! -x "$FIX" ]; then
    echo "1..0 # SKIP $FIX not built"
    exit 0
fi

cat >"$T/gpt2.json" <<'EOF'
{"model": {"vocab_size": 263, "context_length": 16, "d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 24}}
EOF
cat >"$T/llama.json" <<'EOF'
{"model": {"vocab_size": 263, "context_length": 16, "d_model": 16, "n_layers": 2, "n_heads": 4,
           "n_kv_heads": 2, "d_ff": 24, "activation": "swiglu", "norm": "rmsnorm", "position": "rope",
           "bias": false, "tie_embeddings": false, "rope_theta": 500000, "norm_eps": 1e-6}}
EOF
cat >"$T/sliding.json" <<'EOF'
{"model": {"vocab_size": 263, "context_length": 16, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 24,
           "activation": "swiglu", "norm": "rmsnorm", "position": "rope", "bias": false,
           "attention": "sliding", "window": 4}}
EOF
for m in gpt2 llama sliding; do
    if "$FIX" --write-model "$T/$m.json" "$T/$m.llm" 2>"$T/fixerr"; then ok "fixture $m.llm"; else
        nok "fixture $m.llm" "$(cat "$T/fixerr")"; fi
done
"$FIX" --write-model "$T/gpt2.json" "$T/notok.llm" --no-tokenizer 2>"$T/fixerr" || nok "fixture notok.llm" "$(cat "$T/fixerr")"

# ---- python checkers ----
cat >"$T/st.py" <<'EOF'
# st.py FILE [native]: a strict read of a safetensors file with struct + json.
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
assert (8 + n) % 8 == 0, 'data not 8-aligned'
h = json.loads(b[8:8 + n])
meta = h.pop('__metadata__')
assert meta['format'] == 'pt', meta
at = 0
for name, t in sorted(h.items(), key=lambda kv: kv[1]['data_offsets']):
    assert t['dtype'] == 'F32', (name, t)
    s, e = t['data_offsets']
    cnt = 1
    for d in t['shape']:
        cnt *= d
    assert s == at and e - s == 4 * cnt, (name, t, at)
    at = e
assert 8 + n + at == len(b), 'file size'
if len(sys.argv) > 2:
    cfg = json.loads(meta['llm_config'])
    assert cfg['model']['d_model'] == 16 and 'train' in cfg, cfg
    assert h['tok_emb.weight']['shape'] == [263, 16] and 'layers.1.mlp.w2.weight' in h, sorted(h)
    assert h['layers.0.attn.wq.weight']['shape'] == [16, 16]
EOF

cat >"$T/ref.py" <<'EOF'
# ref.py HF_DIR OURS: logits of the HF folder by HF's semantics, in plain
# python, against ours (one per line) for tokens i * 37 % V, i < 6.
import json, math, struct, sys
d = sys.argv[1]
c = json.load(open(d + '/config.json'))
b = open(d + '/model.safetensors', 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
W = {}
for k, t in json.loads(b[8:8 + n]).items():
    if k == '__metadata__':
        continue
    s, e = t['data_offsets']
    v = list(struct.unpack('<%df' % ((e - s) // 4), b[8 + n + s:8 + n + e]))
    if len(t['shape']) == 2:
        r, cl = t['shape']
        v = [v[i * cl:(i + 1) * cl] for i in range(r)]
    W[k] = v

def linear(x, w, bias=None):  # torch Linear: w [out, in]
    return [sum(a * q for a, q in zip(row, x)) + (bias[o] if bias else 0) for o, row in enumerate(w)]

def conv1d(x, w, bias):  # HF Conv1D: w [in, out], x @ w + b
    return [bias[j] + sum(x[i] * w[i][j] for i in range(len(x))) for j in range(len(w[0]))]

def layernorm(x, w, bias, eps):
    m = sum(x) / len(x)
    var = sum((a - m) ** 2 for a in x) / len(x)
    return [(a - m) / math.sqrt(var + eps) * g + q for a, g, q in zip(x, w, bias)]

def rmsnorm(x, w, eps):
    r = 1 / math.sqrt(sum(a * a for a in x) / len(x) + eps)
    return [a * r * g for a, g in zip(x, w)]

def attend(q, k, v, nh, nkv):  # q[t] (nh*hs), k/v[t] (nkv*hs), causal
    hs = len(q[0]) // nh
    out = []
    for t in range(len(q)):
        o = []
        for h in range(nh):
            g = h // (nh // nkv)
            qs = q[t][h * hs:(h + 1) * hs]
            sc = [sum(a * bb for a, bb in zip(qs, k[s][g * hs:(g + 1) * hs])) / math.sqrt(hs) for s in range(t + 1)]
            mx = max(sc)
            p = [math.exp(x - mx) for x in sc]
            z = sum(p)
            o += [sum(p[s] / z * v[s][g * hs + i] for s in range(t + 1)) for i in range(hs)]
        out.append(o)
    return out

def rope(x, pos, nh, theta):  # HF rotate_half: pairs (i, i + hs/2)
    hs = len(x) // nh
    y = list(x)
    for h in range(nh):
        for i in range(hs // 2):
            a = pos * theta ** (-2 * i / hs)
            x1, x2 = x[h * hs + i], x[h * hs + i + hs // 2]
            y[h * hs + i] = x1 * math.cos(a) - x2 * math.sin(a)
            y[h * hs + i + hs // 2] = x2 * math.cos(a) + x1 * math.sin(a)
    return y

V = c['vocab_size']
toks = [(i * 37) % V for i in range(6)]
if c['model_type'] == 'gpt2':
    p, eps, nh = 'transformer.', c['layer_norm_epsilon'], c['n_head']
    x = [[a + q for a, q in zip(W[p + 'wte.weight'][tk], W[p + 'wpe.weight'][t])] for t, tk in enumerate(toks)]
    gelu = lambda a: 0.5 * a * (1 + math.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a ** 3)))
    for l in range(c['n_layer']):
        L = p + 'h.%d.' % l
        hn = [layernorm(r, W[L + 'ln_1.weight'], W[L + 'ln_1.bias'], eps) for r in x]
        qkv = [conv1d(r, W[L + 'attn.c_attn.weight'], W[L + 'attn.c_attn.bias']) for r in hn]
        C = len(x[0])
        a = attend([r[:C] for r in qkv], [r[C:2 * C] for r in qkv], [r[2 * C:] for r in qkv], nh, nh)
        x = [[u + w for u, w in zip(r, conv1d(o, W[L + 'attn.c_proj.weight'], W[L + 'attn.c_proj.bias']))] for r, o in zip(x, a)]
        hn = [layernorm(r, W[L + 'ln_2.weight'], W[L + 'ln_2.bias'], eps) for r in x]
        m = [[gelu(u) for u in conv1d(r, W[L + 'mlp.c_fc.weight'], W[L + 'mlp.c_fc.bias'])] for r in hn]
        x = [[u + w for u, w in zip(r, conv1d(o, W[L + 'mlp.c_proj.weight'], W[L + 'mlp.c_proj.bias']))] for r, o in zip(x, m)]
    x = [layernorm(r, W[p + 'ln_f.weight'], W[p + 'ln_f.bias'], eps) for r in x]
    head = W[p + 'wte.weight']
else:
    eps, nh, nkv, th = c['rms_norm_eps'], c['num_attention_heads'], c['num_key_value_heads'], c['rope_theta']
    x = [list(W['model.embed_tokens.weight'][tk]) for tk in toks]
    silu = lambda a: a / (1 + math.exp(-a))
    for l in range(c['num_hidden_layers']):
        L = 'model.layers.%d.' % l
        hn = [rmsnorm(r, W[L + 'input_layernorm.weight'], eps) for r in x]
        q = [rope(linear(r, W[L + 'self_attn.q_proj.weight']), t, nh, th) for t, r in enumerate(hn)]
        k = [rope(linear(r, W[L + 'self_attn.k_proj.weight']), t, nkv, th) for t, r in enumerate(hn)]
        v = [linear(r, W[L + 'self_attn.v_proj.weight']) for r in hn]
        a = attend(q, k, v, nh, nkv)
        x = [[u + w for u, w in zip(r, linear(o, W[L + 'self_attn.o_proj.weight']))] for r, o in zip(x, a)]
        hn = [rmsnorm(r, W[L + 'post_attention_layernorm.weight'], eps) for r in x]
        m = [[silu(g) * u for g, u in zip(linear(r, W[L + 'mlp.gate_proj.weight']), linear(r, W[L + 'mlp.up_proj.weight']))] for r in hn]
        x = [[u + w for u, w in zip(r, linear(o, W[L + 'mlp.down_proj.weight']))] for r, o in zip(x, m)]
    x = [rmsnorm(r, W['model.norm.weight'], eps) for r in x]
    head = W['model.embed_tokens.weight'] if c['tie_word_embeddings'] else W['lm_head.weight']
ref = [a for r in x for a in linear(r, head)]
ours = [float(s) for s in open(sys.argv[2]).read().split()]
assert len(ours) == len(ref), (len(ours), len(ref))
# float32 against double: errors ~1e-6 of the largest logit; a layout mistake gives ~1
worst, scale = max(abs(a - q) for a, q in zip(ref, ours)), max(abs(a) for a in ref)
assert worst < 1e-4 * (1 + scale), 'logits differ by up to %g (largest %g)' % (worst, scale)
EOF

# ---- safetensors (native names, any variant) ----
expect "safetensors: exit 0" 0 "$LLM" export "$T/gpt2.llm" --format safetensors -o "$T/g.safetensors"
py "safetensors: header, offsets, metadata" "$T/st.py" "$T/g.safetensors" native
expect "safetensors of a non-HF shape: exit 0" 0 "$LLM" export "$T/sliding.llm" --format safetensors -o "$T/s.safetensors"
fails "safetensors: existing file" "exists and is not empty" 1 "$LLM" export "$T/gpt2.llm" --format safetensors -o "$T/g.safetensors"
expect "safetensors --force: exit 0" 0 "$LLM" export "$T/gpt2.llm" --format safetensors -o "$T/g.safetensors" --force

# ---- hf: GPT-2 ----
expect "hf gpt2: exit 0" 0 "$LLM" export "$T/gpt2.llm" --format hf -o "$T/ghf"
for f in model.safetensors config.json generation_config.json tokenizer.json; do
    [ -s "$T/ghf/$f" ] && ok "hf gpt2: $f" || nok "hf gpt2: $f" "$(ls -la "$T/ghf" 2>&1)"
done
py "hf gpt2: safetensors" "$T/st.py" "$T/ghf/model.safetensors"
cat >"$T/cfg_gpt2.py" <<'EOF'
import json, struct, sys
c = json.load(open(sys.argv[1] + '/config.json'))
want = {'architectures': ['GPT2LMHeadModel'], 'model_type': 'gpt2', 'vocab_size': 263, 'n_positions': 16,
        'n_embd': 16, 'n_layer': 2, 'n_head': 2, 'n_inner': 24, 'activation_function': 'gelu_new',
        'layer_norm_epsilon': 1e-5, 'tie_word_embeddings': True, 'bos_token_id': 0, 'eos_token_id': 0,
        'torch_dtype': 'float32'}
for k, v in want.items():
    assert c.get(k) == v, (k, c.get(k), v)
b = open(sys.argv[1] + '/model.safetensors', 'rb').read()
h = json.loads(b[8:8 + struct.unpack('<Q', b[:8])[0]])
assert h['transformer.h.1.attn.c_attn.weight']['shape'] == [16, 48], h['transformer.h.1.attn.c_attn.weight']
assert h['transformer.h.0.mlp.c_fc.weight']['shape'] == [16, 24]
assert h['transformer.h.0.mlp.c_proj.weight']['shape'] == [24, 16]
assert 'lm_head.weight' not in h and 'transformer.wpe.weight' in h
g = json.load(open(sys.argv[1] + '/generation_config.json'))
assert g['eos_token_id'] == 0, g
assert json.load(open(sys.argv[1] + '/tokenizer.json'))['model']['type'] == 'BPE'
EOF
py "hf gpt2: config.json keys, HF names and Conv1D shapes" "$T/cfg_gpt2.py" "$T/ghf"
"$FIX" --logits "$T/gpt2.llm" >"$T/g.logits" 2>"$T/fixerr" || nok "gpt2 logits" "$(cat "$T/fixerr")"
py "hf gpt2: an independent HF-semantics forward gives our logits" "$T/ref.py" "$T/ghf" "$T/g.logits"

# ---- hf: Llama ----
expect "hf llama: exit 0" 0 "$LLM" export "$T/llama.llm" --format hf -o "$T/lhf/"
cat >"$T/cfg_llama.py" <<'EOF'
import json, struct, sys
c = json.load(open(sys.argv[1] + '/config.json'))
want = {'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'vocab_size': 263, 'hidden_size': 16,
        'intermediate_size': 24, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2,
        'max_position_embeddings': 16, 'rms_norm_eps': 1e-6, 'rope_theta': 500000, 'hidden_act': 'silu',
        'tie_word_embeddings': False, 'torch_dtype': 'float32', 'bos_token_id': 0, 'eos_token_id': 0,
        'rope_scaling': None, 'attention_bias': False}
for k, v in want.items():
    assert c.get(k, 'absent') == v, (k, c.get(k, 'absent'), v)
b = open(sys.argv[1] + '/model.safetensors', 'rb').read()
h = json.loads(b[8:8 + struct.unpack('<Q', b[:8])[0]])
assert h['model.layers.1.self_attn.k_proj.weight']['shape'] == [8, 16]
assert h['model.layers.0.mlp.gate_proj.weight']['shape'] == [24, 16]
assert h['lm_head.weight']['shape'] == [263, 16] and 'model.norm.weight' in h
EOF
py "hf llama: config.json keys and HF names" "$T/cfg_llama.py" "$T/lhf"
"$FIX" --logits "$T/llama.llm" >"$T/l.logits" 2>"$T/fixerr" || nok "llama logits" "$(cat "$T/fixerr")"
py "hf llama: an independent HF-semantics forward gives our logits" "$T/ref.py" "$T/lhf" "$T/l.logits"

# ---- import back: identical logits ----
for m in g l; do
    expect "import ${m}hf: exit 0" 0 "$LLM" import "$T/${m}hf" -o "$T/${m}2.llm"
    "$FIX" --logits "$T/${m}2.llm" >"$T/${m}2.logits" 2>"$T/fixerr"
    if cmp -s "$T/$m.logits" "$T/${m}2.logits"; then ok "import ${m}hf: identical logits"; else
        nok "import ${m}hf: identical logits" "$(cat "$T/fixerr")" "$(diff "$T/$m.logits" "$T/${m}2.logits" | head -5)"; fi
done
expect "imported checkpoint verifies" 0 "$LLM" ckpt --verify "$T/g2.llm"
expect "import --set model.dropout: exit 0" 0 "$LLM" import "$T/ghf" -o "$T/g3.llm" --set model.dropout=0.1

# ---- errors ----
fails "hf: unsupported shape" "model.attention is sliding (needs full)" 1 "$LLM" export "$T/sliding.llm" --format hf -o "$T/shf"
fails "hf: no tokenizer" "no tokenizer" 1 "$LLM" export "$T/notok.llm" --format hf -o "$T/nhf"
[ -e "$T/nhf" ] && nok "hf: no folder after an error" || ok "hf: no folder after an error"
if "$LLM" tokenize train --vocab-size 260 --special '<|endoftext|>' -o "$T/tok.json" "$T/gpt2.json" >/dev/null 2>"$T/fixerr"; then
    expect "hf --tokenizer FILE: exit 0" 0 "$LLM" export "$T/notok.llm" --format hf -o "$T/nhf" --tokenizer "$T/tok.json"
else
    nok "tokenize train for --tokenizer" "$(cat "$T/fixerr")"
fi
fails "hf: existing folder" "exists and is not empty" 1 "$LLM" export "$T/gpt2.llm" --format hf -o "$T/ghf"
expect "hf --force into the folder: exit 0" 0 "$LLM" export "$T/llama.llm" --format hf -o "$T/ghf" --force
has "$T/ghf/config.json" "hf --force: the folder holds the new model" '"model_type":[[:space:]]*"llama"'
: >"$T/afile"
fails "hf: path is a file" "not a folder" 1 "$LLM" export "$T/gpt2.llm" --format hf -o "$T/afile"
"$(dirname "$LLM")/tests/test_ckpt" --write-fixture "$T/other.llm" 2>/dev/null &&
    fails "a non-model checkpoint" "not a model checkpoint" 1 "$LLM" export "$T/other.llm" --format safetensors -o "$T/o.st"
fails "missing checkpoint" "missing.llm" 1 "$LLM" export "$T/missing.llm" --format safetensors -o "$T/m.st"
leftovers=$(ls -a "$T" | grep '\.tmp\.' || true)
[ -z "$leftovers" ] && ok "no temp files left" || nok "no temp files left" "$leftovers"

fails "no --format" "--format is required" 2 "$LLM" export "$T/gpt2.llm" -o "$T/x"
fails "bad --format" "expected hf or safetensors" 2 "$LLM" export "$T/gpt2.llm" --format onnx -o "$T/x"
fails "no -o" "-o PATH is required" 2 "$LLM" export "$T/gpt2.llm" --format hf
fails "--tokenizer with safetensors" "hf only" 2 "$LLM" export "$T/gpt2.llm" --format safetensors -o "$T/x" --tokenizer "$T/tok.json"
expect "export: no checkpoint: exit 2" 2 "$LLM" export --format hf -o "$T/x"
expect "export: unknown flag: exit 2" 2 "$LLM" export "$T/gpt2.llm" --formt hf -o "$T/x"

mkdir -p "$T/mis"
cp "$T/ghf/model.safetensors" "$T/mis/"
printf '{"model_type": "mistral"}\n' >"$T/mis/config.json"
fails "import: unsupported model_type" "model_type \"mistral\" is not supported" 1 "$LLM" import "$T/mis" -o "$T/mis.llm"
fails "import: missing folder" "nowhere" 1 "$LLM" import "$T/nowhere" -o "$T/x.llm"
fails "import: --set outside model" "only the model section" 2 "$LLM" import "$T/ghf" -o "$T/x.llm" --set train.steps=3
fails "import: no -o" "-o CKPT is required" 2 "$LLM" import "$T/ghf"
[ -e "$T/mis.llm" ] || [ -e "$T/x.llm" ] && nok "import: no output after errors" || ok "import: no output after errors"

expect "export --help: exit 0" 0 "$LLM" export --help
has "$T/out" "export --help: usage" "usage: llm export"
expect "import --help: exit 0" 0 "$LLM" import --help
has "$T/out" "import --help: usage" "usage: llm import"
