#!/usr/bin/env node
// hf_encode.js TOKENIZER.json FILE...: encodes each FILE (valid UTF-8) with
// Hugging Face tokenizers (npm `tokenizers`, the Rust library) loading
// TOKENIZER.json, without adding special tokens, and prints one line of ids
// per file. Used to check that the tokenizer.json `llm tokenize train` writes
// is read by HF exactly as by llm. Exit 3: the package cannot be loaded.
'use strict';
const fs = require('fs');
const path = require('path');

let Tokenizer;
try {
    const p = (require.resolve.paths('tokenizers') || []).map((d) => path.join(d, 'tokenizers'))
        .find((d) => fs.existsSync(path.join(d, 'package.json')));
    if (!p) throw new Error('the npm package tokenizers is not installed');
    ({ Tokenizer } = require(p));
} catch (e) {
    process.stdout.write(`${String(e.message).split('\n')[0]}\n`);
    process.exit(3);
}

async function main() {
    const [tokPath, ...files] = process.argv.slice(2);
    const tok = Tokenizer.fromFile(tokPath);
    const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
    for (const f of files) {
        const enc = await tok.encode(strict.decode(fs.readFileSync(f)), null, { addSpecialTokens: false });
        process.stdout.write(Array.from(enc.getIds()).join(' ') + '\n');
    }
}
main().catch((e) => { process.stderr.write(`hf_encode.js: ${e.stack || e}\n`); process.exit(1); });
