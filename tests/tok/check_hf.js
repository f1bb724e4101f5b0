#!/usr/bin/env node
// check_hf.js FIXTURES: loads the tokenizer.json files that make_fixtures.js
// wrote into FIXTURES in Hugging Face tokenizers itself (the npm package
// `tokenizers`, pinned to 0.23.2, the Rust library as a native addon) and
// checks that it gives the expected ids for every text, batch and known
// answer and decodes them back to the text. This proves the fixtures are what
// HF reads, independently of the references and of the encoder under test.
// Exit status: 0 all agree, 1 a disagreement (printed), 3 the package cannot
// be loaded on this machine (the caller skips the check).
'use strict';
const fs = require('fs');
const path = require('path');

const PINNED = '0.23.2';
const dir = process.argv[2];
if (!dir) { process.stderr.write('usage: node check_hf.js FIXTURES\n'); process.exit(1); }

let Tokenizer;
try {
    const p = (require.resolve.paths('tokenizers') || []).map((d) => path.join(d, 'tokenizers'))
        .find((d) => fs.existsSync(path.join(d, 'package.json')));
    if (!p) throw new Error('the npm package tokenizers is not installed');
    const v = JSON.parse(fs.readFileSync(path.join(p, 'package.json'), 'utf8')).version;
    if (v !== PINNED) throw new Error(`tokenizers is ${v}, wanted ${PINNED}`);
    ({ Tokenizer } = require(p));
} catch (e) {
    process.stdout.write(`${String(e.message).split('\n')[0]}\n`);
    process.exit(3);
}

const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const read = (f) => strict.decode(fs.readFileSync(f));

async function main() {
    let n = 0;
    const bad = [];
    for (const vocab of ['gpt2', 'cl100k']) {
        const tok = Tokenizer.fromFile(path.join(dir, `${vocab}.tokenizer.json`));
        const cases = [];
        for (const name of fs.readdirSync(path.join(dir, 'texts')).sort()) {
            const ids = path.join(dir, 'expected', vocab, `${name}.ids`);
            if (fs.existsSync(ids)) cases.push([name, path.join(dir, 'texts', name), ids]);
        }
        const kdir = path.join(dir, 'known', vocab);
        for (const f of fs.readdirSync(kdir).sort())
            if (f.endsWith('.txt')) cases.push([`known ${f}`, path.join(kdir, f), path.join(kdir, f.replace(/\.txt$/, '.ids'))]);
        for (const g of ['committed', 'random', 'known'])
            cases.push([`batch ${g}`, path.join(dir, 'batch', `${vocab}.${g}.txt`), path.join(dir, 'batch', `${vocab}.${g}.ids`)]);
        for (const [name, textFile, idsFile] of cases) {
            const text = read(textFile);
            const want = fs.readFileSync(idsFile, 'utf8');
            const enc = await tok.encode(text, null, { addSpecialTokens: false });
            const got = enc.getIds().join(' ') + '\n';
            n++;
            if (got !== want) { bad.push(`${vocab} ${name}: HF gives ${got.slice(0, 120).trim()} / expected ${want.slice(0, 120).trim()}`); continue; }
            const ids = want.trim() === '' ? [] : want.trim().split(' ').map(Number);
            const back = await tok.decode(ids, false);
            if (back !== text) bad.push(`${vocab} ${name}: HF decode does not give back the text`);
        }
    }
    if (bad.length) {
        process.stdout.write(`${bad.length} of ${n} cases differ in HF tokenizers ${PINNED}:\n${bad.slice(0, 5).join('\n')}\n`);
        process.exit(1);
    }
    process.stdout.write(`HF tokenizers ${PINNED} agrees on ${n} cases (encode and decode)\n`);
}
main().catch((e) => { process.stdout.write(`HF tokenizers failed: ${e.message}\n`); process.exit(1); });
